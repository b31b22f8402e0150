"""Publishes the PostgreSQL outbox to Kafka with an idempotent producer.

At-least-once by construction (a crash between the broker's ack and the ``published_at`` update
republishes the same event id, which every consumer deduplicates); nothing is ever skipped: rows
stay pending until the broker acknowledged them, so uploads accepted while the broker is down go
out when it is back. LISTEN/NOTIFY wakes the relay at once; a poll covers missed notifications.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time

from confluent_kafka import KafkaError, Message

from core import db, kafka, metrics
from core.resilience import Stopped, wait_for
from core.settings import Settings

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, settings: Settings, batch: int = 500) -> None:
        self.settings = settings
        self.batch = batch
        self.producer = kafka.producer(settings, **{"message.timeout.ms": 10000})
        self.stop_event = threading.Event()
        self.health = metrics.Health("relay")
        self._backlog_at = 0.0

    def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were confirmed (0 when idle)."""
        with db.connect(self.settings) as conn, conn.transaction():
            rows = conn.execute(
                """SELECT id, event_id, topic, key, payload FROM outbox
                   WHERE published_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
                (self.batch,),
            ).fetchall()
            if not rows:
                return 0
            acked: list[int] = []
            errors: list[str] = []

            def on_delivery(err: KafkaError | None, msg: Message, row_id: int) -> None:
                if err is None:
                    acked.append(row_id)
                else:
                    errors.append(str(err))

            for r in rows:
                self.producer.produce(
                    r["topic"],
                    key=r["key"].encode(),
                    value=bytes(r["payload"]),
                    headers={"event_id": r["event_id"]},
                    on_delivery=functools.partial(on_delivery, row_id=r["id"]),
                )
            remaining = self.producer.flush(15)
            if acked:
                conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY(%s)", (acked,))
                metrics.OUTBOX_PUBLISHED.inc(len(acked))
                metrics.EVENTS_OUT.labels("relay", rows[0]["topic"]).inc(len(acked))
            if errors or remaining:
                log.warning("outbox: %d published, %d failed (%s); will retry", len(acked),
                            len(rows) - len(acked), errors[:1] or "timeout")
            return len(acked)

    def _listen(self) -> db.Conn:
        conn = db.connect(self.settings, autocommit=True)
        conn.execute("LISTEN argus_outbox")
        return conn

    def _update_backlog(self, conn: db.Conn) -> None:
        if time.monotonic() - self._backlog_at < self.settings.observability.lag_interval_s:
            return
        self._backlog_at = time.monotonic()
        metrics.OUTBOX_BACKLOG.set(db.scalar(conn, "SELECT count(*) FROM outbox WHERE published_at IS NULL"))

    def run(self, idle_poll_s: float = 1.0) -> None:
        backoff = 0.5
        metrics.start_ops_server(self.settings, self.health)
        try:  # PostgreSQL may be down when the relay is (re)started: wait for it
            listen: db.Conn | None = wait_for(self._listen, "relay: PostgreSQL", self.stop_event)
        except Stopped:
            return
        log.info("outbox relay running")
        try:
            while not self.stop_event.is_set():
                self.health.beat()
                try:
                    if listen is None or listen.closed or listen.broken:
                        listen = self._listen()
                    n = self.publish_pending()
                    self._update_backlog(listen)
                    backoff = 0.5
                    self.health.set_ready(True, "publishing")
                    if n == 0:  # idle: wait for a NOTIFY (or the poll interval)
                        for _ in listen.notifies(timeout=idle_poll_s, stop_after=1):
                            pass
                except Exception as exc:  # noqa: BLE001 - broker/db down: wait and retry, never exit
                    metrics.RELAY_ERRORS.inc()
                    self.health.set_ready(False, f"{type(exc).__name__}")
                    log.warning("outbox relay: %s; retrying in %.1fs", str(exc).strip()[:300], backoff)
                    if listen is not None:
                        with contextlib.suppress(Exception):  # the connection is being discarded anyway
                            listen.close()
                    listen = None
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, self.settings.processor.retry_max_wait_s)
            log.info("outbox relay stopped cleanly")
        finally:
            self.health.stopping = True
            if listen is not None:
                listen.close()
            self.producer.flush(5)

    def stop(self) -> None:
        self.stop_event.set()
