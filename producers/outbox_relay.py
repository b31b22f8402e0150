"""Publishes the PostgreSQL outbox to Kafka with an idempotent producer.

At-least-once by construction (a crash between the broker's ack and the ``published_at`` update
republishes the same event id, which every consumer deduplicates); nothing is ever skipped: rows
stay pending until the broker acknowledged them, so uploads accepted while the broker is down go
out when it is back. LISTEN/NOTIFY wakes the relay at once; a poll covers missed notifications.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

from confluent_kafka import KafkaError, Message

from argus import db, kafka
from argus.settings import Settings

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, settings: Settings, batch: int = 500) -> None:
        self.settings = settings
        self.batch = batch
        self.producer = kafka.producer(settings, **{"message.timeout.ms": 10000})
        self.stop_event = threading.Event()

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
            if errors or remaining:
                log.warning("outbox: %d published, %d failed (%s); will retry", len(acked),
                            len(rows) - len(acked), errors[:1] or "timeout")
            return len(acked)

    def run(self, idle_poll_s: float = 1.0) -> None:
        backoff = 0.5
        listen = db.connect(self.settings, autocommit=True)
        listen.execute("LISTEN argus_outbox")
        log.info("outbox relay running")
        try:
            while not self.stop_event.is_set():
                try:
                    n = self.publish_pending()
                    backoff = 0.5
                except Exception as exc:  # noqa: BLE001 - broker/db down: wait and retry, never exit
                    log.warning("outbox relay: %s; retrying in %.1fs", exc, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.settings.processor.retry_max_wait_s)
                    try:
                        listen.close()
                        listen = db.connect(self.settings, autocommit=True)
                        listen.execute("LISTEN argus_outbox")
                    except Exception:  # noqa: BLE001
                        pass
                    continue
                if n == 0:
                    for _ in listen.notifies(timeout=idle_poll_s, stop_after=1):
                        pass
        finally:
            listen.close()
            self.producer.flush(5)

    def stop(self) -> None:
        self.stop_event.set()
