"""The text-embedding processor: (re)computes each asset's MiniLM text embedding when its text changes.

When: an asset's searchable text grows over time (upload metadata first, then each model's annotation
as it lands), so this worker consumes ``media.uploaded`` and the annotation topics of the other models
(consumer group ``argus-processor-text_embed``) instead of the media. Per batch it

1. upserts each source's text into ``asset_texts`` (asset, source = "metadata" or a model; newest wins),
   so the full text survives restarts and never depends on the order the topics are read in;
2. rebuilds the text of every touched asset (title, description, then each model's labels and text,
   as ``sinks.search.fields`` gives them; videos use the models' summaries, not single keyframes);
3. embeds only assets whose text hash differs from the last one emitted (``asset_text_embedded``), in
   batches through Triton, and emits one ``text_embedding`` annotation each to ``annotations.text_embed``;
4. records the emitted hashes and commits the offsets only after the broker acknowledged everything.

So an asset annotated by N models is embedded at most N+1 times (once per change), usually fewer because
changes within one batch coalesce, and the search index's newest-wins rule keeps the latest vector. The
annotation id includes the text hash, so a replay re-emits the same ids (the sinks deduplicate) while
each distinct text keeps its own row in the system of record.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException, Message

from core import db, kafka
from core.resilience import wait_for
from core.settings import Settings
from core.triton import TritonClient
from processors.runtime import ModelHandler
from retrieval.semantic import embed_texts
from schemas.events import (
    Annotation,
    DeadLetter,
    MediaUploaded,
    SchemaError,
    TextEmbedding,
    annotation_id,
    dump,
    parse,
)
from sinks.search.fields import search_fields

log = logging.getLogger(__name__)

STATE_SQL = """
CREATE TABLE IF NOT EXISTS asset_texts (
    asset_id    text NOT NULL,
    source      text NOT NULL,              -- 'metadata' or a model name
    text        text NOT NULL,
    produced_at timestamptz NOT NULL,
    PRIMARY KEY (asset_id, source)
);
CREATE TABLE IF NOT EXISTS asset_text_embedded (
    asset_id      text NOT NULL,
    model_version text NOT NULL,
    text_sha256   text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, model_version)
);
"""
METADATA = "metadata"


@dataclass(frozen=True)
class AssetText:
    text: str
    sources: list[str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def source_text(payload: Any) -> str:
    """What one model's annotation adds to the asset's text: its labels, then its free text."""
    f = search_fields(payload)
    parts = []
    if f.labels:
        parts.append(", ".join(f.labels))
    if f.text.strip():
        parts.append(" ".join(f.text.split()))
    return ". ".join(parts)


def compose(texts: dict[str, str]) -> AssetText:
    """Metadata first (what the newsroom wrote), then the models in name order (stable text -> stable hash)."""
    order = ([METADATA] if METADATA in texts else []) + sorted(s for s in texts if s != METADATA)
    used = [s for s in order if texts[s].strip()]
    return AssetText(". ".join(texts[s].strip() for s in used), used)


class TextEmbedder:
    def __init__(self, settings: Settings, handler: ModelHandler) -> None:
        self.settings = settings
        self.handler = handler
        self.model = handler.model
        self.stage = f"processor:{self.model}"
        self.group = f"argus-processor-{self.model}"
        self.uploaded = settings.topic(kafka.TOPIC_UPLOADED)
        self.sources = [settings.topic(kafka.annotations_topic(m)) for m in settings.models if m != self.model]
        self.out_topic = settings.topic(kafka.annotations_topic(self.model))
        self.dlq_topic = settings.topic(kafka.TOPIC_DLQ)
        self.triton = TritonClient(settings)
        self.stop_event = threading.Event()
        self.triton.abort = self.stop_event
        self.stats = {"embedded": 0, "batches": 0}

    def ensure_state(self) -> None:
        with db.transaction(self.settings) as tx:
            tx.execute("SELECT pg_advisory_xact_lock(7245510)")  # several starters at once
            tx.execute(STATE_SQL)  # type: ignore[arg-type]  # static SQL

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def stop(self, *_: Any) -> None:
        self.stop_event.set()

    def run(self) -> None:
        kafka.ensure_topics(self.settings, [self.uploaded, *self.sources, self.out_topic, self.dlq_topic])
        self.ensure_state()
        self.consumer = kafka.consumer(self.settings, self.group)
        self.producer = kafka.producer(self.settings)
        self.consumer.subscribe([self.uploaded, *self.sources])
        log.info("%s consuming %s (group %s)", self.stage, [self.uploaded, *self.sources], self.group)
        try:
            while not self.stop_event.is_set():
                msgs = self.consumer.consume(num_messages=self.settings.processor.batch_size * 4, timeout=0.2)
                msgs = [m for m in msgs if not kafka.is_noise(m)]
                if msgs:
                    # PostgreSQL/Triton down: wait and redo the batch (idempotent: newest-wins upserts,
                    # re-emitted annotations carry the same ids) instead of exiting
                    wait_for(functools.partial(self.process, msgs), f"{self.stage} batch", self.stop_event,
                             self.settings.processor.retry_max_wait_s)
                    try:
                        self.consumer.commit(offsets=kafka.next_offsets(msgs), asynchronous=False)
                    except KafkaException as exc:  # rebalanced meanwhile: redelivered, deduplicated downstream
                        log.warning("%s: offset commit failed (%s)", self.stage, exc)
        finally:
            self.consumer.close()
            self.producer.flush(10)
            self.triton.close()

    # -- one batch ---------------------------------------------------------------------------
    def process(self, msgs: list[Message]) -> int:
        """Record, embed what changed, emit, and remember what was emitted. Returns embeddings emitted."""
        rows: list[tuple[str, str, str, datetime]] = []
        dead: list[DeadLetter] = []
        for m in msgs:
            try:
                if m.topic() == self.uploaded:
                    up = parse(m.value(), MediaUploaded)
                    meta = ". ".join(x.strip() for x in (up.title, up.description) if x and x.strip())
                    rows.append((up.asset_id, METADATA, meta, up.occurred_at))
                else:
                    a = parse(m.value(), Annotation)
                    if a.keyframe_ms is None and a.model != self.model:  # videos: the summary, not each keyframe
                        rows.append((a.asset_id, a.model, source_text(a.payload), a.occurred_at))
            except SchemaError as exc:
                dead.append(self._dead_letter(m, exc))
        touched = sorted({r[0] for r in rows})
        version = self.handler.version
        with db.transaction(self.settings) as tx:
            for r in rows:
                tx.execute(
                    """INSERT INTO asset_texts (asset_id, source, text, produced_at) VALUES (%s,%s,%s,%s)
                       ON CONFLICT (asset_id, source) DO UPDATE SET text=EXCLUDED.text, produced_at=EXCLUDED.produced_at
                       WHERE asset_texts.produced_at <= EXCLUDED.produced_at""", r)
            texts: dict[str, dict[str, str]] = {}
            for row in tx.execute("SELECT asset_id, source, text FROM asset_texts WHERE asset_id = ANY(%s)",
                                  (touched,)):
                texts.setdefault(row["asset_id"], {})[row["source"]] = row["text"]
            done = {row["asset_id"]: row["text_sha256"] for row in tx.execute(
                "SELECT asset_id, text_sha256 FROM asset_text_embedded WHERE asset_id = ANY(%s) AND model_version=%s",
                (touched, version))}
        todo = {}
        for asset_id, by_source in texts.items():
            doc = compose(by_source)
            if doc.text and done.get(asset_id) != doc.sha256:
                todo[asset_id] = doc
        outputs = self._embed(todo, version) if todo else []
        self._emit(outputs, dead)
        if todo:
            with db.transaction(self.settings) as tx:
                for asset_id, doc in todo.items():
                    tx.execute(
                        """INSERT INTO asset_text_embedded (asset_id, model_version, text_sha256) VALUES (%s,%s,%s)
                           ON CONFLICT (asset_id, model_version) DO UPDATE SET text_sha256=EXCLUDED.text_sha256,
                           updated_at=now()""", (asset_id, version, doc.sha256))
        self.stats["embedded"] += len(outputs)
        self.stats["batches"] += 1
        return len(outputs)

    def _embed(self, todo: dict[str, AssetText], version: str) -> list[tuple[str, bytes]]:
        ids = list(todo)
        out: list[tuple[str, bytes]] = []
        step = self.handler.max_batch
        for i in range(0, len(ids), step):
            chunk = ids[i : i + step]
            vectors = embed_texts(self.settings, [todo[a].text for a in chunk], self.triton, self.model)
            for asset_id, vec in zip(chunk, vectors, strict=True):
                doc = todo[asset_id]
                emb = [round(float(x), 6) for x in vec]
                aid = annotation_id(asset_id, self.model, f"{version}#{doc.sha256[:16]}", None)
                ann = Annotation(
                    event_id=f"ann-{aid}", annotation_id=aid, asset_id=asset_id, model=self.model,
                    model_version=version, keyframe_ms=None,
                    payload=TextEmbedding(embedding=emb, embedding_dim=len(emb), text_sha256=doc.sha256,
                                          text_chars=len(doc.text), sources=doc.sources),
                    occurred_at=datetime.now(UTC),
                )
                out.append((asset_id, dump(ann)))
        return out

    def _dead_letter(self, m: Message, exc: Exception) -> DeadLetter:
        where = f"{m.topic()}/{m.partition()}/{m.offset()}"
        log.warning("%s dead-letter %s: %s", self.stage, where, exc)
        return DeadLetter(event_id=f"dlq-{self.model}-{where}", stage=self.stage, reason=str(exc),
                          error_type=type(exc).__name__, model=self.model, source_topic=m.topic(),
                          source_partition=m.partition(), source_offset=m.offset())

    def _emit(self, outputs: list[tuple[str, bytes]], dead: list[DeadLetter]) -> None:
        kafka.produce_all(self.producer, [(self.out_topic, k, v) for k, v in outputs]
                          + [(self.dlq_topic, d.asset_id or d.event_id, dump(d)) for d in dead],
                          self.stop_event, self.stage)
