# Image for the app's `topics`, `keys`, `worker` and `edge` (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A regular (non-editable) install: the wheel carries the JSON Schemas (app/schemas), so the
# source tree is not needed at run time and is removed.
COPY . /tmp/src
RUN pip install /tmp/src && rm -rf /tmp/src \
    && useradd --system --home-dir /data --no-create-home app && mkdir -p /data && chown app /data
# Runtime state (the worker's table cache, var/...) goes below the working directory.
WORKDIR /data
USER app
CMD ["python", "-m", "app", "worker"]
