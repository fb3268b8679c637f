"""The shipped Grafana dashboard and Prometheus alert rules name only metrics the code exports
(a renamed metric fails here, not silently on a dashboard)."""

from __future__ import annotations

import re

import orjson
import yaml

from app.edge import metrics as edge_metrics
from app.settings import PROJECT_ROOT
from app.worker import metrics as worker_metrics

OPS = PROJECT_ROOT / "docs" / "ops"
# PromQL words that look like metric names.
PROMQL = {"sum", "rate", "increase", "deriv", "changes", "histogram_quantile", "clamp_min", "by",
          "and", "or", "unless", "on", "le", "without", "max", "min", "avg", "count", "abs",
          "bool", "offset", "irate", "delta", "topk", "bottomk", "quantile", "label_replace"}
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def exported() -> set[str]:
    names = set()
    for registry in (edge_metrics.REGISTRY, worker_metrics.REGISTRY):
        for family in registry.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
            names.update(family.name + suffix for suffix in SUFFIXES)
    return names


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    without_labels = re.sub(r"\{[^}]*\}", "", without_ranges)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels))
    return {w for w in words if w not in PROMQL and not w.startswith("$") and "_" in w}


def dashboard_exprs() -> list[str]:
    dashboard = orjson.loads((OPS / "grafana-dashboard.json").read_bytes())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((OPS / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_of_the_dashboard_and_the_alerts_is_exported() -> None:
    known = exported()
    for expr in dashboard_exprs() + alert_exprs():
        unknown = metric_names(expr) - known
        assert not unknown, f"{sorted(unknown)} in {expr!r}: not a metric the code exports"


def test_the_alerts_cover_what_operators_need() -> None:
    rules = yaml.safe_load((OPS / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"VoixConsumerLagGrowing", "VoixSubmit503Rate", "VoixDeadLetters",
            "VoixWorkerRestarts", "VoixRebalanceStorm",
            "VoixNoJobsWhileSubmissionsArrive"} <= names
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["summary"] and rule["labels"]["severity"]


def test_the_name_check_itself_catches_a_typo() -> None:
    assert metric_names('sum(rate(voix_edge_requestz_total{status="503"}[5m]))') == {
        "voix_edge_requestz_total"}
    assert "voix_edge_requestz_total" not in exported()
