"""The per-asset aggregate: one ``assets.annotated`` event when every model expected for an asset is final.

It consumes ``media.uploaded`` (the asset's metadata and its *expected* models: the active models for its
media type when the upload is read), every ``annotations.<model>`` topic and ``media.dlq`` (a model that gave
up), keeps per asset and model the newest outcome in PostgreSQL (``asset_aggregates``,
``asset_aggregate_models``), and when all expected models are final writes the merged, compact record to the
outbox; the relay publishes it to ``assets.annotated``. All of that happens in the sink runtime's transaction
together with the consumed offsets (sinks/runtime.py), so a kill -9 anywhere either loses the whole batch (it
is re-read) or keeps it with its offsets: the effect is exactly once. The event id is a hash of the record's
content and ``occurred_at`` the newest input's time, so a re-emission (the relay republishing after a crash
between the broker's ack and its bookkeeping) is a byte-identical duplicate, and the outbox's unique event id
means the aggregate itself never writes one event twice.

Why a sink and not a faust agent + table: docs/interfaces.md ("The per-asset aggregate").

Finality: a model is final when its annotation (videos: the summary) or its dead letter is in. The text
embedding (a model that consumes the other models' annotations) is final when every other expected model is
final and its newest embedding covers every source that has text, or when the asset has no text at all
(``skipped``). A model that was not expected (added later, or a new version after a reindex) joins the record
and emits an update naming the event it supersedes. Killed, deleted and embargoed assets (``asset_lifecycle``,
docs/metadata.md) get no event until they are released. A release needs no record to arrive: the sink runtime calls
``tick`` every ``tick_interval_s`` (1 s), which emits the events of assets whose embargo has passed. A kill or
delete removes the asset's aggregate rows in the kill's own transaction (sinks/lifecycle.py ``purge_rows``) and the
sink drops every later record about a tombstoned asset (``lifecycle.tombstoned``, which serialises with the kill),
so a replay never rebuilds it; subscribers learn of the kill from the ``media.lifecycle`` event
(docs/interfaces.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from confluent_kafka import Message
from psycopg.types.json import Jsonb

from core import kafka
from core.db import Conn
from core.settings import Settings
from models.base import Model
from models.registry import get_model, unavailable_models
from processors.text_embedder import METADATA, source_text
from schemas.events import (
    Annotation,
    AssetAnnotated,
    AssetInfo,
    DeadLetter,
    EmbeddingRef,
    MediaUploaded,
    MergedLabel,
    ModelOutcome,
    dump,
    parse,
)
from sinks import lifecycle
from sinks.runtime import SinkWriter
from sinks.validation import check_annotation_topic

log = logging.getLogger(__name__)


def compact(a: Annotation) -> dict[str, Any]:
    """What the aggregate keeps of an annotation: labels with scores, free text, numbers, the embedding's size."""
    p = a.payload
    f = p.search_fields()
    labels = {name: 1.0 for name in f.labels}
    labels.update({k: float(v) for k, v in p.label_scores().items()})
    return {
        "labels": {k: round(min(1.0, max(0.0, v)), 6) for k, v in sorted(labels.items())},
        "text": f.text.strip(),
        "numeric": {k: float(v) for k, v in sorted(f.numeric.items())},
        "embedding_dim": len(f.embedding) if f.embedding else None,
        "has_text": bool(source_text(p).strip()),
        "sources": sorted(getattr(p, "sources", None) or []),
    }


class AggregateSink(SinkWriter):
    name = "aggregate"
    tick_interval_s = 1.0  # embargo releases without traffic

    def __init__(self, settings: Settings, models: list[str]) -> None:
        super().__init__(settings)
        self.models = models
        skip = unavailable_models(settings, models)
        self.active: dict[str, Model] = {m: get_model(settings, m) for m in models if m not in skip}
        self.out_topic = settings.topic(kafka.TOPIC_ANNOTATED)

    def topics(self) -> list[str]:
        return [self.settings.topic(kafka.TOPIC_UPLOADED), self.settings.topic(kafka.TOPIC_DLQ)] + [
            self.settings.topic(kafka.annotations_topic(m)) for m in self.models]

    def start(self) -> None:
        kafka.ensure_topics(self.settings, [self.out_topic])

    def expected(self, media_type: str) -> list[str]:
        return sorted(m for m, cls in self.active.items()
                      if cls.consumes == "annotations" or media_type in cls.media_types)

    def _derived(self, model: str) -> bool:
        cls = self.active.get(model)
        return cls is not None and cls.consumes == "annotations"

    # -- records -----------------------------------------------------------------------------------
    def write(self, conn: Conn, msgs: list[Message]) -> int:
        uploaded, dlq = self.settings.topic(kafka.TOPIC_UPLOADED), self.settings.topic(kafka.TOPIC_DLQ)
        touched: set[str] = set()
        applied = 0
        records: list[MediaUploaded | DeadLetter | Annotation] = []
        for m in msgs:
            if m.topic() == uploaded:
                records.append(parse(m.value(), MediaUploaded))
            elif m.topic() == dlq:
                records.append(parse(m.value(), DeadLetter))
            else:
                a = parse(m.value(), Annotation)
                check_annotation_topic(self.settings, m.topic(), a)
                records.append(a)
        # killed or deleted: their rows went with the kill; a replay or a late record must not bring them back
        dead = lifecycle.tombstoned(conn, [r.asset_id for r in records if r.asset_id])
        for r in records:
            if r.asset_id in dead:
                continue
            if isinstance(r, MediaUploaded):
                applied += self._upload(conn, r)
                touched.add(r.asset_id)
            elif isinstance(r, DeadLetter):
                if r.asset_id and r.model:  # a sink's dead letter names no model: not an outcome
                    applied += self._failed(conn, r)
                    touched.add(r.asset_id)
            elif r.keyframe_ms is None:  # videos: the summary speaks for the model, not each keyframe
                applied += self._done(conn, r)
                touched.add(r.asset_id)
        touched |= self._released(conn)
        for asset_id in sorted(touched):
            self._evaluate(conn, asset_id)
        return applied

    def tick(self, conn: Conn) -> int:
        """Held assets whose embargo has just passed get their event now, without waiting for a record."""
        released = sorted(self._released(conn))
        for asset_id in released:
            self._evaluate(conn, asset_id)
        return len(released)

    def _upload(self, conn: Conn, up: MediaUploaded) -> int:
        info = AssetInfo(filename=up.filename, content_type=up.content_type, size_bytes=up.size_bytes,
                         title=up.title, description=up.description, source=up.source,
                         collection=up.collection, uploaded_at=up.occurred_at)
        cur = conn.execute(
            """INSERT INTO asset_aggregates (asset_id, media_type, expected, metadata, uploaded_at)
               VALUES (%s,%s,%s,%s,%s) ON CONFLICT (asset_id) DO NOTHING""",
            (up.asset_id, up.media_type, self.expected(up.media_type), Jsonb(info.model_dump(mode="json")),
             up.occurred_at))
        return cur.rowcount

    def _done(self, conn: Conn, a: Annotation) -> int:
        cur = conn.execute(
            """INSERT INTO asset_aggregate_models
                   (asset_id, model, status, model_version, annotation_id, produced_at, compact, reason)
               VALUES (%s,%s,'done',%s,%s,%s,%s,NULL)
               ON CONFLICT (asset_id, model) DO UPDATE SET status='done', model_version=EXCLUDED.model_version,
                   annotation_id=EXCLUDED.annotation_id, produced_at=EXCLUDED.produced_at,
                   compact=EXCLUDED.compact, reason=NULL
               WHERE asset_aggregate_models.status = 'failed'
                  OR (asset_aggregate_models.produced_at, asset_aggregate_models.annotation_id)
                     < (EXCLUDED.produced_at, EXCLUDED.annotation_id)""",
            (a.asset_id, a.model, a.model_version, a.annotation_id, a.occurred_at, Jsonb(compact(a))))
        return cur.rowcount

    def _failed(self, conn: Conn, d: DeadLetter) -> int:
        cur = conn.execute(
            """INSERT INTO asset_aggregate_models (asset_id, model, status, produced_at, reason)
               VALUES (%s,%s,'failed',%s,%s)
               ON CONFLICT (asset_id, model) DO UPDATE SET produced_at=EXCLUDED.produced_at, reason=EXCLUDED.reason
               WHERE asset_aggregate_models.status = 'failed'
                 AND asset_aggregate_models.produced_at < EXCLUDED.produced_at""",
            (d.asset_id, d.model, d.occurred_at, d.reason[:500]))
        return cur.rowcount

    def _released(self, conn: Conn) -> set[str]:
        """Held assets whose embargo has passed (asset_lifecycle, docs/metadata.md), to be evaluated again."""
        if conn.execute("SELECT to_regclass('asset_lifecycle') AS t").fetchone() in (None, {"t": None}):
            return set()
        rows = conn.execute(
            """SELECT g.asset_id FROM asset_aggregates g JOIN asset_lifecycle l USING (asset_id)
               WHERE g.emitted_event_id IS NULL AND l.state = 'active'
                 AND l.embargo_until IS NOT NULL AND l.embargo_until <= now()""").fetchall()
        return {r["asset_id"] for r in rows}

    def _held(self, conn: Conn, asset_id: str) -> bool:
        if conn.execute("SELECT to_regclass('asset_lifecycle') AS t").fetchone() in (None, {"t": None}):
            return False
        row = conn.execute("""SELECT 1 FROM asset_lifecycle WHERE asset_id=%s
                              AND (state <> 'active' OR embargo_until > now())""", (asset_id,)).fetchone()
        return row is not None

    # -- the record ------------------------------------------------------------------------------------
    def _evaluate(self, conn: Conn, asset_id: str) -> None:
        agg = conn.execute("SELECT * FROM asset_aggregates WHERE asset_id=%s FOR UPDATE", (asset_id,)).fetchone()
        if agg is None:
            return  # annotations before the upload event: the upload completes the picture
        parts = {r["model"]: r for r in conn.execute(
            "SELECT * FROM asset_aggregate_models WHERE asset_id=%s", (asset_id,)).fetchall()}
        event = self.record(agg, parts)
        if event is None or event.event_id == agg["emitted_event_id"] or self._held(conn, asset_id):
            return
        conn.execute("""INSERT INTO outbox (event_id, topic, key, payload) VALUES (%s,%s,%s,%s)
                        ON CONFLICT (event_id) DO NOTHING""", (event.event_id, self.out_topic, asset_id, dump(event)))
        conn.execute("NOTIFY argus_outbox")  # transactional: the relay wakes when this commits
        conn.execute("""UPDATE asset_aggregates SET emitted_event_id=%s, emitted_at=now(), updated_at=now()
                        WHERE asset_id=%s""", (event.event_id, asset_id))

    def record(self, agg: dict[str, Any], parts: dict[str, dict[str, Any]]) -> AssetAnnotated | None:
        """The merged record, or None while an expected model is not final. A pure function of the stored state."""
        names = sorted(set(agg["expected"]) | set(parts))
        outcomes: list[ModelOutcome] = []
        meta = agg["metadata"]
        for m in names:
            p = parts.get(m)
            if self._derived(m):
                others = [o for o in names if not self._derived(o)]
                if any(o not in parts for o in others):
                    return None
                need = {o for o in others if parts[o]["status"] == "done" and parts[o]["compact"].get("has_text")}
                if any((meta.get(k) or "").strip() for k in ("title", "description")):
                    need.add(METADATA)
                if p is not None and p["status"] == "failed":
                    outcomes.append(ModelOutcome(model=m, status="failed", reason=p["reason"]))
                elif p is not None and need <= set(p["compact"].get("sources") or []):
                    outcomes.append(ModelOutcome(model=m, status="done", model_version=p["model_version"],
                                                 annotation_id=p["annotation_id"]))
                elif p is None and not need:
                    outcomes.append(ModelOutcome(model=m, status="skipped", reason="the asset has no text"))
                else:
                    return None  # its embedding of the final text is still to come
            elif p is None:
                return None
            elif p["status"] == "failed":
                outcomes.append(ModelOutcome(model=m, status="failed", reason=p["reason"]))
            else:
                outcomes.append(ModelOutcome(model=m, status="done", model_version=p["model_version"],
                                             annotation_id=p["annotation_id"]))
        labels: dict[str, tuple[float, list[str]]] = {}
        text: dict[str, str] = {}
        numeric: dict[str, float] = {}
        embeddings: list[EmbeddingRef] = []
        for o in outcomes:
            if o.status != "done":
                continue
            c = parts[o.model]["compact"]
            for name, score in c.get("labels", {}).items():
                best, by = labels.get(name, (0.0, []))
                labels[name] = (max(best, float(score)), [*by, o.model])
            if c.get("text"):
                text[o.model] = c["text"]
            for k, v in c.get("numeric", {}).items():
                numeric[f"{o.model}.{k}"] = float(v)
            if c.get("embedding_dim") and o.model_version and o.annotation_id:
                embeddings.append(EmbeddingRef(model=o.model, model_version=o.model_version,
                                               annotation_id=o.annotation_id, dim=int(c["embedding_dim"])))
        body: dict[str, Any] = {
            "asset_id": agg["asset_id"], "media_type": agg["media_type"], "asset": AssetInfo.model_validate(meta),
            "models": outcomes, "labels": [MergedLabel(name=n, score=s, models=by)
                                           for n, (s, by) in sorted(labels.items())],
            "text": text, "numeric": numeric, "embeddings": embeddings,
        }
        canonical = json.dumps({k: _jsonable(v) for k, v in body.items()}, sort_keys=True, separators=(",", ":"))
        event_id = "asa-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
        times: list[datetime] = [agg["uploaded_at"], *(p["produced_at"] for p in parts.values())]
        supersedes = agg["emitted_event_id"] if agg["emitted_event_id"] != event_id else None
        return AssetAnnotated(event_id=event_id, occurred_at=max(times), supersedes=supersedes, **body)


def _jsonable(v: Any) -> Any:
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json")
    return v
