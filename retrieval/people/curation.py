"""Curation of people: name, merge, split, remove a face, assign a face, hide, cover face; undo; forget.

Every action runs in one transaction under the people lock (the sink takes it too, so a curation never
interleaves with an assignment), and writes an audit row with the state it replaced (``undo``): the rows of the
persons and the faces it touched. ``undo(audit_id)`` puts those rows back. Curation marks persons confirmed and
faces ``assigned_by='user'``: re-clustering never moves them, and a removed face (``removed``) is never assigned
automatically again.

Forgetting (a person, an asset's faces, a collection switched off) deletes the descriptors, in PostgreSQL and in
the object store, and leaves tombstones so that a replay never brings them back. It cannot be undone.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from psycopg.types.json import Jsonb

from core import db
from core.db import Conn
from core.settings import Settings
from core.storage import ObjectStore
from models.face_embed import descriptor_key
from sinks.people import assign

log = logging.getLogger(__name__)

PERSON_COLS = ("person_id", "name", "confirmed", "hidden", "cover_face_id")
FACE_COLS = ("face_id", "person_id", "assigned_by", "removed")


class PeopleError(Exception):
    status = 400


class NotFound(PeopleError):
    status = 404


class Conflict(PeopleError):
    status = 409


def lock(conn: Conn) -> None:
    assign.lock(conn)


# ------------------------------------------------------------------------------ snapshots (undo)
def _snapshot(conn: Conn, person_ids: list[str], face_ids: list[str]) -> dict[str, Any]:
    persons = {r["person_id"]: {c: r[c] for c in PERSON_COLS} for r in conn.execute(
        "SELECT * FROM people_persons WHERE person_id = ANY(%s)", (person_ids,)).fetchall()}
    faces = [{c: r[c] for c in FACE_COLS} for r in conn.execute(
        "SELECT face_id, person_id, assigned_by, removed FROM people_faces WHERE face_id = ANY(%s) ORDER BY face_id",
        (face_ids,)).fetchall()]
    return {"persons": {p: persons.get(p) for p in person_ids}, "faces": faces}


def _faces_of(conn: Conn, person_ids: list[str]) -> list[str]:
    return [r["face_id"] for r in conn.execute(
        "SELECT face_id FROM people_faces WHERE person_id = ANY(%s) ORDER BY face_id", (person_ids,)).fetchall()]


def _person(conn: Conn, person_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM people_persons WHERE person_id=%s FOR UPDATE", (person_id,)).fetchone()
    if row is None:
        raise NotFound(f"no person {person_id}")
    return dict(row)


def _audit(conn: Conn, action: str, person_id: str | None, detail: dict[str, Any], undo: dict[str, Any] | None,
           actor: str | None) -> int:
    row = conn.execute(
        "INSERT INTO people_audit (actor, action, person_id, detail, undo) VALUES (%s,%s,%s,%s,%s) RETURNING id",
        (actor, action, person_id, Jsonb(detail), Jsonb(undo) if undo is not None else None)).fetchone()
    assert row is not None
    return int(row["id"])


def _touch(conn: Conn, person_id: str, **cols: Any) -> None:
    sets = ", ".join(f"{c}=%s" for c in cols)
    conn.execute(f"UPDATE people_persons SET {sets}, updated_at=now() WHERE person_id=%s",  # noqa: S608 - fixed names
                 (*cols.values(), person_id))


# ------------------------------------------------------------------------------ actions
def name_person(settings: Settings, person_id: str, name: str | None, actor: str | None = None) -> int:
    """Name (or un-name with None) a person; the person becomes confirmed. Returns the audit id."""
    name = name.strip() if name else None
    with db.transaction(settings) as conn:
        lock(conn)
        _person(conn, person_id)
        before = _snapshot(conn, [person_id], [])
        _touch(conn, person_id, name=name, confirmed=True)
        return _audit(conn, "name", person_id, {"name": name}, before, actor)


def hide_person(settings: Settings, person_id: str, hidden: bool = True, actor: str | None = None) -> int:
    with db.transaction(settings) as conn:
        lock(conn)
        _person(conn, person_id)
        before = _snapshot(conn, [person_id], [])
        _touch(conn, person_id, hidden=hidden)
        return _audit(conn, "hide" if hidden else "unhide", person_id, {"hidden": hidden}, before, actor)


def _face_of(conn: Conn, face_id: str, person_id: str) -> None:
    if conn.execute("SELECT 1 FROM people_faces WHERE face_id=%s AND person_id=%s",
                    (face_id, person_id)).fetchone() is None:
        raise Conflict(f"face {face_id} is not a face of {person_id}")


def set_cover(settings: Settings, person_id: str, face_id: str, actor: str | None = None) -> int:
    with db.transaction(settings) as conn:
        lock(conn)
        _person(conn, person_id)
        _face_of(conn, face_id, person_id)
        before = _snapshot(conn, [person_id], [])
        _touch(conn, person_id, cover_face_id=face_id)
        return _audit(conn, "cover", person_id, {"face_id": face_id}, before, actor)


def merge(settings: Settings, target: str, sources: list[str], actor: str | None = None) -> int:
    """Move every face of ``sources`` into ``target`` (confirmed); the sources are deleted. Keeps the target's
    name, else the first named source's."""
    sources = [s for s in dict.fromkeys(sources) if s != target]
    if not sources:
        raise PeopleError("nothing to merge: give other persons than the target")
    with db.transaction(settings) as conn:
        lock(conn)
        tgt = _person(conn, target)
        srcs = [_person(conn, s) for s in sources]
        faces = _faces_of(conn, [target, *sources])
        before = _snapshot(conn, [target, *sources], faces)
        name = tgt["name"] or next((s["name"] for s in srcs if s["name"]), None)
        conn.execute("UPDATE people_faces SET person_id=%s, assigned_by='user' WHERE person_id = ANY(%s)",
                     (target, [target, *sources]))
        conn.execute("DELETE FROM people_persons WHERE person_id = ANY(%s)", (sources,))
        _touch(conn, target, name=name, confirmed=True)
        return _audit(conn, "merge", target, {"sources": sources, "faces": len(faces)}, before, actor)


def split(settings: Settings, person_id: str, face_ids: list[str], actor: str | None = None) -> tuple[str, int]:
    """Move ``face_ids`` out of ``person_id`` into a new confirmed person; returns (new person id, audit id)."""
    face_ids = sorted(set(face_ids))
    with db.transaction(settings) as conn:
        lock(conn)
        _person(conn, person_id)
        found = [r["face_id"] for r in conn.execute(
            "SELECT face_id FROM people_faces WHERE face_id = ANY(%s) AND person_id=%s", (face_ids, person_id))]
        if not face_ids or len(found) != len(face_ids):
            raise Conflict(f"not faces of {person_id}: {sorted(set(face_ids) - set(found))[:5]}")
        audit_no = int(db.scalar(conn, "SELECT coalesce(max(id), 0) + 1 FROM people_audit"))
        new_id = "p-" + hashlib.sha256(f"split|{audit_no}|{face_ids[0]}".encode()).hexdigest()[:16]
        before = _snapshot(conn, [person_id, new_id], face_ids)
        conn.execute("INSERT INTO people_persons (person_id, confirmed) VALUES (%s, true)", (new_id,))
        conn.execute("UPDATE people_faces SET person_id=%s, assigned_by='user' WHERE face_id = ANY(%s)",
                     (new_id, face_ids))
        conn.execute("UPDATE people_faces SET assigned_by='user' WHERE person_id=%s", (person_id,))
        _touch(conn, person_id, confirmed=True)
        conn.execute("UPDATE people_persons SET cover_face_id=NULL WHERE person_id=%s AND cover_face_id = ANY(%s)",
                     (person_id, face_ids))
        return new_id, _audit(conn, "split", person_id, {"new_person": new_id, "faces": face_ids}, before, actor)


def remove_face(settings: Settings, person_id: str, face_id: str, actor: str | None = None) -> int:
    """Take a wrongly assigned face out of a person; it is remembered (never assigned automatically again)."""
    with db.transaction(settings) as conn:
        lock(conn)
        _person(conn, person_id)
        _face_of(conn, face_id, person_id)
        before = _snapshot(conn, [person_id], [face_id])
        conn.execute("UPDATE people_faces SET person_id=NULL, assigned_by='user', removed=true WHERE face_id=%s",
                     (face_id,))
        conn.execute("UPDATE people_persons SET cover_face_id=NULL WHERE person_id=%s AND cover_face_id=%s",
                      (person_id, face_id))
        _touch(conn, person_id, confirmed=True)
        return _audit(conn, "remove_face", person_id, {"face_id": face_id}, before, actor)


def assign_face(settings: Settings, face_id: str, person_id: str, actor: str | None = None) -> int:
    """Put a face into a person by hand (also brings back a removed face)."""
    with db.transaction(settings) as conn:
        lock(conn)
        _person(conn, person_id)
        row = conn.execute("SELECT person_id, descriptor IS NOT NULL AS d FROM people_faces WHERE face_id=%s",
                           (face_id,)).fetchone()
        if row is None:
            raise NotFound(f"no face {face_id}")
        if not row["d"]:
            raise Conflict(f"face {face_id} is a detection only (too small, blurred or recognition off)")
        before = _snapshot(conn, [person_id, *([row["person_id"]] if row["person_id"] else [])], [face_id])
        conn.execute("UPDATE people_faces SET person_id=%s, assigned_by='user', removed=false WHERE face_id=%s",
                     (person_id, face_id))
        _touch(conn, person_id, confirmed=True)
        return _audit(conn, "assign_face", person_id, {"face_id": face_id, "from": row["person_id"]}, before, actor)


def undo(settings: Settings, audit_id: int, actor: str | None = None) -> int:
    """Restore the persons and faces an action touched to their state before it; returns the undo's audit id."""
    with db.transaction(settings) as conn:
        lock(conn)
        row = conn.execute("SELECT * FROM people_audit WHERE id=%s FOR UPDATE", (audit_id,)).fetchone()
        if row is None:
            raise NotFound(f"no audit entry {audit_id}")
        if row["undo"] is None:
            raise Conflict(f"audit entry {audit_id} ({row['action']}) cannot be undone")
        if row["undone_at"] is not None:
            raise Conflict(f"audit entry {audit_id} was already undone")
        snap = row["undo"]
        for pid, p in snap["persons"].items():
            if p is None:
                continue
            conn.execute(
                """INSERT INTO people_persons (person_id, name, confirmed, hidden, cover_face_id)
                   VALUES (%s,%s,%s,%s,%s)
                   ON CONFLICT (person_id) DO UPDATE SET name=EXCLUDED.name, confirmed=EXCLUDED.confirmed,
                       hidden=EXCLUDED.hidden, cover_face_id=EXCLUDED.cover_face_id, updated_at=now()""",
                (pid, p["name"], p["confirmed"], p["hidden"], p["cover_face_id"]))
        conn.cursor().executemany(
            "UPDATE people_faces SET person_id=%s, assigned_by=%s, removed=%s WHERE face_id=%s",
            [(f["person_id"], f["assigned_by"], f["removed"], f["face_id"]) for f in snap["faces"]])
        created = [pid for pid, p in snap["persons"].items() if p is None]
        if created:  # persons the action created: gone again once their faces are back
            conn.execute("""DELETE FROM people_persons p WHERE p.person_id = ANY(%s)
                            AND NOT EXISTS (SELECT 1 FROM people_faces f WHERE f.person_id = p.person_id)""",
                         (created,))
        conn.execute("UPDATE people_audit SET undone_at=now() WHERE id=%s", (audit_id,))
        return _audit(conn, "undo", row["person_id"], {"undid": audit_id, "action": row["action"]}, None, actor)


# ------------------------------------------------------------------------------ forgetting
def _delete_descriptors(settings: Settings, refs: list[str]) -> None:
    """The descriptor objects (after the commit: a failure leaves an orphan object, never a live reference)."""
    if not refs:
        return
    store = ObjectStore(settings)
    for ref in sorted(set(refs)):
        try:
            store.client.remove_object(store.bucket, descriptor_key(ref))
        except Exception as exc:  # noqa: BLE001 - logged; the PostgreSQL side is already gone
            log.warning("people: could not delete descriptor object %s: %s", ref[:12], exc)


def _scrub_annotations(conn: Conn, faces: list[dict[str, Any]]) -> None:
    """Where the events carried descriptors (people.descriptors_in_events), the stored annotation payloads hold
    them too: null them for these faces."""
    by_ann: dict[str, list[int]] = {}
    for f in faces:
        by_ann.setdefault(f["annotation_id"], []).append(int(f["face_index"]))
    for ann_id, idx in by_ann.items():
        row = conn.execute("SELECT payload FROM annotations WHERE annotation_id=%s FOR UPDATE", (ann_id,)).fetchone()
        if row is None or not isinstance(row["payload"], dict):
            continue
        payload = row["payload"]
        faces_p = payload.get("faces") or []
        changed = False
        for i in idx:
            if i < len(faces_p) and faces_p[i].get("descriptor") is not None:
                faces_p[i]["descriptor"] = None
                changed = True
        if changed:
            conn.execute("UPDATE annotations SET payload=%s WHERE annotation_id=%s", (Jsonb(payload), ann_id))


def _forget_faces(conn: Conn, where: str, params: tuple[Any, ...], reason: str) -> tuple[int, list[str]]:
    faces = [dict(r) for r in conn.execute(
        f"SELECT face_id, annotation_id, face_index, descriptor_ref FROM people_faces WHERE {where}",  # noqa: S608
        params).fetchall()]
    if not faces:
        return 0, []
    ids = [f["face_id"] for f in faces]
    conn.cursor().executemany("INSERT INTO people_tombstones (face_id, reason) VALUES (%s,%s) ON CONFLICT DO NOTHING",
                              [(i, reason) for i in ids])
    conn.execute("DELETE FROM people_faces WHERE face_id = ANY(%s)", (ids,))
    _scrub_annotations(conn, faces)
    return len(ids), [f["descriptor_ref"] for f in faces if f["descriptor_ref"]]


def _drop_empty_persons(conn: Conn) -> None:
    conn.execute("""UPDATE people_persons p SET cover_face_id=NULL WHERE cover_face_id IS NOT NULL
                    AND NOT EXISTS (SELECT 1 FROM people_faces f WHERE f.face_id = p.cover_face_id)""")
    conn.execute("""DELETE FROM people_persons p WHERE NOT p.confirmed
                    AND NOT EXISTS (SELECT 1 FROM people_faces f WHERE f.person_id = p.person_id)""")


def forget_person(settings: Settings, person_id: str, actor: str | None = None) -> int:
    """Delete the person, its faces and their descriptors (PostgreSQL and object store); tombstones keep a replay
    from bringing them back. Not undoable; the audit row keeps no name and no descriptor."""
    with db.transaction(settings) as conn:
        lock(conn)
        _person(conn, person_id)
        n, refs = _forget_faces(conn, "person_id = %s", (person_id,), "forgotten person")
        conn.execute("DELETE FROM people_persons WHERE person_id=%s", (person_id,))
        # earlier audit rows of this person may hold its name in their undo state: drop that too
        conn.execute("UPDATE people_audit SET undo=NULL, detail=detail - 'name' WHERE person_id=%s", (person_id,))
        audit_id = _audit(conn, "forget", person_id, {"faces": n}, None, actor)
    _delete_descriptors(settings, refs)
    return audit_id


def forget_asset_faces(settings: Settings, asset_id: str, actor: str | None = None) -> int:
    """An asset deleted or killed: its faces and their descriptors go; returns how many faces."""
    with db.transaction(settings) as conn:
        lock(conn)
        n, refs = _forget_faces(conn, "asset_id = %s", (asset_id,), "asset removed")
        _drop_empty_persons(conn)
        _audit(conn, "forget_asset", None, {"asset_id": asset_id, "faces": n}, None, actor)
    _delete_descriptors(settings, refs)
    return n


def set_collection_recognition(settings: Settings, collection: str, recognition: bool,
                               actor: str | None = None) -> int:
    """Switch recognition for a collection. Off: its faces lose their descriptors and persons (they stay
    detections) and new ones are not recognised; on: new uploads are recognised again. Returns faces cleared."""
    with db.transaction(settings) as conn:
        lock(conn)
        conn.execute("""INSERT INTO people_collections (collection, recognition) VALUES (%s,%s)
                        ON CONFLICT (collection) DO UPDATE SET recognition=EXCLUDED.recognition, updated_at=now()""",
                     (collection, recognition))
        refs: list[str] = []
        cleared = 0
        if not recognition:
            rows = conn.execute(
                """UPDATE people_faces f SET descriptor=NULL, descriptor_ref=NULL, person_id=NULL, assigned_by='none'
                   FROM assets a WHERE a.asset_id=f.asset_id AND a.collection=%s
                     AND (f.descriptor IS NOT NULL OR f.descriptor_ref IS NOT NULL)
                   RETURNING old.descriptor_ref AS ref""",
                (collection,)).fetchall()
            cleared = len(rows)
            refs = [r["ref"] for r in rows if r["ref"]]
            _drop_empty_persons(conn)
        _audit(conn, "collection_recognition", None, {"collection": collection, "recognition": recognition,
                                                      "faces_cleared": cleared}, None, actor)
    _delete_descriptors(settings, refs)
    return cleared


def recluster_now(settings: Settings) -> dict[str, int]:
    """Re-cluster the loose faces now (the sink also does it every ``people.recluster_every`` new faces)."""
    with db.transaction(settings) as conn:
        lock(conn)
        return assign.recluster(conn, settings)
