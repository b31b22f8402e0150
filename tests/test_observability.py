"""Ops endpoint and metrics wiring (unit level; the outage tests in test_reliability.py scrape the
real workers), and that the Grafana dashboard and alerts only use metrics that exist."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import yaml

from core import metrics
from core.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ops_server_serves_metrics_liveness_and_readiness() -> None:
    s = Settings()
    s.observability.port = free_port()
    health = metrics.Health("unit-test", stale_after_s=60)
    server = metrics.start_ops_server(s, health)
    assert server is not None
    base = f"http://127.0.0.1:{s.observability.port}"
    try:
        assert httpx.get(f"{base}/healthz").status_code == 200
        r = httpx.get(f"{base}/readyz")
        assert r.status_code == 503 and r.json()["reason"] == "starting"
        health.set_ready(True, "consuming")
        assert httpx.get(f"{base}/readyz").status_code == 200
        metrics.EVENTS_IN.labels("unit-test", "t").inc(3)
        text = httpx.get(f"{base}/metrics").text
        assert 'argus_events_in_total{service="unit-test",topic="t"} 3.0' in text
        assert 'argus_ready{service="unit-test"} 1.0' in text
        health.stopping = True  # graceful shutdown: not ready any more, still alive
        assert httpx.get(f"{base}/readyz").status_code == 503
        assert httpx.get(f"{base}/healthz").status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_ops_server_is_off_with_port_0() -> None:
    assert metrics.start_ops_server(Settings(), metrics.Health("off")) is None


class _Msg:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class _Consumer:
    def assignment(self) -> list:  # type: ignore[type-arg]
        from confluent_kafka import TopicPartition

        return [TopicPartition("t", 0), TopicPartition("t", 1)]

    def get_watermark_offsets(self, tp, cached: bool = False):  # type: ignore[no-untyped-def]
        return (0, 50) if tp.partition == 1 else (0, -1)


def test_lag_uses_highest_seen_or_fetch_watermark_minus_committed() -> None:
    lag = metrics.LagTracker("lag-test", interval_s=0)
    lag.observe([_Msg("t", 0, 9), _Msg("t", 0, 19)])
    lag.update(_Consumer(), lambda: {("t", 0): 12, ("t", 1): 45})
    assert metrics.CONSUMER_LAG.labels("lag-test", "t", "0")._value.get() == 8  # 20 seen - 12 committed
    assert metrics.CONSUMER_LAG.labels("lag-test", "t", "1")._value.get() == 5  # watermark 50 - 45


def _defined_metrics() -> set[str]:
    names = set()
    for obj in vars(metrics).values():
        name = getattr(obj, "_name", None)
        if isinstance(name, str) and name.startswith("argus_"):
            names.add(name)
    return names


def _used(text: str) -> set[str]:
    out = set()
    for m in re.findall(r"argus_[a-z_]+", text):
        out.add(re.sub(r"_(bucket|sum|count|total)$", "", m))
    return out


COMPOSE = REPO / "compose" / "docker-compose.yml"


def _mounted(service: dict[str, Any], container_path: str) -> Path:
    """The host path behind ``container_path`` through the service's bind mounts (longest match)."""
    binds = [v.split(":")[:2] for v in service.get("volumes", []) if v.startswith((".", "/"))]
    for host, target in sorted(binds, key=lambda b: -len(b[1])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return (COMPOSE.parent / host / Path(container_path).relative_to(target)).resolve()
    raise AssertionError(f"not mounted: {container_path}")


def _provisioned_dashboards() -> list[Path]:
    """The dashboard files the grafana service of compose really provisions."""
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    providers = _mounted(grafana, "/etc/grafana/provisioning/dashboards")
    paths = []
    for provisioning in sorted(providers.glob("*.y*ml")):
        for provider in yaml.safe_load(provisioning.read_text())["providers"]:
            paths += sorted(_mounted(grafana, provider["options"]["path"]).glob("*.json"))
    return paths


def _mounted_prometheus() -> tuple[dict[str, Any], dict[str, Any]]:
    prometheus = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]
    config = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    return prometheus, yaml.safe_load(_mounted(prometheus, config).read_text())


def test_dashboard_and_alerts_use_only_defined_metrics() -> None:
    defined = {re.sub(r"_total$", "", n) for n in _defined_metrics()}
    dashboards = _provisioned_dashboards()
    assert dashboards, "compose provisions no Grafana dashboard"
    exprs = ""
    for path in dashboards:
        dash = json.loads(path.read_text())
        assert dash["panels"], f"{path}: no panels"
        exprs += " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    prometheus, prom = _mounted_prometheus()
    assert prom["rule_files"], "the Prometheus config compose mounts loads no alert rules"
    for rules in prom["rule_files"]:
        alerts = yaml.safe_load(_mounted(prometheus, rules).read_text())
        exprs += " " + " ".join(r["expr"] for g in alerts["groups"] for r in g["rules"])
    unknown = _used(exprs) - defined
    assert not unknown, f"dashboard/alerts use undefined metrics: {unknown}"
    jobs = {j["job_name"] for j in prom["scrape_configs"]}
    for extra in prom.get("scrape_config_files", []):
        jobs |= {j["job_name"] for j in yaml.safe_load(_mounted(prometheus, extra).read_text())["scrape_configs"]}
    assert jobs >= {"argus-relay", "argus-processor", "argus-sink", "argus-api"}


def test_grafana_datasource_is_provisioned() -> None:
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    files = sorted(_mounted(grafana, "/etc/grafana/provisioning/datasources").glob("*.y*ml"))
    sources = [d for f in files for d in yaml.safe_load(f.read_text())["datasources"]]
    assert any(d["type"] == "prometheus" and d["url"] == "http://prometheus:9090" for d in sources)
