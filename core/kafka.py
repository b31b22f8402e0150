"""Kafka client setup shared by every service (confluent-kafka / librdkafka).

Why confluent-kafka and not faust: the relay and processors need an idempotent producer, and
aiokafka's (faust's client) fails InitProducerId on tansu; the sinks need manual assignment-time
seeks to offsets stored in PostgreSQL, which is plain librdkafka API. See docs/architecture.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from core.settings import Settings

log = logging.getLogger(__name__)

TOPIC_UPLOADED = "media.uploaded"
TOPIC_DLQ = "media.dlq"
TOPIC_LIFECYCLE = "media.lifecycle"  # kills, deletes, restores, embargoes, edits (docs/metadata.md)
TOPIC_ANNOTATED = "assets.annotated"  # one event per asset when its expected models are final
TOPIC_LIFECYCLE_REQUESTS = "media.lifecycle.requests"  # producers ask the lifecycle sink to kill/withhold/release


def annotations_topic(model: str) -> str:
    return f"annotations.{model}"


def backfill_topic(model: str) -> str:
    """Re-published uploads for ONE model's processors (``argus reindex``, argus/reindex.py)."""
    return f"media.backfill.{model}"


def producer(settings: Settings, **overrides: Any) -> Producer:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "enable.idempotence": True,  # no duplicates or reordering from producer retries
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 30000,
        "message.max.bytes": 16 * 1024 * 1024,
    }
    conf.update(overrides)
    return Producer(conf)


def consumer(settings: Settings, group: str, **overrides: Any) -> Consumer:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        # tansu's ListOffsets(latest) is wrong, so never rely on 'latest' (docs/embedded-stack.md)
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.kafka.session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.kafka.session_timeout_ms // 4),
        "max.poll.interval.ms": 300000,
        "fetch.wait.max.ms": 100,
        "isolation.level": "read_committed",
    }
    conf.update(overrides)
    return Consumer(conf)


def all_topics(settings: Settings, models: list[str]) -> list[str]:
    return [settings.topic(TOPIC_UPLOADED), settings.topic(TOPIC_DLQ), settings.topic(TOPIC_LIFECYCLE),
            settings.topic(TOPIC_LIFECYCLE_REQUESTS)] + [
        settings.topic(annotations_topic(m)) for m in models
    ]


def ensure_topics(settings: Settings, topics: list[str], timeout: float = 15.0) -> None:
    """Create the topics with the configured partition count (tansu cannot add partitions later)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=settings.kafka.partitions, replication_factor=1) for t in missing],
        operation_timeout=timeout,
    )
    for fut in futures.values():
        try:
            fut.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def is_noise(msg: Message) -> bool:
    """True for consumer events that are not records (partition EOF, transient errors)."""
    err = msg.error()
    if err is None:
        return False
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", err)
    return True


def next_offsets(msgs: Iterable[Message]) -> list[TopicPartition]:
    """The offsets to commit after ``msgs``: per partition, one past the highest offset seen."""
    out: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        assert topic is not None and partition is not None and offset is not None
        out[(topic, partition)] = max(out.get((topic, partition), 0), offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in out.items()]


class UndeliveredError(RuntimeError):
    """Asked to stop while outputs were still unacknowledged: offsets must not be committed."""


def produce_all(producer: Producer, records: list[tuple[str, str, bytes]], stop: threading.Event, stage: str) -> None:
    """Produce every (topic, key, value) and wait for the broker's acks. While the broker is unreachable
    the whole set is re-sent (consumers deduplicate by event id); a full local queue is backpressure."""
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    while True:
        failures.clear()
        for topic, key, value in records:
            while True:
                try:
                    producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.5)
        remaining = producer.flush(60)
        if not failures and remaining == 0:
            return
        log.warning("%s: %d deliveries failed (%s); retrying", stage, len(failures) + remaining, failures[:1])
        if stop.wait(2.0):
            raise UndeliveredError(f"{stage}: stopping with undelivered outputs; offsets not committed")
