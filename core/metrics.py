"""Prometheus metrics for every Argus service, and each worker's ops endpoint.

One module so that names, labels and buckets are defined once (the Grafana dashboard in
``compose/grafana/`` reads exactly these). Each worker is its own process with its own registry
(the default one), so no multiprocess mode is needed: ``start_ops_server`` serves

- ``/metrics``  Prometheus text format,
- ``/healthz``  liveness: 200 while the worker's main loop has beaten recently,
- ``/readyz``   readiness: 200 when the worker can make progress (its dependencies answer).

Consumer lag: tansu's ListOffsets (watermarks) is wrong (docs: notes/kafka.md), but the high
watermark carried in fetch responses is right. ``LagTracker`` therefore uses the larger of the
cached fetch watermark and one past the highest offset this process has seen, minus the position
that is durably committed (Kafka group offsets for processors, PostgreSQL ``sink_offsets`` for sinks).
It under-reports only for partitions this process has not fetched yet.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from core.service_state import live_state
from core.settings import Settings

log = logging.getLogger(__name__)

OPS_PORT_ENV = "ARGUS_OPS_PORT"  # per-process override (the supervisor gives each worker its own port)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# ---- events flowing through ---------------------------------------------------------------
EVENTS_IN = Counter("argus_events_in_total", "Records consumed", ["service", "topic"])
EVENTS_OUT = Counter("argus_events_out_total", "Records produced / rows applied", ["service", "topic"])
DEAD_LETTERS = Counter("argus_dead_letters_total", "Records dead-lettered", ["service", "reason"])

# ---- inference -----------------------------------------------------------------------------
INFER_SECONDS = Histogram("argus_inference_seconds", "One batched inference request (incl. retries)",
                          ["model"], buckets=_LATENCY_BUCKETS)
INFER_BATCH = Histogram("argus_inference_batch_size", "Rows per inference request", ["model"],
                        buckets=_BATCH_BUCKETS)
TRITON_ERRORS = Counter("argus_triton_errors_total", "Failed Triton calls",
                        ["model", "kind"])  # kind: transient (retried) | rejected (input dead-lettered)

# ---- processors: bounded in-flight work ------------------------------------------------------
STAGE_SECONDS = Counter("argus_stage_seconds_total", "Seconds per pipeline stage, summed over the worker's threads "
                        "(processors: fetch, decode, wait_inputs, infer, emit, commit; sinks: write, offsets, "
                        "kafka_commit)", ["service", "stage"])
FETCHED_BYTES = Counter("argus_fetched_bytes_total", "Media bytes a processor read from the object store "
                        "(kind: original, working = the ingest working copy)", ["service", "kind"])
INFLIGHT = Gauge("argus_inflight_batches", "Batches consumed but not yet committed", ["service"])
PAUSED = Gauge("argus_partitions_paused", "1 while consumption is paused by backpressure", ["service"])
PAUSES = Counter("argus_backpressure_pauses_total", "Times consumption was paused", ["service"])

# ---- sinks / relay ---------------------------------------------------------------------------
SINK_COMMIT_SECONDS = Histogram("argus_sink_commit_seconds", "One sink transaction (rows + offsets)",
                                ["sink"], buckets=_LATENCY_BUCKETS)
SINK_RETRIES = Counter("argus_sink_db_retries_total", "Batches retried because PostgreSQL was unavailable",
                       ["sink"])
CONSUMER_LAG = Gauge("argus_consumer_lag", "Records behind the highest known offset", ["service", "topic",
                                                                                        "partition"])
OUTBOX_BACKLOG = Gauge("argus_outbox_backlog", "Outbox rows not yet acknowledged by the broker")
OUTBOX_PUBLISHED = Counter("argus_outbox_published_total", "Outbox rows published and acknowledged")
RELAY_ERRORS = Counter("argus_relay_errors_total", "Relay iterations that failed (broker/db down)")

# ---- API ---------------------------------------------------------------------------------------
API_REJECTED = Counter("argus_api_rejected_total", "Requests refused by the security layer", ["reason"])
# on-demand annotation (api/annotate.py): transport = grpc | rest
ANNOTATE_SECONDS = Histogram("argus_annotate_seconds", "On-demand annotation requests answered", ["transport"],
                             buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
ANNOTATE_ERRORS = Counter("argus_annotate_errors_total", "On-demand annotation requests refused or failed",
                          ["transport", "code"])

# ---- argus serve's workers (read from the supervisor's state file, core/service_state.py) -----------
WORKER_UP = Gauge("argus_worker_up", "1 while the supervised worker runs", ["worker"])
WORKER_DEGRADED = Gauge("argus_worker_degraded", "1 while the worker is degraded (crash loop; not restarted)",
                        ["worker", "model"])
WORKER_RESTARTS = Gauge("argus_worker_restarts", "Restarts of the worker since the supervisor started", ["worker"])
# backlog read from each worker's system-of-record table (retrieval/worker_lag.py); absent for api/grpc/ftp
WORKER_LAG_RECORDS = Gauge("argus_worker_lag_records", "Records the supervised worker still owes", ["worker"])
WORKER_LAG_SECONDS = Gauge("argus_worker_lag_seconds", "Age of the oldest record the worker still owes", ["worker"])


def refresh_worker_gauges(settings: Settings) -> None:
    """Set the argus_worker_* gauges from a running supervisor's state file (nothing when none runs)."""
    st = live_state(settings)
    if st is None:
        return
    for w in st.workers.values():
        WORKER_UP.labels(w.name).set(1 if w.state in ("running", "starting") else 0)
        WORKER_DEGRADED.labels(w.name, w.model or "").set(1 if w.state == "degraded" else 0)
        WORKER_RESTARTS.labels(w.name).set(w.restarts)


def set_worker_lag(lags: dict[str, tuple[int | None, float | None]]) -> None:
    """Set argus_worker_lag_records / _seconds (worker -> (records, seconds); None: nothing to measure)."""
    for name, (records, seconds) in lags.items():
        if records is not None and seconds is not None:
            WORKER_LAG_RECORDS.labels(name).set(records)
            WORKER_LAG_SECONDS.labels(name).set(seconds)


# ---- liveness / readiness ------------------------------------------------------------------------
UP = Gauge("argus_ready", "1 when the service reports ready", ["service"])


class Health:
    """A worker's liveness (its loop beats) and readiness (set by the worker with a reason)."""

    def __init__(self, service: str, stale_after_s: float = 120.0) -> None:
        self.service = service
        self.stale_after_s = stale_after_s
        self._beat = time.monotonic()
        self._ready = False
        self._reason = "starting"
        self.stopping = False

    def beat(self) -> None:
        self._beat = time.monotonic()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        if ready != self._ready or reason != self._reason:
            self._ready, self._reason = ready, reason
            UP.labels(self.service).set(1 if ready else 0)

    def live(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self._beat
        return age < self.stale_after_s, {"service": self.service, "last_beat_s": round(age, 1)}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        ok = self._ready and not self.stopping
        reason = "stopping" if self.stopping else self._reason
        return ok, {"service": self.service, "ready": ok, "reason": reason}


class _OpsHandler(BaseHTTPRequestHandler):
    health: Health

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            ok, body = self.health.live() if path == "/healthz" else self.health.ready()
            self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
        return


def ops_port(settings: Settings) -> int:
    raw = os.environ.get(OPS_PORT_ENV)
    return int(raw) if raw else settings.observability.port


def start_ops_server(settings: Settings, health: Health) -> ThreadingHTTPServer | None:
    """Serve /metrics, /healthz, /readyz on a daemon thread; None when the port is 0 (off)."""
    port = ops_port(settings)
    if port <= 0:
        return None
    handler = type("OpsHandler", (_OpsHandler,), {"health": health})
    server = ThreadingHTTPServer((settings.observability.host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ops-http", daemon=True).start()
    log.info("%s: metrics and health on http://%s:%d/metrics", health.service, settings.observability.host, port)
    return server


class LagTracker:
    """Consumer lag per partition without trusting tansu's ListOffsets (see the module docstring)."""

    def __init__(self, service: str, interval_s: float) -> None:
        self.service = service
        self.interval_s = interval_s
        self.highest: dict[tuple[str, int], int] = {}
        self._last = 0.0

    def observe(self, msgs: Iterable[Any]) -> None:
        for m in msgs:
            key = (m.topic(), m.partition())
            nxt = m.offset() + 1
            if nxt > self.highest.get(key, 0):
                self.highest[key] = nxt

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval_s

    def update(self, consumer: Any, committed: Callable[[], dict[tuple[str, int], int]]) -> None:
        """Refresh the gauges (at most every ``interval_s``); never raises."""
        if not self.due():
            return
        self._last = time.monotonic()
        try:
            positions = committed()
            from confluent_kafka import TopicPartition

            for tp in consumer.assignment():
                key = (tp.topic, tp.partition)
                high = self.highest.get(key, 0)
                try:
                    _low, hw = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
                    if hw is not None and hw > high:
                        high = hw
                except Exception:  # noqa: BLE001 - no fetch yet for this partition
                    pass
                pos = positions.get(key, 0)
                CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(max(0, high - pos))
        except Exception as exc:  # noqa: BLE001 - metrics must never take a worker down
            log.debug("lag update failed: %s", exc)


def kafka_committed(consumer: Any, timeout: float = 2.0) -> dict[tuple[str, int], int]:
    """The group's committed offsets for the current assignment (processors)."""
    out: dict[tuple[str, int], int] = {}
    for tp in consumer.committed(consumer.assignment(), timeout=timeout):
        if tp.offset is not None and tp.offset >= 0:
            out[(tp.topic, tp.partition)] = tp.offset
    return out
