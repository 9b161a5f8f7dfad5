"""docs/grafana-dashboard.json and docs/alerts.yml use only the metrics the server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gameserver.metrics import exported_names

DOCS = Path(__file__).resolve().parent.parent / "docs"
_METRIC = re.compile(r"\b((?:gameserver|process)_[a-zA-Z0-9_]+)")


def _metrics_in(expr: str) -> set[str]:
    names = set(_METRIC.findall(expr))
    assert names, f"no gameserver metric in {expr!r}"
    return names


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads((DOCS / "grafana-dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


def test_dashboard_uses_only_exported_metrics() -> None:
    exported = exported_names()
    exprs = _dashboard_exprs()
    assert len(exprs) >= 14
    for title, expr in exprs:
        unknown = _metrics_in(expr) - exported
        assert not unknown, f"panel {title!r} uses metrics the server does not export: {unknown}"
        assert expr.count("(") == expr.count(")"), expr


def test_dashboard_is_importable() -> None:
    dash = json.loads((DOCS / "grafana-dashboard.json").read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    titles = [p["title"] for p in dash["panels"]]
    for wanted in (
        "Players", "Rooms", "Connections", "Tick rate per room", "Tick duration p50 / p99",
        "Late and skipped ticks", "Bandwidth", "Messages", "Refusals by reason",
        "Protocol errors by kind", "Resumes and seat holds", "CPU", "Resident memory",
    ):  # fmt: skip
        assert wanted in titles
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
    # the tick p99 comes from the histogram's buckets
    tick = [e for t, e in _dashboard_exprs() if t == "Tick duration p50 / p99"]
    assert any(
        "histogram_quantile(0.99" in e and "gameserver_tick_seconds_bucket" in e for e in tick
    )


def _alert_rules() -> list[dict[str, str]]:
    """The rules of docs/alerts.yml, read by a small parser for the subset it is written in
    (PyYAML is not a dependency); cross-checked with PyYAML when it is installed."""
    text = (DOCS / "alerts.yml").read_text()
    assert "\t" not in text
    rules: list[dict[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("- alert:"):
            rules.append({"alert": stripped.split(":", 1)[1].strip()})
        elif rules and ":" in stripped:
            key, _, value = stripped.partition(":")
            rules[-1].setdefault(key.strip(), value.strip())
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        return rules
    loaded = yaml.safe_load(text)
    parsed = [r for g in loaded["groups"] for r in g["rules"]]
    assert [r["alert"] for r in parsed] == [r["alert"] for r in rules]
    assert [r["expr"] for r in parsed] == [r["expr"] for r in rules]
    return rules


def test_alert_rules_use_only_exported_metrics() -> None:
    exported = exported_names()
    rules = _alert_rules()
    assert len(rules) >= 5
    for rule in rules:
        for key in ("expr", "for", "severity", "summary"):
            assert rule.get(key), f"{rule['alert']} has no {key}"
        unknown = _metrics_in(rule["expr"]) - exported
        assert not unknown, f"alert {rule['alert']} uses unexported metrics: {unknown}"
    uses = " ".join(r["expr"] for r in rules)
    for needed in (
        "gameserver_ticks_late_total",
        "gameserver_tick_seconds_bucket",
        "gameserver_connections_refused_total",
        "gameserver_desync_reports_total",
        "gameserver_cpu_ratio",
    ):
        assert needed in uses


@pytest.mark.parametrize("bad", ["gameserver_cpu_percent", "gameserver_bytes_out_total"])
def test_the_check_catches_a_renamed_metric(bad: str) -> None:
    assert _metrics_in(f"rate({bad}[1m])") - exported_names() == {bad}
