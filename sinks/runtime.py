"""Exactly-once sink runtime: the writes and the consumed offsets commit in ONE PostgreSQL transaction.

On partition assignment the consumer seeks to the offsets stored in ``sink_offsets`` (Kafka's own
committed offsets are written too, but only for lag display). A crash anywhere therefore either
loses the whole transaction (the batch is re-read from the stored offset) or keeps it with its
offsets (never re-applied). Writes are also idempotent on deterministic ids, a second guard for a
zombie instance that still writes after a rebalance.

PostgreSQL down -> the batch is retried with backoff until it commits. A record that can never be
written (malformed, wrong schema version, refers to an unknown asset) is isolated with a savepoint
and recorded in ``dead_letters`` inside the same transaction; it never blocks the partition.
"""

from __future__ import annotations

import base64
import logging
import signal
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition

from core import db, faults, kafka, metrics
from core.resilience import Stopped, wait_for
from core.settings import Settings

log = logging.getLogger(__name__)


class SinkWriter(ABC):
    """What a concrete sink adds: its topics and how one record is applied inside the transaction."""

    name: ClassVar[str]
    # seconds between ``tick`` calls, with or without records (None: never), e.g. an embargo that ends while no
    # record arrives (sinks/aggregate_sink.py)
    tick_interval_s: ClassVar[float | None] = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def topics(self) -> list[str]: ...

    def start(self) -> None:
        """Idempotent setup outside PostgreSQL's migrations, run once before consuming (retried until
        it succeeds), e.g. the search engine's index templates. Tables are SQL migrations, not this."""
        return None  # nothing by default

    @abstractmethod
    def write(self, conn: db.Conn, msgs: list[Message]) -> int:
        """Apply a batch inside the open transaction; return how many records had an effect.
        Raise for a record that cannot be applied (the runtime then isolates it)."""

    def tick(self, conn: db.Conn) -> int:
        """Time-driven work inside its own transaction (no offsets move), every ``tick_interval_s``. It must be
        idempotent: a crash before its commit repeats it at the next tick."""
        return 0


class SinkRunner:
    def __init__(self, settings: Settings, writer: SinkWriter, batch_size: int = 500) -> None:
        self.settings = settings
        self.writer = writer
        self.batch_size = batch_size
        self.group = settings.consumer_group(f"argus-sink-{writer.name}")
        self.stop_event = threading.Event()
        self.conn: db.Conn | None = None
        self.stats = {"applied": 0, "batches": 0, "dead_letters": 0}
        self.service = f"sink:{writer.name}"
        self.health = metrics.Health(self.service)
        self.lag = metrics.LagTracker(self.service, settings.observability.lag_interval_s)
        self._last_tick = 0.0

    # -- assignment: seek to what PostgreSQL says ---------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        stored = self._stored_offsets()
        for p in partitions:
            p.offset = stored.get((p.topic, p.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
        log.info("sink %s assigned %s", self.writer.name,
                 [(p.topic, p.partition, p.offset) for p in partitions])

    def _stored_offsets(self) -> dict[tuple[str, int], int]:
        while True:
            try:
                with db.connect(self.settings) as conn:
                    rows = conn.execute(
                        "SELECT topic, partition, next_offset FROM sink_offsets WHERE sink=%s", (self.writer.name,)
                    ).fetchall()
                return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
            except psycopg.OperationalError as exc:
                log.warning("sink %s: PostgreSQL unreachable while loading offsets (%s); waiting",
                            self.writer.name, exc)
                time.sleep(1.0)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        topics = self.writer.topics()
        metrics.start_ops_server(self.settings, self.health)
        try:  # the broker may be down when this worker is (re)started: wait, don't crash
            wait_for(lambda: kafka.ensure_topics(self.settings, topics), f"{self.service}: the broker",
                     self.stop_event)
            wait_for(self.writer.start, f"{self.service}: its setup", self.stop_event)
        except Stopped:
            return
        self.consumer = kafka.consumer(self.settings, self.group)
        self.consumer.subscribe(topics, on_assign=self._on_assign)
        log.info("sink %s consuming %s", self.writer.name, topics)
        self.health.set_ready(True, "consuming")
        try:
            while not self.stop_event.is_set():
                self.health.beat()
                msgs = [m for m in self.consumer.consume(num_messages=self.batch_size, timeout=0.2)
                        if not kafka.is_noise(m)]
                if msgs:
                    self.lag.observe(msgs)
                    for m in msgs:
                        metrics.EVENTS_IN.labels(self.service, m.topic()).inc()
                    self._commit_batch(msgs)
                self._maybe_tick()
                self.lag.update(self.consumer, self._stored_offsets_once)
            # graceful stop (SIGTERM): the batch in hand was committed (rows + offsets) before the loop ended
            log.info("sink %s: stopped cleanly after %d batches", self.writer.name, self.stats["batches"])
        finally:
            self.health.stopping = True
            self.consumer.close()
            if self.conn is not None:
                self.conn.close()

    def _maybe_tick(self) -> None:
        interval = self.writer.tick_interval_s
        now = time.monotonic()
        if interval is None or now - self._last_tick < interval:
            return
        self._last_tick = now
        try:
            conn = self._connection()
            with conn.transaction():
                self.writer.tick(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # the next tick tries again
            log.warning("sink %s: tick skipped, PostgreSQL unavailable (%s)", self.writer.name, str(exc)[:200])
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        except Exception:  # a failing tick must not stop the records from flowing
            log.exception("sink %s: tick failed", self.writer.name)

    def _stored_offsets_once(self) -> dict[tuple[str, int], int]:
        """For the lag gauge: one attempt, raises when PostgreSQL is down (the gauge just isn't updated)."""
        conn = self._connection()
        rows = conn.execute("SELECT topic, partition, next_offset FROM sink_offsets WHERE sink=%s",
                            (self.writer.name,)).fetchall()
        conn.rollback()  # end the read-only transaction: the connection is reused for batches
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    def stop(self, *_: Any) -> None:
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _connection(self) -> db.Conn:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = db.connect(self.settings)
        return self.conn

    def _commit_batch(self, msgs: list[Message]) -> None:
        backoff = 0.2
        while True:
            t0 = time.perf_counter()
            try:
                conn = self._connection()
                with conn.transaction():
                    applied = self._write_isolating_failures(conn, msgs)
                    t1 = time.perf_counter()
                    offsets = kafka.next_offsets(msgs)
                    conn.cursor().executemany(
                        """INSERT INTO sink_offsets (sink, topic, partition, next_offset) VALUES (%s,%s,%s,%s)
                           ON CONFLICT (sink, topic, partition) DO UPDATE
                           SET next_offset = GREATEST(sink_offsets.next_offset, EXCLUDED.next_offset),
                               updated_at = now()""",
                        [(self.writer.name, tp.topic, tp.partition, tp.offset) for tp in offsets],
                    )
                    faults.crash_point("sink.before_commit")  # rows + offsets written, not committed
                t2 = time.perf_counter()
                metrics.SINK_COMMIT_SECONDS.labels(self.writer.name).observe(t2 - t0)
                metrics.STAGE_SECONDS.labels(self.service, "write").inc(t1 - t0)  # parse + rows
                metrics.STAGE_SECONDS.labels(self.service, "offsets").inc(t2 - t1)  # offsets + COMMIT
                self.health.set_ready(True, "consuming")
                break
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # PostgreSQL down or restarting (a dead connection can also surface as InterfaceError):
                # nothing was committed; retry the same batch
                metrics.SINK_RETRIES.labels(self.writer.name).inc()
                self.health.set_ready(False, "PostgreSQL unavailable")
                self.health.beat()  # waiting on a dependency is alive, not hung
                log.warning("sink %s: PostgreSQL unavailable (%s); retrying in %.1fs", self.writer.name,
                            str(exc).strip()[:200], backoff)
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if self.stop_event.wait(backoff):
                    raise
                backoff = min(backoff * 2, self.settings.processor.retry_max_wait_s)
        self.stats["applied"] += applied
        self.stats["batches"] += 1
        metrics.EVENTS_OUT.labels(self.service, "postgres").inc(applied)
        t3 = time.perf_counter()
        self.consumer.commit(offsets=offsets, asynchronous=True)
        metrics.STAGE_SECONDS.labels(self.service, "kafka_commit").inc(time.perf_counter() - t3)

    def _write_isolating_failures(self, conn: db.Conn, msgs: list[Message]) -> int:
        try:
            with conn.transaction():  # savepoint: a poison record must not abort the whole batch
                return self.writer.write(conn, msgs)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except Exception as batch_exc:  # noqa: BLE001
            log.warning("sink %s: batch failed (%s); isolating the bad record(s)", self.writer.name, batch_exc)
        applied = 0
        for m in msgs:
            try:
                with conn.transaction():
                    applied += self.writer.write(conn, [m])
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except Exception as exc:  # noqa: BLE001
                self._dead_letter(conn, m, exc)
        return applied

    def _dead_letter(self, conn: db.Conn, m: Message, exc: Exception) -> None:
        self.stats["dead_letters"] += 1
        metrics.DEAD_LETTERS.labels(self.service, type(exc).__name__).inc()
        where = f"{m.topic()}/{m.partition()}/{m.offset()}"
        log.warning("sink %s dead-letter %s: %s", self.writer.name, where, exc)
        raw = base64.b64encode((m.value() or b"")[:4096]).decode()
        conn.execute(
            """INSERT INTO dead_letters (event_id, stage, reason, error_type, source_topic, source_partition,
                                         source_offset, raw_value)
               VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (event_id) DO NOTHING""",
            (f"dlq-sink-{self.writer.name}-{where}", f"sink:{self.writer.name}", str(exc)[:2000],
             type(exc).__name__, m.topic(), m.partition(), m.offset(), raw),
        )
