"""``argus reindex``: re-run one model on all or some assets and switch search to its new version.

1. Select assets (all, some ids, or a search filter), by default only those that do not yet have an
   annotation of the target version (so an interrupted run simply resumes).
2. Re-publish their ``media.uploaded`` events to ``media.backfill.<model>`` through the OUTBOX, with
   a new event id per run (``bf-<run>-<asset>``), in one PostgreSQL transaction with the run's row.
   Only that model's processors read the backfill topic; the other models are not re-run.
3. The processors emit annotations whose ids are deterministic (asset, model, VERSION, keyframe):
   the sinks store them beside the old version's rows and vectors (exactly-once as for any event:
   a redelivered or re-published event names the same annotation).
4. When every selected asset has the new version (or failed), the version is activated: one row in
   ``search_model_versions`` (PostgreSQL backend) or one alias swap (OpenSearch) for the vectors,
   and the documents' labels are re-derived in small batches. Queries never see a gap.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from core import db, kafka
from core.settings import Settings
from models.registry import get_model
from retrieval.search.interface import SearchQuery
from schemas.events import MediaUploaded, dump
from sinks.search.interface import Activation


@dataclass
class ReindexRun:
    run_id: str
    model: str
    version: str
    asset_ids: list[str]


@dataclass(frozen=True)
class BackfillProgress:
    total: int
    done: int  # the target version is annotated AND indexed
    failed: int

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total


def target_version(settings: Settings, model: str) -> str:
    """The version the running processors stamp (the handler's, from the model registry)."""
    return get_model(settings, model).model_version


def start(settings: Settings, model: str, version: str | None = None, asset_ids: list[str] | None = None,
          query: SearchQuery | None = None, missing_only: bool = True) -> ReindexRun:
    from retrieval.search import get_search_index

    handler = get_model(settings, model)  # KeyError for an unknown model
    version = version or handler.model_version
    media = sorted(handler.media_types)
    if query is not None:
        selected = list(get_search_index(settings).iter_asset_ids(query))
        asset_ids = [a for a in asset_ids if a in set(selected)] if asset_ids is not None else selected
    run_id = f"rx{uuid.uuid4().hex[:12]}"
    topic = settings.topic(kafka.backfill_topic(model))
    kafka.ensure_topics(settings, [topic])  # the relay must not create it with default partitions
    with db.transaction(settings) as conn:
        rows = conn.execute(
            """SELECT a.* FROM assets a
               WHERE a.media_type = ANY(%s) AND (%s::text[] IS NULL OR a.asset_id = ANY(%s::text[]))
                 AND (NOT %s OR NOT EXISTS (SELECT 1 FROM annotations n WHERE n.asset_id = a.asset_id
                                            AND n.model = %s AND n.model_version = %s))
               ORDER BY a.asset_id""",
            (media, asset_ids, asset_ids, missing_only, model, version)).fetchall()
        events = [MediaUploaded(
            event_id=f"bf-{run_id}-{r['asset_id'][:40]}", asset_id=r["asset_id"], bucket=r["bucket"],
            object_key=r["object_key"], media_type=r["media_type"], content_type=r["content_type"],
            size_bytes=r["size_bytes"], filename=r["filename"], title=r["title"], description=r["description"],
            source=r["source"], collection=r["collection"], occurred_at=r["uploaded_at"]) for r in rows]
        conn.cursor().executemany(
            "INSERT INTO outbox (event_id, topic, key, payload) VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            [(e.event_id, topic, e.asset_id, dump(e)) for e in events])
        conn.execute("INSERT INTO reindex_runs (run_id, model, target_version, assets) VALUES (%s,%s,%s,%s)",
                     (run_id, model, version, len(events)))
        conn.execute("NOTIFY argus_outbox")
    return ReindexRun(run_id, model, version, [e.asset_id for e in events])


def progress(settings: Settings, run: ReindexRun) -> BackfillProgress:
    with db.connect(settings) as conn:
        done = db.scalar(conn, "SELECT count(*) FROM search_docs WHERE asset_id = ANY(%s) AND model_keys @> %s",
                         (run.asset_ids, [f"{run.model}@{run.version}"])) if settings.search_backend == "postgres" \
            else _indexed_os(settings, run)
        failed = db.scalar(
            conn, """SELECT count(*) FROM asset_model_status WHERE asset_id = ANY(%s) AND model=%s
                     AND status='failed' AND updated_at >= (SELECT created_at FROM reindex_runs WHERE run_id=%s)""",
            (run.asset_ids, run.model, run.run_id))
    return BackfillProgress(len(run.asset_ids), int(done), int(failed))


def _indexed_os(settings: Settings, run: ReindexRun) -> int:
    from retrieval.search.opensearch_backend import OpenSearchSearchIndex

    index = OpenSearchSearchIndex(settings)
    body = {"query": {"bool": {"filter": [{"ids": {"values": run.asset_ids}},
                                          {"term": {"model_keys": f"{run.model}@{run.version}"}}]}}}
    return int(index.client.count(index=index.assets_alias, body=body)["count"])


def wait(settings: Settings, run: ReindexRun, timeout: float,
         on_progress: Callable[[BackfillProgress], None] | None = None) -> BackfillProgress:
    deadline = time.monotonic() + timeout
    while True:
        p = progress(settings, run)
        if on_progress is not None:
            on_progress(p)
        if p.finished or time.monotonic() > deadline:
            return p
        time.sleep(0.5)


def activate(settings: Settings, model: str, version: str, run_id: str | None = None) -> Activation:
    from retrieval.search import get_search_index

    act = get_search_index(settings).activate_version(model, version)
    if run_id is not None:
        with db.transaction(settings) as conn:
            conn.execute("UPDATE reindex_runs SET activated_at=now() WHERE run_id=%s", (run_id,))
    return act
