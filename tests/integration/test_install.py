"""A non-editable install works: the wheel carries the schemas, and the edge, the worker's CLI
and `voix-ingest` run from any directory with their state in the working directory."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
import urllib.request
import uuid
from pathlib import Path

import orjson

from app.settings import PROJECT_ROOT
from tests.factories import beat1
from tests.integration.conftest import TEAM_A, WORKSPACE
from tests.integration.stack import free_port


def test_the_wheel_runs_the_edge_from_elsewhere(tmp_path: Path, bootstrap: str) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                    str(wheels), str(PROJECT_ROOT)], check=True, timeout=300,
                   cwd=tmp_path)
    [wheel] = wheels.glob("voix_ingest-*.whl")
    # A fresh venv; its dependencies come from the dev venv through a .pth file (installing
    # them from PyPI again would only test pip), the app itself only from the wheel.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                              "get_paths()['purelib'])"], capture_output=True, text=True,
                             check=True).stdout.strip()
    Path(purelib, "dev-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--quiet", str(wheel)], check=True, timeout=300)

    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    prefix = f"wheel-{uuid.uuid4().hex[:8]}."
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "KAFKA_BOOTSTRAP": bootstrap,
           "VOIX_TOPIC_PREFIX": prefix, "VOIX_WORKER_ID": f"{prefix}worker",
           "VOIX_LOG_LEVEL": "WARNING"}

    def run(*args: str) -> str:
        return subprocess.run([str(python), "-m", "app", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=120, check=True).stdout

    where = subprocess.run([str(python), "-c", "import app.contracts.submission as s; "
                            "print(s.__file__); print(s.SCHEMAS_DIR)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where
    console = subprocess.run([str(venv / "bin" / "voix-ingest"), "--help"], env=env,
                             capture_output=True, text=True, check=True, cwd=elsewhere)
    assert "voix-ingest" in console.stdout

    run("topics", "create")
    key = run("keys", "create", "--workspace", WORKSPACE, "--team", TEAM_A).strip()
    port = free_port()
    with (tmp_path / "edge.log").open("wb") as log:
        edge = subprocess.Popen([str(python), "-m", "app", "edge", "--port", str(port)],
                                cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "edge.log").read_text()) from None
                time.sleep(0.2)
        request = urllib.request.Request(
            f"{url}/submit", data=orjson.dumps(beat1()), method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 202
            assert orjson.loads(resp.read())["status"] == "received"
    finally:
        edge.terminate()
        edge.wait(timeout=30)
    # Runtime state lands in the working directory, never in site-packages.
    assert not list(Path(purelib, "app").glob("**/var"))


def docker_context(dest: Path) -> Path:
    """What `docker build .` sends: the project's files minus .dockerignore's patterns (the
    simple forms it uses: names, `**/name`, `*.ext`)."""
    import fnmatch
    import shutil

    patterns = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(relative: Path) -> bool:
        for pattern in patterns:
            bare = pattern.removeprefix("**/")
            if any(fnmatch.fnmatch(part, bare) for part in relative.parts) or fnmatch.fnmatch(
                    str(relative), pattern):
                return True
        return False

    listed = subprocess.run(["git", "-C", str(PROJECT_ROOT), "ls-files", "-z", "--cached",
                             "--others", "--exclude-standard"], capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        relative = Path(name)
        if (PROJECT_ROOT / relative).is_file() and not ignored(relative):
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / relative, dest / relative)
    return dest


def test_the_docker_build_context_makes_a_wheel_with_the_schemas(tmp_path: Path) -> None:
    """The Dockerfile's `pip install /tmp/src` (not editable) gets only the build context; the
    wheel built from it must carry every JSON Schema the app loads at run time."""
    import zipfile

    context = docker_context(tmp_path / "context")
    assert not (context / "tests").exists() and not (context / "broker").exists()
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                    str(wheels), str(context)], check=True, timeout=300, cwd=tmp_path)
    [wheel] = wheels.glob("voix_ingest-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    schemas = sorted(p.relative_to(PROJECT_ROOT / "schemas")
                     for p in (PROJECT_ROOT / "schemas").rglob("*.json"))
    assert schemas and all(f"app/schemas/{s}" in names for s in schemas), sorted(names)
    assert "app/worker/health.py" in names and "app/__main__.py" in names
