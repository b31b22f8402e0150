"""Each supervised worker's backlog (records and seconds), read from its system-of-record table in PostgreSQL.

tansu's watermarks (ListOffsets) cannot be trusted (docs/architecture.md), so ``argus status`` and the API's
``/metrics`` (``argus_worker_lag_records`` / ``argus_worker_lag_seconds``) do not ask the broker: each worker's lag
is the work it still owes, counted where its output lands, and its age is that of the oldest such record.

| worker | records: still owed | seconds: age of the oldest, from |
|---|---|---|
| relay | outbox rows not acknowledged by the broker | ``outbox.created_at`` |
| processor-<m> | uploads of the model's media types with no ``asset_model_status`` row for it | upload time |
| sink-postgres | (upload, model) pairs of every running model with no ``asset_model_status`` row | upload time |
| sink-search | uploads without a ``search_docs`` row | upload time |
| sink-ndd | uploads of pdq's media types without an ``ndd_hashes`` row (and pdq not ``failed``) | upload time |
| sink-people | stored ``face_embed`` annotations with faces, no ``people_faces`` row | ``produced_at`` |
| sink-aggregate | uploads without an ``assets.annotated`` event (embargoed ones are not due yet) | upload time |
| sink-lifecycle | lifecycle requests in the outbox without a ``lifecycle_requests`` row | ``outbox.created_at`` |
| webhooks | events for an active webhook not yet enqueued, plus deliveries still ``pending`` | event / row time |
| api, grpc, ftp | none: they answer requests (ftp's uploads are the relay's lag) | ``-`` |

A processor's and the postgres sink's counts overlap by design: an outcome is owed until it is stored, so a stopped
postgres sink shows in the processors' lag too. Killed or deleted assets (``asset_lifecycle``) are owed nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from core import db, kafka
from core.settings import Settings
from models.registry import enabled_models, get_model


class WorkerLike(Protocol):
    @property
    def model(self) -> str | None: ...


@dataclass(frozen=True)
class Lag:
    """``records``/``seconds`` None: the worker has no backlog to measure (``source`` says why)."""

    records: int | None
    seconds: float | None
    source: str = field(default="", compare=False)  # where it was read from, or why there is none


NO_QUEUE = {
    "api": "serves HTTP requests; no queue",
    "grpc": "serves gRPC calls; no queue",
    "ftp": "accepts uploads; no queue (they wait in the outbox: the relay's lag)",
}

_LIVE = "NOT EXISTS (SELECT 1 FROM asset_lifecycle l WHERE l.asset_id = a.asset_id AND l.state <> 'active')"


def _media_types(settings: Settings, model: str) -> list[str]:
    m = get_model(settings, model)
    return ["image", "video"] if m.consumes == "annotations" else sorted(m.media_types)


def _queries(settings: Settings, workers: Mapping[str, WorkerLike]) -> dict[str, tuple[str, tuple[object, ...], str]]:
    """name -> (SQL answering n and t, parameters, source shown in `argus status`)."""
    q: dict[str, tuple[str, tuple[object, ...], str]] = {}
    running = sorted({w.model for w in workers.values() if w.model})
    for name, ws in workers.items():
        if name == "relay":
            q[name] = ("SELECT count(*) AS n, min(created_at) AS t FROM outbox WHERE published_at IS NULL", (),
                       "outbox unpublished")
        elif ws.model:
            try:
                types = _media_types(settings, ws.model)
            except Exception:  # noqa: BLE001 - an unknown model has no lag to show
                continue
            q[name] = (f"""SELECT count(*) AS n, min(a.uploaded_at) AS t FROM assets a
                           WHERE a.media_type = ANY(%s) AND {_LIVE} AND NOT EXISTS (SELECT 1 FROM asset_model_status s
                                 WHERE s.asset_id = a.asset_id AND s.model = %s)""", (types, ws.model),
                       "asset_model_status")
        elif name == "sink-postgres":
            pairs: list[tuple[str, str]] = []
            for m in running or enabled_models(settings):
                try:
                    pairs += [(m, t) for t in _media_types(settings, m)]
                except Exception:  # noqa: BLE001 - an unknown model is owed nothing
                    continue
            q[name] = (f"""SELECT count(*) AS n, min(a.uploaded_at) AS t
                           FROM assets a JOIN unnest(%s::text[], %s::text[]) AS e(model, media_type)
                                ON e.media_type = a.media_type
                           WHERE {_LIVE} AND NOT EXISTS (SELECT 1 FROM asset_model_status s
                                 WHERE s.asset_id = a.asset_id AND s.model = e.model)""",
                       ([p[0] for p in pairs], [p[1] for p in pairs]), "asset_model_status, every model")
        elif name == "sink-search":
            q[name] = (f"""SELECT count(*) AS n, min(a.uploaded_at) AS t FROM assets a
                           WHERE {_LIVE} AND NOT EXISTS (SELECT 1 FROM search_docs d WHERE d.asset_id = a.asset_id)""",
                       (), "search_docs")
        elif name == "sink-ndd":
            try:
                types = _media_types(settings, "pdq")
            except Exception:  # noqa: BLE001 - no pdq here: nothing is owed
                types = []
            q[name] = (f"""SELECT count(*) AS n, min(a.uploaded_at) AS t FROM assets a
                           WHERE a.media_type = ANY(%s) AND {_LIVE}
                             AND NOT EXISTS (SELECT 1 FROM ndd_hashes h WHERE h.asset_id = a.asset_id)
                             AND NOT EXISTS (SELECT 1 FROM asset_model_status s WHERE s.asset_id = a.asset_id
                                             AND s.model = 'pdq' AND s.status = 'failed')""", (types,),
                       "ndd_hashes")
        elif name == "sink-people":
            q[name] = (f"""SELECT count(*) AS n, min(x.produced_at) AS t FROM annotations x
                           JOIN assets a ON a.asset_id = x.asset_id
                           WHERE x.model = 'face_embed' AND x.payload->>'kind' = 'face_descriptors'
                             AND jsonb_array_length(x.payload->'faces') > 0 AND {_LIVE}
                             AND NOT EXISTS (SELECT 1 FROM people_faces f WHERE f.annotation_id = x.annotation_id)
                             AND NOT EXISTS (SELECT 1 FROM people_tombstones d
                                             WHERE starts_with(d.face_id, x.annotation_id || '-'))""", (),
                       "people_faces (stored face_embed annotations)")
        elif name == "sink-aggregate":
            q[name] = (f"""SELECT count(*) AS n, min(a.uploaded_at) AS t FROM assets a
                           WHERE {_LIVE}
                             AND NOT EXISTS (SELECT 1 FROM asset_lifecycle l WHERE l.asset_id = a.asset_id
                                             AND l.embargo_until > now())
                             AND NOT EXISTS (SELECT 1 FROM asset_aggregates g
                                             WHERE g.asset_id = a.asset_id AND g.emitted_event_id IS NOT NULL)""",
                       (), "asset_aggregates (event emitted)")
        elif name == "sink-lifecycle":
            q[name] = ("""SELECT count(*) AS n, min(o.created_at) AS t FROM outbox o
                          WHERE o.topic = %s AND NOT EXISTS (SELECT 1 FROM lifecycle_requests r
                                                             WHERE r.request_id = o.event_id)""",
                       (settings.topic(kafka.TOPIC_LIFECYCLE_REQUESTS),), "lifecycle_requests")
        elif name == "webhooks":
            q[name] = ("""SELECT count(*) AS n, min(t) AS t FROM (
                              SELECT d.created_at AS t FROM webhook_deliveries d
                              JOIN webhooks w ON w.webhook_id = d.webhook_id AND w.active
                              WHERE d.status = 'pending'
                              UNION ALL
                              SELECT o.created_at FROM outbox o
                              JOIN webhooks w ON w.active AND o.created_at > w.created_at
                              WHERE o.topic = %s AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                    WHERE d.webhook_id = w.webhook_id AND d.event_id = o.event_id)) x""",
                       (settings.topic(kafka.TOPIC_ANNOTATED),), "webhook_deliveries pending + not enqueued")
    return q


def worker_lag(settings: Settings, workers: Mapping[str, WorkerLike]) -> dict[str, Lag]:
    """Every worker's lag (see the module doc); a worker with nothing to measure gets ``Lag(None, None, why)``."""
    out: dict[str, Lag] = {}
    queries = _queries(settings, workers)
    for name, ws in workers.items():
        if name not in queries:
            why = NO_QUEUE.get(name) or (f"unknown model {ws.model}" if ws.model else "no backlog query for it")
            out[name] = Lag(None, None, why)
    if not queries:
        return out
    now = datetime.now(UTC)
    with db.connect(settings) as conn:
        for name, (sql, params, source) in queries.items():
            try:
                row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - e.g. a table of an optional sink that is not migrated
                conn.rollback()
                out[name] = Lag(None, None, f"unavailable: {type(exc).__name__}")
                continue
            assert row is not None
            t = row["t"]
            out[name] = Lag(int(row["n"]), max(0.0, (now - t).total_seconds()) if t is not None else 0.0, source)
    return out
