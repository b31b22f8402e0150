"""Rights and lifecycle of an asset: kill, delete, restore, embargo, metadata edits (docs/metadata.md).

The state lives in PostgreSQL (``asset_lifecycle``, core/migrations/0011): ``apply`` changes it, writes the audit
row and the ``media.lifecycle`` outbox row in ONE transaction under the asset row's lock, and purges what
PostgreSQL holds about a killed or deleted asset in that same transaction. So the moment it commits:

- search hides the asset (both engines filter on this table: ``HIDDEN_SQL`` / ``hidden_asset_ids``);
- every sink refuses records about it (``tombstoned``: the sinks take the asset row FOR SHARE in their own
  transaction before they check, so a batch that was mid-way when the kill committed either finished before it,
  and was purged by it, or sees the tombstone). Replays and late annotations therefore never resurrect it;
- its search document, vectors, near-duplicate hashes, faces, annotations and extracted texts are gone.

What is not in PostgreSQL (objects: renditions, sidecar, the original; a remote search engine) is purged after the
commit and again by the search sink when it reads the ``media.lifecycle`` event (``purge_objects``), so a crash
between the two never leaves it behind: the event is in the outbox, the relay publishes it at least once and
every purge is idempotent. A killed asset's original moves to ``quarantine/`` (a kill is reversible by an admin:
``restore``); a deleted asset's original is removed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg import sql
from psycopg.types.json import Jsonb

from core import db, kafka
from core.db import Conn
from core.settings import Settings
from core.storage import ObjectStore
from schemas.events import (
    Annotation,
    FaceDescriptors,
    MediaLifecycle,
    MediaMetadata,
    MediaUploaded,
    annotation_id,
    dump,
)
from sinks.people import assign

Action = Literal["kill", "delete", "restore", "embargo", "edit"]
STATE_OF: dict[str, str] = {"kill": "killed", "delete": "deleted", "restore": "active"}


class LifecycleError(ValueError):
    """An operation that cannot be done in the asset's state (the API answers 409)."""


def quarantine_key(asset_id: str) -> str:
    return f"quarantine/{asset_id[:2]}/{asset_id}"


def rendition_prefix(asset_id: str) -> str:
    return f"renditions/{asset_id[:2]}/{asset_id}/"


def sidecar_prefix(asset_id: str) -> str:
    return f"sidecars/{asset_id[:2]}/{asset_id}"


# ------------------------------------------------------------------------------------------------ reads
def tombstoned(conn: Conn, asset_ids: Iterable[str]) -> set[str]:
    """Those of ``asset_ids`` that are killed or deleted. Takes their asset rows FOR SHARE first (in a fixed order,
    no deadlocks), so it serialises with ``apply`` (FOR UPDATE): a sink's transaction never writes about an asset
    whose kill committed while the batch was being prepared."""
    ids = sorted(set(asset_ids))
    if not ids:
        return set()
    conn.execute("SELECT asset_id FROM assets WHERE asset_id = ANY(%s) ORDER BY asset_id FOR SHARE", (ids,))
    return {r["asset_id"] for r in conn.execute(
        "SELECT asset_id FROM asset_lifecycle WHERE asset_id = ANY(%s) AND state <> 'active'", (ids,))}


def hidden_asset_ids(settings: Settings) -> list[str]:
    """Assets search must not show now: killed, deleted or under embargo."""
    with db.connect(settings) as conn:
        return [r["asset_id"] for r in conn.execute(
            "SELECT asset_id FROM asset_lifecycle WHERE state <> 'active' OR embargo_until > now() ORDER BY 1")]


@dataclass(frozen=True)
class State:
    asset_id: str
    state: str  # active | killed | deleted
    embargo_until: datetime | None
    reason: str | None
    actor: str | None
    seq: int
    updated_at: datetime | None

    @property
    def embargoed(self) -> bool:
        return self.embargo_until is not None and self.embargo_until > datetime.now(UTC)

    @property
    def visible(self) -> bool:
        return self.state == "active" and not self.embargoed


def state_of(conn: Conn, asset_id: str) -> State:
    row = conn.execute("SELECT * FROM asset_lifecycle WHERE asset_id=%s", (asset_id,)).fetchone()
    if row is None:
        return State(asset_id, "active", None, None, None, 0, None)
    return State(row["asset_id"], row["state"], row["embargo_until"], row["reason"], row["actor"], int(row["seq"]),
                 row["updated_at"])


def edited_fields(conn: Conn, asset_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT fields FROM asset_metadata_edits WHERE asset_id=%s", (asset_id,)).fetchone()
    return dict(row["fields"]) if row else {}


# ------------------------------------------------------------------------------------------------ writes
def descriptor_key(ref: str) -> str:
    """models/face_embed.py's key of a face descriptor object (a model module is not imported by a sink)."""
    return f"faces/{ref[:2]}/{ref}"


def _table_exists(tx: Conn, name: str) -> bool:
    row = tx.execute("SELECT to_regclass(%s) AS t", (name,)).fetchone()
    return row is not None and row["t"] is not None


def purge_rows(tx: Conn, asset_id: str, descriptor_refs: list[str] | None = None) -> dict[str, int]:
    """Everything PostgreSQL indexes about the asset, inside the caller's transaction (idempotent). The face
    descriptor objects of the faces removed are appended to ``descriptor_refs`` (removed after the commit)."""
    counts: dict[str, int] = {}

    def run(name: str, stmt: sql.Composed | str, args: tuple[Any, ...]) -> None:
        counts[name] = counts.get(name, 0) + tx.execute(stmt, args).rowcount

    run("search_docs", "DELETE FROM search_docs WHERE asset_id=%s", (asset_id,))
    for r in tx.execute("SELECT DISTINCT model FROM search_vector_meta").fetchall():
        run("vectors", sql.SQL("DELETE FROM {} WHERE asset_id=%s").format(
            sql.Identifier(f"search_vectors_{r['model']}")), (asset_id,))
    run("ndd_hashes", "DELETE FROM ndd_hashes WHERE asset_id=%s", (asset_id,))  # frames cascade
    faces = tx.execute("SELECT face_id, descriptor_ref FROM people_faces WHERE asset_id=%s", (asset_id,)).fetchall()
    if faces:  # biometric data: gone, with a tombstone per face so that a replay never re-adds one (docs/people.md)
        assign.lock(tx)  # the people sink's and curation's lock, taken after the asset row like they do
        ids = [f["face_id"] for f in faces]
        tx.cursor().executemany("INSERT INTO people_tombstones (face_id, reason) VALUES (%s, 'asset removed') "
                                "ON CONFLICT DO NOTHING", [(i,) for i in ids])
        run("people_faces", "DELETE FROM people_faces WHERE face_id = ANY(%s)", (ids,))
        tx.execute("""UPDATE people_persons p SET cover_face_id=NULL WHERE cover_face_id = ANY(%s)""", (ids,))
        tx.execute("""DELETE FROM people_persons p WHERE NOT p.confirmed
                      AND NOT EXISTS (SELECT 1 FROM people_faces f WHERE f.person_id = p.person_id)""")
        if descriptor_refs is not None:
            descriptor_refs += [f["descriptor_ref"] for f in faces if f["descriptor_ref"]]
    # time-coded search (migration 0012); the per-asset aggregate (0013, sinks/aggregate_sink.py)
    for table in ("search_moments", "search_frame_vectors", "asset_aggregate_models", "asset_aggregates"):
        if _table_exists(tx, table):
            run(table, sql.SQL("DELETE FROM {} WHERE asset_id=%s").format(sql.Identifier(table)), (asset_id,))
    run("annotations", "DELETE FROM annotations WHERE asset_id=%s", (asset_id,))
    run("asset_texts", "DELETE FROM asset_texts WHERE asset_id=%s", (asset_id,))
    run("asset_text_embedded", "DELETE FROM asset_text_embedded WHERE asset_id=%s", (asset_id,))
    run("asset_model_status", "DELETE FROM asset_model_status WHERE asset_id=%s", (asset_id,))
    return counts


def purge_objects(settings: Settings, asset_id: str, state: str, descriptor_refs: Iterable[str] = ()) -> int:
    """Renditions, sidecar and face descriptors go; the original moves to quarantine (killed) or goes (deleted).
    Idempotent."""
    store = ObjectStore(settings)
    n = store.remove_prefix(rendition_prefix(asset_id)) + store.remove_prefix(sidecar_prefix(asset_id))
    for ref in sorted(set(descriptor_refs)):
        store.remove(descriptor_key(ref))
        n += 1
    original = ObjectStore.key_for(asset_id)
    if state == "killed" and store.exists(original):
        if not store.exists(quarantine_key(asset_id)):
            store.copy(original, quarantine_key(asset_id))
        store.remove(original)
        n += 1
    elif state == "deleted":
        for key in (original, quarantine_key(asset_id)):
            if store.exists(key):
                store.remove(key)
                n += 1
    return n


@dataclass
class Applied:
    event: MediaLifecycle
    state: State
    purged: dict[str, int]


def apply(settings: Settings, asset_id: str, action: Action, *, actor: str | None = None, reason: str | None = None,
          embargo_until: datetime | None = None, fields: dict[str, Any] | None = None) -> Applied:
    """Change an asset's lifecycle state (see the module docstring). LookupError: unknown asset;
    LifecycleError: not possible in its state (a deleted asset is final; only a killed one is restored)."""
    refs: list[str] = []
    with db.transaction(settings) as tx:
        applied = apply_in(tx, settings, asset_id, action, actor=actor, reason=reason, embargo_until=embargo_until,
                           fields=fields, descriptor_refs=refs)
    if applied.state.state in ("killed", "deleted"):
        applied.purged["objects"] = purge_objects(settings, asset_id, applied.state.state, refs)
    return applied


def apply_in(tx: Conn, settings: Settings, asset_id: str, action: Action, *, actor: str | None = None,
             reason: str | None = None, embargo_until: datetime | None = None, fields: dict[str, Any] | None = None,
             descriptor_refs: list[str] | None = None) -> Applied:
    """``apply`` inside the caller's transaction (a sink's, which also stores its consumed offsets: the lifecycle
    sink). The objects are not touched here: the caller purges them after its commit, or leaves that to the search
    sink, which purges them when it reads the ``media.lifecycle`` event written here (``apply_event``)."""
    asset = tx.execute("SELECT * FROM assets WHERE asset_id=%s FOR UPDATE", (asset_id,)).fetchone()
    if asset is None:
        raise LookupError(f"unknown asset {asset_id}")
    cur = state_of(tx, asset_id)
    if cur.state == "deleted":
        raise LifecycleError("the asset was deleted; nothing can be done with it")
    if action == "restore" and cur.state != "killed":
        raise LifecycleError("only a killed asset can be restored")
    if action in ("embargo", "edit") and cur.state != "active":
        raise LifecycleError(f"the asset is {cur.state}")
    new_state = STATE_OF.get(action, cur.state)
    until = embargo_until if action == "embargo" else (None if action == "restore" else cur.embargo_until)
    detail: dict[str, Any] = {}
    if action == "edit":
        old = edited_fields(tx, asset_id)
        changes = {k: v for k, v in (fields or {}).items() if old.get(k) != v}
        detail = {"old": {k: old.get(k) for k in changes}, "new": changes}
        tx.execute("""INSERT INTO asset_metadata_edits (asset_id, fields) VALUES (%s, %s)
                      ON CONFLICT (asset_id) DO UPDATE SET fields = asset_metadata_edits.fields || EXCLUDED.fields,
                          updated_at = now()""", (asset_id, Jsonb(changes)))
    if action == "embargo":
        detail = {"old": cur.embargo_until.isoformat() if cur.embargo_until else None,
                  "new": until.isoformat() if until else None}
    row = tx.execute(
        """INSERT INTO asset_lifecycle (asset_id, state, embargo_until, reason, actor, seq)
           VALUES (%s,%s,%s,%s,%s,1)
           ON CONFLICT (asset_id) DO UPDATE SET state=EXCLUDED.state, embargo_until=EXCLUDED.embargo_until,
               reason=EXCLUDED.reason, actor=EXCLUDED.actor, seq=asset_lifecycle.seq + 1, updated_at=now()
           RETURNING *""", (asset_id, new_state, until, reason, actor)).fetchone()
    assert row is not None
    seq = int(row["seq"])
    tx.execute("INSERT INTO asset_lifecycle_log (asset_id, seq, action, reason, actor, detail) "
               "VALUES (%s,%s,%s,%s,%s,%s)", (asset_id, seq, action, reason, actor, Jsonb(detail)))
    event = MediaLifecycle(event_id=f"lc-{asset_id}-{seq}", asset_id=asset_id, action=action, seq=seq,
                           reason=reason, actor=actor, embargo_until=until)
    tx.execute("INSERT INTO outbox (event_id, topic, key, payload) VALUES (%s,%s,%s,%s)",
               (event.event_id, settings.topic(kafka.TOPIC_LIFECYCLE), asset_id, dump(event)))
    if action == "edit":
        _publish_edit(tx, settings, asset_id)
    refs = descriptor_refs if descriptor_refs is not None else []
    purged = purge_rows(tx, asset_id, refs) if new_state in ("killed", "deleted") else {}
    if action == "restore":
        _republish(tx, settings, asset, seq)
    state = State(asset_id, new_state, until, reason, actor, seq, row["updated_at"])
    return Applied(event, state, purged)


def _republish(tx: Conn, settings: Settings, asset: dict[str, Any], seq: int) -> None:
    """A restored asset: its original back from quarantine and a new upload event, so that every model annotates
    it again (the annotation ids are deterministic: the same ids as before the kill)."""
    store = ObjectStore(settings)
    if store.exists(quarantine_key(asset["asset_id"])):
        store.copy(quarantine_key(asset["asset_id"]), asset["object_key"])
        store.remove(quarantine_key(asset["asset_id"]))
    event = MediaUploaded(
        event_id=f"upl-{asset['asset_id']}-r{seq}", asset_id=asset["asset_id"], bucket=asset["bucket"],
        object_key=asset["object_key"], media_type=asset["media_type"], content_type=asset["content_type"],
        size_bytes=asset["size_bytes"], filename=asset["filename"], title=asset.get("title"),
        description=asset.get("description"), source=asset.get("source"), collection=asset.get("collection"))
    tx.execute("INSERT INTO outbox (event_id, topic, key, payload) VALUES (%s,%s,%s,%s)",
               (event.event_id, settings.topic(kafka.TOPIC_UPLOADED), asset["asset_id"], dump(event)))


METADATA_MODEL = "media_metadata"


def overlay_edits(tx: Conn, annotations: list[Annotation]) -> list[Annotation]:
    """An editor's changes win over what the file says: applied to every metadata annotation a sink indexes, so a
    re-extraction or a replay never brings an edited caption back."""
    ids = sorted({a.asset_id for a in annotations if isinstance(a.payload, MediaMetadata)})
    if not ids:
        return annotations
    edits = {r["asset_id"]: dict(r["fields"]) for r in tx.execute(
        "SELECT asset_id, fields FROM asset_metadata_edits WHERE asset_id = ANY(%s)", (ids,))}
    out = []
    for a in annotations:
        if isinstance(a.payload, MediaMetadata) and a.asset_id in edits:
            payload = MediaMetadata.model_validate({**a.payload.model_dump(), **edits[a.asset_id]})
            a = a.model_copy(update={"payload": payload})
        out.append(a)
    return out


def _publish_edit(tx: Conn, settings: Settings, asset_id: str) -> None:
    """The edited record as the newest metadata annotation (same deterministic id, later time: newest wins)."""
    row = tx.execute("SELECT model_version, payload FROM annotations WHERE asset_id=%s AND model=%s "
                     "AND keyframe_ms IS NULL ORDER BY produced_at DESC LIMIT 1", (asset_id, METADATA_MODEL)).fetchone()
    version = row["model_version"] if row else "media-metadata-1"
    base = dict(row["payload"]) if row else {}
    payload = MediaMetadata.model_validate({**base, **edited_fields(tx, asset_id)})
    ann = Annotation(event_id=f"edit-{asset_id}-{datetime.now(UTC).timestamp()}",
                     annotation_id=annotation_id(asset_id, METADATA_MODEL, version, None), asset_id=asset_id,
                     model=METADATA_MODEL, model_version=version, payload=payload)
    tx.execute("INSERT INTO outbox (event_id, topic, key, payload) VALUES (%s,%s,%s,%s)",
               (ann.event_id, settings.topic(kafka.annotations_topic(METADATA_MODEL)), asset_id, dump(ann)))


def apply_event(tx: Conn, settings: Settings, event: MediaLifecycle) -> int:
    """A sink's side of a ``media.lifecycle`` event: purge again what the asset's CURRENT state says must be gone
    (a restore after the kill wins: the state is read, not the event's action). Idempotent."""
    st = state_of(tx, event.asset_id)
    if st.state in ("killed", "deleted"):
        refs: list[str] = []
        purge_rows(tx, event.asset_id, refs)
        purge_objects(settings, event.asset_id, st.state, refs)
        return 1
    return 0


def purge_late(tx: Conn, settings: Settings, dead: set[str], annotations: list[Annotation]) -> None:
    """Records about killed or deleted assets that a sink dropped: a processor that was mid-way when the kill
    committed wrote its objects (renditions, face descriptors) before it published them, after the kill's purge.
    They go now (idempotent); a descriptor still used by a live face (identical pixels elsewhere) stays."""
    if not dead:
        return
    refs: dict[str, list[str]] = {a: [] for a in dead}
    for a in annotations:
        if a.asset_id in dead and isinstance(a.payload, FaceDescriptors):
            refs[a.asset_id] += [f.descriptor_ref for f in a.payload.faces if f.descriptor_ref]
    used = {r["descriptor_ref"] for r in tx.execute(
        "SELECT descriptor_ref FROM people_faces WHERE descriptor_ref = ANY(%s)",
        ([r for rs in refs.values() for r in rs],)).fetchall()}
    for asset_id in sorted(dead):
        purge_objects(settings, asset_id, state_of(tx, asset_id).state, [r for r in refs[asset_id] if r not in used])
