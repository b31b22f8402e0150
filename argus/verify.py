"""The one verifier for exactly-once claims (chaos suite, crash tests, hostile-input suite).

Modelled on Kafka Streams' EOS verifier: after the fact, read everything back and check every record
rather than trusting counters the system keeps about itself:

- every asset has every model's annotation, exactly once per (asset, model, version, keyframe) (a model
  whose input is other annotations, e.g. text_embed, is also keyed by its input text's sha256);
- the search index holds exactly the assets of the system of record, each with every model merged;
- each sink's offsets stored in PostgreSQL equal the records in each partition of its topics, and the
  processors' committed group offsets equal the records of ``media.uploaded`` (nothing skipped,
  nothing left behind);
- no valid asset sits in the dead-letter table, and the outbox is empty.

Upstream redeliveries (records re-sent after a crash) are allowed and reported; duplicates in the
effect (rows, documents) are not. Topic contents are counted by reading from the beginning because
tansu's watermarks cannot be trusted (docs: notes/kafka.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Message, TopicPartition

from core import db, kafka
from core.settings import Settings
from models.registry import enabled_models


def read_topic(settings: Settings, topic: str, idle_s: float = 4.0) -> Iterator[Message]:
    """Every record of ``topic`` from the beginning (a throw-away consumer group), until ``idle_s`` without one."""
    c = kafka.consumer(settings, f"verify-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_uncommitted"})
    c.subscribe([topic])
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error() is None:
                    last = time.monotonic()
                    yield m
    finally:
        c.close()


def count_records(settings: Settings, topic: str, idle_s: float = 4.0) -> dict[int, int]:
    """Records per partition, read from the beginning."""
    counts: dict[int, int] = {}
    for m in read_topic(settings, topic, idle_s):
        p = m.partition()
        assert p is not None
        counts[p] = counts.get(p, 0) + 1
    return counts


def group_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """A consumer group's committed offsets (OffsetFetch only: the group is not joined)."""
    c = kafka.consumer(settings, group)
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        return {tp.partition: tp.offset for tp in c.committed(parts, timeout=10) if tp.offset >= 0}
    finally:
        c.close()


@dataclass
class Verdict:
    assets_expected: int
    assets_in_db: int = 0
    missing_annotations: list[tuple[str, str]] = field(default_factory=list)  # (asset, model)
    duplicate_annotations: int = 0  # extra rows for one (asset, model, version, keyframe)
    missing_docs: list[str] = field(default_factory=list)
    extra_docs: list[str] = field(default_factory=list)  # docs for assets not in the system of record
    docs_missing_model: list[tuple[str, str]] = field(default_factory=list)
    valid_dead_lettered: list[str] = field(default_factory=list)
    dead_letters_total: int = 0
    outbox_pending: int = 0
    records: dict[str, int] = field(default_factory=dict)  # topic -> records
    redelivered: dict[str, int] = field(default_factory=dict)  # topic -> records beyond one per event
    offset_mismatches: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return len(self.missing_annotations) + len(self.missing_docs) + len(self.docs_missing_model)

    @property
    def duplicated(self) -> int:
        return self.duplicate_annotations + len(self.extra_docs)

    @property
    def problems(self) -> list[str]:
        out = []
        if self.assets_in_db < self.assets_expected:
            out.append(f"assets: {self.assets_in_db} in PostgreSQL < {self.assets_expected} accepted")
        if self.missing_annotations:
            out.append(f"{len(self.missing_annotations)} missing annotation(s), e.g. {self.missing_annotations[:3]}")
        if self.duplicate_annotations:
            out.append(f"{self.duplicate_annotations} duplicate annotation row(s)")
        if self.missing_docs or self.extra_docs or self.docs_missing_model:
            out.append(f"search index: {len(self.missing_docs)} missing, {len(self.extra_docs)} extra, "
                       f"{len(self.docs_missing_model)} without a model's annotation")
        if self.valid_dead_lettered:
            out.append(f"{len(self.valid_dead_lettered)} valid asset(s) dead-lettered")
        if self.outbox_pending:
            out.append(f"{self.outbox_pending} outbox row(s) never published")
        out += self.offset_mismatches
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def figures(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("missing_annotations", "missing_docs", "extra_docs", "docs_missing_model", "valid_dead_lettered"):
            d[k] = len(d[k])
        return {**d, "missing": self.missing, "duplicated": self.duplicated, "ok": self.ok}


def verify(settings: Settings, asset_ids: Iterable[str], models: list[str] | None = None,
           check_offsets: bool = True, idle_s: float = 4.0) -> Verdict:
    """Read everything back and compare (see the module docstring). Never raises on a mismatch."""
    ids = sorted(set(asset_ids))
    models = list(enabled_models(settings) if models is None else models)
    v = Verdict(assets_expected=len(ids))
    with db.connect(settings) as conn:
        q = conn.execute
        v.assets_in_db = db.scalar(conn, "SELECT count(*) FROM assets WHERE asset_id = ANY(%s)", (ids,))
        have = {(r["asset_id"], r["model"]) for r in q(
            "SELECT DISTINCT asset_id, model FROM annotations WHERE asset_id = ANY(%s)", (ids,)).fetchall()}
        v.missing_annotations = [(a, m) for a in ids for m in models if (a, m) not in have]
        v.duplicate_annotations = int(db.scalar(conn, """
            SELECT coalesce(sum(n - 1), 0) FROM (
              SELECT count(*) AS n FROM annotations
              GROUP BY asset_id, model, model_version, coalesce(keyframe_ms, -1),
                       coalesce(payload->>'text_sha256', '') HAVING count(*) > 1) d"""))
        docs = {r["asset_id"]: r["models"] for r in q("SELECT asset_id, models FROM search_docs").fetchall()}
        all_assets = {r["asset_id"] for r in q("SELECT asset_id FROM assets").fetchall()}
        v.missing_docs = [a for a in ids if a not in docs]
        v.extra_docs = sorted(set(docs) - all_assets)
        v.docs_missing_model = [(a, m) for a in ids if a in docs for m in models if m not in (docs[a] or {})]
        v.valid_dead_lettered = [r["asset_id"] for r in q(
            "SELECT DISTINCT asset_id FROM dead_letters WHERE asset_id = ANY(%s)", (ids,)).fetchall()]
        v.dead_letters_total = db.scalar(conn, "SELECT count(*) FROM dead_letters")
        v.outbox_pending = db.scalar(conn, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        stored: dict[tuple[str, str, int], int] = {
            (r["sink"], r["topic"], r["partition"]): r["next_offset"]
            for r in q("SELECT sink, topic, partition, next_offset FROM sink_offsets").fetchall()}
        n_annotations = db.scalar(conn, "SELECT count(*) FROM annotations")
        n_uploads = db.scalar(conn, "SELECT count(*) FROM outbox")
    if not check_offsets:
        return v
    up_topic = settings.topic(kafka.TOPIC_UPLOADED)
    topics = {up_topic: n_uploads}
    topics.update({settings.topic(kafka.annotations_topic(m)): None for m in models})
    per_topic: dict[str, dict[int, int]] = {}
    for topic, events in topics.items():
        counts = count_records(settings, topic, idle_s)
        per_topic[topic] = counts
        v.records[topic] = sum(counts.values())
        if events is not None:
            v.redelivered[topic] = v.records[topic] - events
    ann_total = sum(v.records[t] for t in topics if t != up_topic)
    v.redelivered["annotations"] = ann_total - n_annotations
    consumers: list[tuple[str, str]] = [("search", up_topic)]
    for m in models:
        t = settings.topic(kafka.annotations_topic(m))
        consumers += [("postgres", t), ("search", t)]
    for sink, topic, _p in stored:  # any other sink (e.g. ndd) is checked on what it consumes
        if (sink, topic) not in consumers and topic.startswith(settings.kafka.topic_prefix):
            consumers.append((sink, topic))
            if topic not in per_topic:
                per_topic[topic] = count_records(settings, topic, idle_s)
    for sink, topic in consumers:
        for p in range(settings.kafka.partitions):
            want, got = per_topic[topic].get(p, 0), stored.get((sink, topic, p), 0)
            if want != got:
                v.offset_mismatches.append(f"sink {sink} {topic}[{p}]: stored offset {got} != {want} records")
    for m in models:
        committed = group_offsets(settings, settings.consumer_group(f"argus-processor-{m}"), up_topic)
        for p in range(settings.kafka.partitions):
            want, got = per_topic[up_topic].get(p, 0), committed.get(p, 0)
            if want != got:
                v.offset_mismatches.append(f"processor {m} {up_topic}[{p}]: committed {got} != {want} records")
    return v


def wait_until_consistent(settings: Settings, asset_ids: list[str], timeout: float,
                          models: list[str] | None = None, poll_s: float = 1.0) -> tuple[Verdict, float]:
    """Poll until every asset is annotated and indexed, then until the offsets settle (sinks may still be
    applying redeliveries). Returns the last verdict and the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:  # cheap checks first (no topic reads)
        try:
            v = verify(settings, asset_ids, models, check_offsets=False)
            if not v.missing and v.assets_in_db == v.assets_expected and not v.outbox_pending:
                break
        except Exception:  # noqa: BLE001 - PostgreSQL restarting
            pass
        time.sleep(poll_s)
    while True:
        v = verify(settings, asset_ids, models)
        if v.ok or time.monotonic() > deadline:
            return v, time.monotonic() - t0
        time.sleep(poll_s)
