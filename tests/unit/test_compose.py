"""docker-compose.yml and the Dockerfile, checked against the code (no Docker engine here):
every VOIX_*/KAFKA_* the app's services set is a declared setting with a valid value, the ports
and URLs agree (the edge's one worker address is the worker service's port, healthchecks probe
the ports the processes listen on, on paths they serve), the workers bind 0.0.0.0 and
advertise their container hostname, keys go through the Kafka topic (no key file), and a topics
init service runs before the worker and the edge."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from app.contracts.api_keys import KeyRing
from app.edge.app import create_app
from app.ops.keys import StaticKeys
from app.settings import PROJECT_ROOT, Settings, declared
from app.worker.app import create_worker_app

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
IMAGE = "voix-ingest:local"
DECLARED = {spec.env for _, spec, _ in declared()}
PROBE = re.compile(r"https?://(127\.0\.0\.1|localhost):(\d+)(/[^'\" ]*)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):  # the KEY=VALUE list form
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): str(v) for k, v in environment.items()}


def settings_of(service: dict[str, Any]) -> Settings:
    return Settings.from_env(env_of(service))


def command_of(service: dict[str, Any]) -> list[str]:
    def words(part: Any) -> list[str]:
        if part is None:
            return []
        return shlex.split(part) if isinstance(part, str) else [str(w) for w in part]
    return words(service.get("entrypoint")) + words(service.get("command"))


def probe_of(service: dict[str, Any]) -> tuple[int, str]:
    """(port, path) the service's healthcheck asks for over HTTP."""
    test = service["healthcheck"]["test"]
    found = PROBE.search(" ".join(test) if isinstance(test, list) else test)
    assert found, f"no http://127.0.0.1:PORT/PATH in the healthcheck {test}"
    return int(found.group(2)), found.group(3)


def test_the_app_services_are_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(app_services(services)) == {"topics", "keys", "worker", "edge"}
    for name, service in app_services(services).items():
        assert command_of(service)[:3] == ["python", "-m", "app"], name
        assert service.get("build") == ".", name  # the Dockerfile below


def test_every_setting_they_set_is_declared_and_valid(
        services: dict[str, dict[str, Any]]) -> None:
    for name, service in app_services(services).items():
        env = env_of(service)
        ours = {k for k in env if k.startswith(("VOIX_", "KAFKA_"))}
        assert ours <= DECLARED, f"{name}: {sorted(ours - DECLARED)} are no settings"
        settings_of(service)  # every value parses and passes the cross-setting checks


def test_all_of_them_reach_the_same_kafka_and_topics(
        services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]["environment"]
    advertised = {urlsplit(listener.replace("PLAINTEXT", "tcp", 1)).netloc
                  for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    apps = app_services(services)
    for name, service in apps.items():
        settings = settings_of(service)
        assert set(settings.bootstrap_servers) <= advertised, (name, advertised)
        assert "kafka" in service["depends_on"] or "topics" in service["depends_on"], name
    topics = {name: settings_of(s).topics for name, s in apps.items()}
    assert len(set(topics.values())) == 1, topics
    # The consumer group and changelog names `topics create` made are the worker's.
    assert settings_of(apps["topics"]).worker_id == settings_of(apps["worker"]).worker_id


def test_topics_run_once_before_the_worker_and_the_edge(
        services: dict[str, dict[str, Any]]) -> None:
    assert command_of(services["topics"]) == ["python", "-m", "app", "topics", "create"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("worker", "edge", "keys"):
        condition = services[name]["depends_on"]["topics"]["condition"]
        assert condition == "service_completed_successfully", name


def test_the_edge_reaches_the_worker_pool_through_one_address(
        services: dict[str, dict[str, Any]]) -> None:
    edge, worker = settings_of(services["edge"]), settings_of(services["worker"])
    [url] = edge.worker_urls
    parts = urlsplit(url)
    assert parts.hostname == "worker" and parts.hostname in services  # the service name
    assert parts.port == worker.worker_web_port
    # The workers listen on every interface and advertise their container hostname (which
    # Docker's DNS resolves), so the worker that gets a request can forward it to the owner.
    assert worker.worker_web_host == "0.0.0.0"
    assert worker.worker_advertised_url is None
    assert int(services["worker"].get("deploy", {}).get("replicas", 1)) >= 2
    # The edge listens where its port is published.
    assert edge.edge_host == "0.0.0.0"
    published = {int(p.rsplit(":", 1)[1]) for p in services["edge"]["ports"]}
    assert published == {edge.edge_port}


def test_healthchecks_probe_the_right_ports_and_served_paths(
        services: dict[str, dict[str, Any]]) -> None:
    edge_settings = settings_of(services["edge"])
    port, path = probe_of(services["edge"])
    assert (port, path) == (edge_settings.edge_port, "/readyz")
    edge = create_app(edge_settings, publisher=object(),  # type: ignore[arg-type]
                      keys=StaticKeys(KeyRing()))
    assert path in {r.canonical for r in edge.router.resources()}

    worker_settings = settings_of(services["worker"]).with_overrides(
        worker_store="memory://")
    port, path = probe_of(services["worker"])
    assert (port, path) == (worker_settings.worker_web_port, "/readyz")
    worker = create_worker_app(worker_settings)
    worker.web.init_server()  # what the worker does when its web server starts: the blueprints
    served = {r.canonical for r in worker.web.web_app.router.resources()}  # type: ignore[attr-defined]
    assert path in served, f"the worker does not serve {path}: {sorted(served)}"


def test_keys_go_through_kafka_not_a_file(services: dict[str, dict[str, Any]]) -> None:
    keys = services["keys"]
    assert command_of(keys)[:4] == ["python", "-m", "app", "keys"]
    assert "tools" in keys.get("profiles", [])  # a one-shot tool, not started by `up`
    for name, service in services.items():
        for volume in service.get("volumes", []):
            assert "key" not in str(volume).lower(), (name, volume)
        assert not any("KEYS_FILE" in k for k in env_of(service)), name


def test_each_worker_replica_has_its_own_data_dir(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    data_dir = settings_of(worker).worker_data_dir
    mounts = [str(v) for v in worker.get("volumes", [])]
    # Anonymous volumes only ("/data"): a named or host volume would be shared by replicas.
    assert mounts and all(":" not in m for m in mounts), mounts
    assert any(Path(m) in (data_dir, *data_dir.parents) for m in mounts), (mounts, data_dir)


def test_the_dockerfile_installs_the_wheel_not_the_source_tree() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    installs = [line for line in instructions if "pip install" in line]
    assert installs and not any(re.search(r"pip install[^&]*\s-e\b", line) or "--editable" in
                                line for line in installs), installs
    # Run from a directory without the sources, so `python -m app` is the installed package.
    workdirs = [line.split()[1] for line in instructions if line.startswith("WORKDIR")]
    assert workdirs and workdirs[-1] == "/data"
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    for needed in ("app", "schemas", "pyproject.toml", "README.md", "LICENSE"):
        assert needed not in ignored, needed
