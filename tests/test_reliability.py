"""Dependencies going away, observed from the outside through each worker's /metrics and /readyz:

- Triton down: the processor backs off, pauses consumption (bounded in-flight work), reports not
  ready, and resumes when Triton is back, without losing or duplicating anything;
- PostgreSQL down: the sinks and the outbox relay wait (they stay alive, report not ready) and carry
  on when it is back;
- SIGTERM: a worker finishes its batch, commits and exits 0; nothing is redelivered afterwards.

The session's Triton / PostgreSQL are killed here and restarted (healthy) before each test ends."""

from __future__ import annotations

import io
import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from argus import pipeline
from argus.stack.base import port_in_use
from argus.verify import wait_until_consistent
from argus.workers import Supervisor, default_workers
from benchmarks.chaos import make_assets
from core.settings import Settings
from producers.ingest import Ingestor, Metadata

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "efficientnet_lite0"
PROCESSOR = f"processor-{MODEL}"


def with_ops_ports(env: Settings) -> Settings:
    """Consecutive free loopback ports for the workers' /metrics + health endpoints."""
    s = env.model_copy(deep=True)
    s.models = [MODEL]  # one Triton model keeps these outage tests within the CI budget
    n = len(default_workers(s))
    for _ in range(200):
        base = random.randrange(21000, 31000)
        if not any(port_in_use(base + i) for i in range(n)):
            s.observability.port = base
            s.observability.lag_interval_s = 1.0
            return s
    raise RuntimeError("no free port range")


def ops(sup: Supervisor, name: str, path: str) -> httpx.Response:
    port = sup.settings.observability.port + list(sup.workers).index(name)
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def metric(sup: Supervisor, name: str, line_prefix: str) -> float | None:
    try:
        text = ops(sup, name, "/metrics").text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def eventually(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for: {what}")


def ingest(s: Settings, items: list[tuple[str, bytes]]) -> list[str]:
    ing = Ingestor(s)
    return [ing.ingest_bytes(d, Metadata(filename=n)).asset_id for n, d in items]


def test_triton_outage_pauses_consumption_and_resumes(env: Settings, stack) -> None:  # type: ignore[no-untyped-def]
    s = with_ops_ports(env)
    items = make_assets(60, seed=21)
    sup = Supervisor(s, default_workers(s))
    sup.start()
    triton = stack.service("triton")
    try:
        ids = ingest(s, items[:8])
        assert pipeline.wait_until_done(s, ids, MODEL, timeout=180).done
        eventually(lambda: ops(sup, PROCESSOR, "/readyz").status_code == 200, 30, "processor ready")
        triton.kill()
        ids += ingest(s, items[8:])  # several batches' worth arrive while Triton is down
        paused = f'argus_partitions_paused{{service="processor:{MODEL}"}}'
        eventually(lambda: metric(sup, PROCESSOR, paused) == 1.0, 90, "consumption paused")
        eventually(lambda: ops(sup, PROCESSOR, "/readyz").status_code == 503, 30, "processor not ready")
        assert ops(sup, PROCESSOR, "/healthz").status_code == 200  # waiting is alive, not hung
        inflight = metric(sup, PROCESSOR, f'argus_inflight_batches{{service="processor:{MODEL}"}}')
        assert inflight is not None and inflight <= 3, f"in-flight work must stay bounded, got {inflight}"
        errors = metric(sup, PROCESSOR, f'argus_triton_errors_total{{kind="transient",model="{MODEL}"}}')
        assert errors and errors > 0
        time.sleep(3)
        assert sup.dead() == [], f"workers died while Triton was down: {sup.dead()}"
    finally:
        if not triton.is_running():
            triton.start()
            triton.wait_healthy(180)
    try:
        verdict, drain = wait_until_consistent(s, ids, timeout=300)
        assert verdict.ok, verdict.problems
        assert verdict.missing == 0 and verdict.duplicated == 0
        eventually(lambda: metric(sup, PROCESSOR, paused) == 0.0, 30, "consumption resumed")
        eventually(lambda: ops(sup, PROCESSOR, "/readyz").status_code == 200, 30, "processor ready again")
        print(f"\nTriton outage: {len(ids)} assets verified, drained in {drain:.1f}s; {verdict.figures()}")
    finally:
        sup.stop()


def test_postgres_down_sinks_and_relay_wait(env: Settings, stack) -> None:  # type: ignore[no-untyped-def]
    s = with_ops_ports(env)
    items = make_assets(40, seed=22)
    sup = Supervisor(s, default_workers(s))
    sup.start()
    pg = stack.service("postgres")
    try:
        ids = ingest(s, items[:6])
        assert pipeline.wait_until_done(s, ids, MODEL, timeout=180).done
        ids += ingest(s, items[6:])
        pg.kill()  # the processor keeps annotating: the sinks get records they cannot commit
        for name in ("sink-postgres", "sink-search", "relay"):
            eventually(lambda name=name: ops(sup, name, "/readyz").status_code == 503, 60,  # type: ignore[misc]
                       f"{name} not ready while PostgreSQL is down")
        time.sleep(5)
        assert sup.dead() == [], f"workers died while PostgreSQL was down: {sup.dead()}"
        for name in ("sink-postgres", "sink-search", "relay"):
            assert ops(sup, name, "/healthz").status_code == 200
        retries = metric(sup, "sink-postgres", 'argus_sink_db_retries_total{sink="postgres"}')
        assert retries and retries > 0
    finally:
        if not pg.is_running():
            pg.start()
            pg.wait_healthy(60)
    try:
        verdict, drain = wait_until_consistent(s, ids, timeout=300)
        assert verdict.ok, verdict.problems
        for name in ("sink-postgres", "sink-search", "relay"):
            eventually(lambda name=name: ops(sup, name, "/readyz").status_code == 200, 60,  # type: ignore[misc]
                       f"{name} ready again")
        print(f"\nPostgreSQL outage: {len(ids)} assets verified, drained in {drain:.1f}s")
    finally:
        sup.stop()


def test_sigterm_finishes_the_batch_commits_and_exits_0(env: Settings, tmp_path: Path) -> None:
    env.models = [MODEL]
    items = make_assets(96, seed=23)
    ids = ingest(env, items)  # all queued first, so the stop lands mid-stream whatever the machine's speed
    sup = Supervisor(env, default_workers(env))
    sup.start()
    try:
        deadline = time.monotonic() + 180
        while pipeline.progress(env, ids, MODEL).annotated < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        log = sup.workers[PROCESSOR].log_path
        assert log is not None
        sup.stop(PROCESSOR, timeout=60)  # SIGTERM, by PID
        sup.stop("sink-postgres", timeout=60)
        assert sup.workers[PROCESSOR].proc.returncode == 0  # type: ignore[union-attr]
        assert sup.workers["sink-postgres"].proc.returncode == 0  # type: ignore[union-attr]
        assert "drained and committed" in log.read_text()
        assert pipeline.progress(env, ids, MODEL).annotated < len(ids), "stopped mid-stream"
        sup.start()
        verdict, _ = wait_until_consistent(env, ids, timeout=300)
        assert verdict.ok, verdict.problems
        # a clean stop commits what it emitted: no record was re-sent after the restart
        assert verdict.redelivered["annotations"] == 0, verdict.redelivered
        print(f"\nSIGTERM mid-stream: {verdict.figures()}")
    finally:
        sup.stop()


def test_image_decode_backpressure_item() -> None:
    """A tiny guard that the assets used above are real, distinct JPEGs."""
    items = make_assets(3, seed=24)
    assert len({d for _, d in items}) == 3
    for _, d in items:
        assert Image.open(io.BytesIO(d)).format == "JPEG"
