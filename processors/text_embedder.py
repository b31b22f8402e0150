"""The text-embedding processor: (re)computes each asset's MiniLM text embedding when its text changes.

When: an asset's searchable text grows over time (upload metadata first, then each model's annotation
as it lands), so this worker consumes ``media.uploaded`` and the annotation topics of the other models
(consumer group ``argus-processor-text_embed``) instead of the media. Per batch it

1. upserts each source's text into ``asset_texts`` (asset, source = "metadata" or a model; newest wins),
   so the full text survives restarts and never depends on the order the topics are read in;
2. rebuilds the text of every touched asset (title, description, then each model's labels and text,
   as each payload kind's ``search_fields`` gives them; videos use the models' summaries, not single keyframes);
3. embeds only assets whose text hash differs from the last one emitted (``asset_text_embedded``), in
   batches through Triton, and emits one ``text_embedding`` annotation each to ``annotations.text_embed``;
4. records the emitted hashes and commits the offsets only after the broker acknowledged everything.

It runs on the shared processor runtime (``Processor``: health, metrics, lag, backpressure, in-order commits,
SIGTERM drain); only what a batch is differs. So an asset annotated by N models is embedded at most N+1 times
(once per change), usually fewer because changes within one batch coalesce, and the search index's newest-wins
rule keeps the latest vector. The annotation id includes the text hash, so a replay re-emits the same ids (the
sinks deduplicate) while each distinct text keeps its own row in the system of record.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Message

from core import db, kafka, metrics
from core.resilience import wait_for
from core.settings import Settings
from models.registry import enabled_models
from models.text_embed import TextEmbed
from processors.runtime import Batch, Processor
from schemas.events import (
    Annotation,
    AnnotationPayload,
    DeadLetter,
    MediaUploaded,
    SchemaError,
    TextEmbedding,
    annotation_id,
    dump,
    is_facet_label,
    parse,
)

log = logging.getLogger(__name__)

METADATA = "metadata"


@dataclass(frozen=True)
class AssetText:
    text: str
    sources: list[str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def source_text(payload: AnnotationPayload) -> str:
    """What one model's annotation adds to the asset's text: its labels, then its free text."""
    f = payload.search_fields()
    parts = []
    if f.title_text.strip():  # a photo's headline, caption and keywords (what the newsroom wrote) first
        parts.append(" ".join(f.title_text.split()))
    labels = [lb for lb in f.labels if not is_facet_label(lb)]  # "credit:afp" is a facet, not words
    if labels:
        parts.append(", ".join(labels))
    if f.text.strip():
        parts.append(" ".join(f.text.split()))
    return ". ".join(parts)


def compose(texts: dict[str, str]) -> AssetText:
    """Metadata first (what the newsroom wrote), then the models in name order (stable text -> stable hash)."""
    order = ([METADATA] if METADATA in texts else []) + sorted(s for s in texts if s != METADATA)
    used = [s for s in order if texts[s].strip()]
    return AssetText(". ".join(texts[s].strip() for s in used), used)


class TextEmbedder(Processor):
    """The shared processor runtime, fed with upload metadata and annotations instead of media."""

    model: TextEmbed

    def __init__(self, settings: Settings, model: TextEmbed) -> None:
        super().__init__(settings, model)
        self.sources = [settings.topic(kafka.annotations_topic(m)) for m in enabled_models(settings)
                        if m != model.name]
        self.stats["embedded"] = 0

    def input_topics(self) -> list[str]:
        return [self.in_topic, *self.sources]

    def start_batch(self, msgs: Sequence[Message]) -> Batch:
        return Batch(list(msgs), time.perf_counter())

    def _finish_work(self, batch: Batch) -> None:
        # PostgreSQL/Triton down: wait and redo the batch (idempotent: newest-wins upserts, re-emitted annotations
        # carry the same ids) instead of exiting; a stop while waiting leaves the batch uncommitted
        batch.outputs = wait_for(lambda: self.process(batch.msgs), f"{self.stage} batch", self.stop_event,
                                 self.settings.processor.retry_max_wait_s)
        metrics.EVENTS_OUT.labels(self.stage, self.out_topic).inc(batch.outputs)

    # -- one batch ---------------------------------------------------------------------------
    def process(self, msgs: Sequence[Message]) -> int:
        """Record, embed what changed, emit, and remember what was emitted. Returns embeddings emitted."""
        rows: list[tuple[str, str, str, datetime]] = []
        dead: list[DeadLetter] = []
        for m in msgs:
            try:
                if m.topic() == self.in_topic:
                    up = parse(m.value(), MediaUploaded)
                    meta = ". ".join(x.strip() for x in (up.title, up.description) if x and x.strip())
                    rows.append((up.asset_id, METADATA, meta, up.occurred_at))
                else:
                    a = parse(m.value(), Annotation)
                    if a.keyframe_ms is None and a.model != self.model.name:  # videos: the summary, not keyframes
                        rows.append((a.asset_id, a.model, source_text(a.payload), a.occurred_at))
            except SchemaError as exc:
                dead.append(self._dead_letter(m, exc, None))
        touched = sorted({r[0] for r in rows})
        version = self.model.model_version
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
        return len(outputs)

    def _embed(self, todo: dict[str, AssetText], version: str) -> list[tuple[str, bytes]]:
        ids = list(todo)
        out: list[tuple[str, bytes]] = []
        step = self.model.max_batch
        for i in range(0, len(ids), step):
            chunk = ids[i : i + step]
            vectors = self.model.embed([todo[a].text for a in chunk], self.triton)
            for asset_id, vec in zip(chunk, vectors, strict=True):
                doc = todo[asset_id]
                emb = [round(float(x), 6) for x in vec]
                aid = annotation_id(asset_id, self.model.name, f"{version}#{doc.sha256[:16]}", None)
                ann = Annotation(
                    event_id=f"ann-{aid}", annotation_id=aid, asset_id=asset_id, model=self.model.name,
                    model_version=version, keyframe_ms=None,
                    payload=TextEmbedding(embedding=emb, embedding_dim=len(emb), text_sha256=doc.sha256,
                                          text_chars=len(doc.text), sources=doc.sources),
                    occurred_at=datetime.now(UTC),
                )
                out.append((asset_id, dump(ann)))
        return out
