"""Metrics: labelled by route, method and status; probes are not traffic; each process kind
exports only its own series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from app.edge import metrics as edge_metrics
from app.worker import metrics as worker_metrics
from tests.factories import beat1
from tests.unit.test_edge import Edge


def names(registry: CollectorRegistry) -> set[str]:
    return {metric.name for metric in registry.collect()}


def sample(name: str, **labels: str) -> float:
    value = edge_metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_requests_are_counted_by_route_method_and_status(edge: Edge) -> None:
    submit = {"route": "/submit", "method": "POST"}
    before_202 = sample("voix_edge_requests_total", **submit, status="202")
    before_401 = sample("voix_edge_requests_total", **submit, status="401")
    before_probe = sum(sample("voix_edge_requests_total", route=r, method="GET", status="200")
                       for r in ("/healthz", "/readyz", "/metrics"))
    assert (await edge.submit(beat1())).status == 202
    assert (await edge.submit(beat1(), key="vx_nope_nope")).status == 401
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await edge.client.get(path)).status == 200
    assert (await edge.client.get("/calls/not-a-uuid")).status == 401
    assert (await edge.client.get("/no/such/path")).status == 404

    assert sample("voix_edge_requests_total", **submit, status="202") == before_202 + 1
    assert sample("voix_edge_requests_total", **submit, status="401") == before_401 + 1
    assert sample("voix_edge_requests_total", route="/calls/{call_id}", method="GET",
                  status="401") >= 1
    assert sample("voix_edge_requests_total", route="(unmatched)", method="GET",
                  status="404") >= 1
    after_probe = sum(sample("voix_edge_requests_total", route=r, method="GET", status="200")
                      for r in ("/healthz", "/readyz", "/metrics"))
    assert after_probe == before_probe == 0
    assert sample("voix_edge_request_seconds_count", **submit) >= 2


async def test_the_edge_page_shows_edge_series_only(edge: Edge) -> None:
    page = await (await edge.client.get("/metrics")).text()
    assert "voix_edge_requests_total" in page and "process_start_time_seconds" in page
    assert "voix_worker_" not in page


def test_each_registry_holds_its_own_series() -> None:
    edge_names, worker_names = names(edge_metrics.REGISTRY), names(worker_metrics.REGISTRY)
    assert {n for n in edge_names if n.startswith("voix_")} and all(
        not n.startswith("voix_worker") for n in edge_names)
    assert {n for n in worker_names if n.startswith("voix_")} and all(
        not n.startswith("voix_edge") for n in worker_names)
