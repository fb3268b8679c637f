# Image for the app's `worker` and `edge` (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# Editable: the app reads schemas/ from the source tree, the single source of truth.
RUN pip install -e . && useradd --system --no-create-home app && mkdir -p /data && chown app /data
USER app
CMD ["python", "-m", "app", "worker"]
