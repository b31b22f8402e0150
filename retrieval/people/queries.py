"""People queries: the People page (persons with cover and counts), a person's assets in time order, the faces
of an asset, "more photos of this face", the audit log; and person filters for the search backends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core import db
from core.db import Conn
from core.settings import Settings
from sinks.people.assign import parse_vec, vec_param

FACE_COLS = """f.face_id, f.asset_id, f.keyframe_ms, f.box, round(f.score::numeric, 4)::float8 AS score,
               f.size_px, f.sharpness, f.recognisable, f.descriptor IS NOT NULL AS clusterable, f.person_id,
               f.assigned_by, f.removed"""


def _person_row(r: dict[str, Any]) -> dict[str, Any]:
    cover = None
    if r.get("cover_id"):
        cover = {"face_id": r["cover_id"], "asset_id": r["cover_asset"], "box": r["cover_box"],
                 "keyframe_ms": r["cover_kf"]}
    return {"person_id": r["person_id"], "name": r["name"], "confirmed": r["confirmed"], "hidden": r["hidden"],
            "faces": int(r["faces"]), "assets": int(r["assets"]), "cover": cover,
            "updated_at": r["updated_at"]}


PERSONS_SQL = """
    SELECT p.person_id, p.name, p.confirmed, p.hidden, p.updated_at, s.faces, s.assets,
           c.face_id AS cover_id, c.asset_id AS cover_asset, c.box AS cover_box, c.keyframe_ms AS cover_kf
    FROM people_persons p
    JOIN LATERAL (SELECT count(*) AS faces, count(DISTINCT asset_id) AS assets FROM people_faces f
                  WHERE f.person_id = p.person_id) s ON true
    LEFT JOIN LATERAL (
        -- the chosen cover, else the largest sharp face of the person
        SELECT face_id, asset_id, box, keyframe_ms FROM people_faces f WHERE f.person_id = p.person_id
        ORDER BY (f.face_id = p.cover_face_id) DESC, f.size_px * least(f.sharpness, 200) DESC, f.face_id LIMIT 1
    ) c ON true
"""


def list_persons(settings: Settings, *, include_hidden: bool = False, min_faces: int = 1, name: str | None = None,
                 limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Persons, the most photographed first (named before unnamed at equal counts)."""
    where = ["s.faces >= %s"]
    params: list[Any] = [min_faces]
    if not include_hidden:
        where.append("NOT p.hidden")
    if name:
        where.append("p.name ILIKE %s")
        params.append(f"%{name}%")
    cond = " AND ".join(where)
    with db.connect(settings) as conn:
        total = int(db.scalar(conn, f"SELECT count(*) FROM ({PERSONS_SQL} WHERE {cond}) x", params))  # noqa: S608
        rows = conn.execute(
            f"{PERSONS_SQL} WHERE {cond} "  # noqa: S608
            "ORDER BY s.assets DESC, (p.name IS NULL), p.name, p.person_id "
            "LIMIT %s OFFSET %s", [*params, limit, offset]).fetchall()
    return {"total": total, "limit": limit, "offset": offset, "persons": [_person_row(dict(r)) for r in rows]}


def get_person(settings: Settings, person_id: str, *, limit: int = 200, offset: int = 0) -> dict[str, Any] | None:
    """A person with its assets in time order (upload time, oldest first), each with this person's faces."""
    with db.connect(settings) as conn:
        row = conn.execute(f"{PERSONS_SQL} WHERE p.person_id = %s", (person_id,)).fetchone()  # noqa: S608
        if row is None:
            return None
        assets = conn.execute(
            """SELECT a.asset_id, a.filename, a.title, a.media_type, a.collection, a.uploaded_at,
                      json_agg(json_build_object('face_id', f.face_id, 'keyframe_ms', f.keyframe_ms, 'box', f.box,
                               'score', f.score, 'assigned_by', f.assigned_by)
                               ORDER BY f.keyframe_ms, f.face_id) AS faces
               FROM people_faces f JOIN assets a USING (asset_id) WHERE f.person_id = %s
               GROUP BY a.asset_id ORDER BY a.uploaded_at, a.asset_id LIMIT %s OFFSET %s""",
            (person_id, limit, offset)).fetchall()
        audit = conn.execute("SELECT id, at, actor, action, detail, undone_at, undo IS NOT NULL AS undoable "
                             "FROM people_audit WHERE person_id=%s ORDER BY id DESC LIMIT 50", (person_id,)).fetchall()
    out = _person_row(dict(row))
    out["items"] = [dict(a) for a in assets]
    out["limit"], out["offset"] = limit, offset
    out["audit"] = [dict(a) for a in audit]
    return out


def asset_faces(settings: Settings, asset_id: str) -> list[dict[str, Any]]:
    """The faces of one asset with their persons (the asset card); hidden persons show as unnamed faces."""
    with db.connect(settings) as conn:
        rows = conn.execute(
            f"""SELECT {FACE_COLS}, CASE WHEN p.hidden THEN NULL ELSE p.name END AS person_name,
                       coalesce(p.hidden, false) AS person_hidden
                FROM people_faces f LEFT JOIN people_persons p USING (person_id)
                WHERE f.asset_id=%s ORDER BY f.keyframe_ms NULLS FIRST, f.face_index""", (asset_id,)).fetchall()
    return [dict(r) for r in rows]


def face_at(settings: Settings, asset_id: str, box: Sequence[float], keyframe_ms: int | None = None) -> str | None:
    """The id of the asset's face that overlaps ``box`` (x1,y1,x2,y2 normalised) the most, if any overlaps."""
    best, best_iou = None, 0.0
    for f in asset_faces(settings, asset_id):
        if keyframe_ms is not None and f["keyframe_ms"] != keyframe_ms:
            continue
        b = f["box"]
        ix = max(0.0, min(b["x2"], box[2]) - max(b["x1"], box[0]))
        iy = max(0.0, min(b["y2"], box[3]) - max(b["y1"], box[1]))
        inter = ix * iy
        union = (b["x2"] - b["x1"]) * (b["y2"] - b["y1"]) + (box[2] - box[0]) * (box[3] - box[1]) - inter
        iou = inter / union if union > 0 else 0.0
        if iou > best_iou:
            best, best_iou = f["face_id"], iou
    return best


def similar_faces(settings: Settings, face_id: str, k: int = 20, max_distance: float | None = None) -> dict[str, Any]:
    """More photos of this face: the nearest faces of OTHER assets (one hit per asset, nearest first)."""
    with db.connect(settings) as conn:
        row = conn.execute("SELECT asset_id, descriptor::text AS d FROM people_faces WHERE face_id=%s",
                           (face_id,)).fetchone()
        if row is None:
            raise LookupError(f"no face {face_id}")
        if row["d"] is None:
            raise LookupError(f"face {face_id} has no descriptor (a detection only, or recognition is off)")
        limit = max_distance if max_distance is not None else settings.people.match_distance
        hits = _knn(conn, parse_vec(row["d"]), k, row["asset_id"], limit)
    return {"face_id": face_id, "max_distance": limit, "hits": hits}


def _knn(conn: Conn, vec: Any, k: int, exclude_asset: str, max_distance: float) -> list[dict[str, Any]]:
    conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                 "set_config('hnsw.ef_search', %s, true)", (str(max(40, 4 * k)),))
    rows = conn.execute(
        """SELECT DISTINCT ON (c.asset_id) c.* FROM (
               SELECT f.face_id, f.asset_id, f.keyframe_ms, f.box, f.person_id, f.descriptor <-> %s::vector AS distance
               FROM people_faces f WHERE f.descriptor IS NOT NULL AND f.asset_id <> %s
               ORDER BY f.descriptor <-> %s::vector LIMIT %s) c
           WHERE c.distance <= %s ORDER BY c.asset_id, c.distance""",
        (vec_param(vec), exclude_asset, vec_param(vec), 8 * k, max_distance)).fetchall()
    hits = sorted((dict(r) for r in rows), key=lambda r: (r["distance"], r["asset_id"]))[:k]
    for h in hits:
        h["distance"] = round(float(h["distance"]), 4)
    return hits


def audit_log(settings: Settings, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    with db.connect(settings) as conn:
        return [dict(r) for r in conn.execute(
            "SELECT id, at, actor, action, person_id, detail, undone_at, undo IS NOT NULL AS undoable "
            "FROM people_audit ORDER BY id DESC LIMIT %s OFFSET %s", (limit, offset)).fetchall()]


def person_names(settings: Settings, person_ids: Sequence[str]) -> dict[str, str | None]:
    with db.connect(settings) as conn:
        return {r["person_id"]: r["name"] for r in conn.execute(
            "SELECT person_id, name FROM people_persons WHERE person_id = ANY(%s)", (list(person_ids),)).fetchall()}


def asset_ids_with_persons(settings: Settings, all_of: Sequence[str], any_of: Sequence[str]) -> list[str]:
    """Assets showing every person of ``all_of`` and at least one of ``any_of`` (by id or name, case-insensitive):
    the person filter of engines that do not hold the people tables (OpenSearch)."""
    sets: list[set[str]] = []
    with db.connect(settings) as conn:
        for group in ([[v] for v in all_of] + ([list(any_of)] if any_of else [])):
            sets.append({r["asset_id"] for r in conn.execute(
                """SELECT DISTINCT f.asset_id FROM people_faces f JOIN people_persons p USING (person_id)
                   WHERE p.person_id = ANY(%s) OR lower(p.name) = ANY(%s)""",
                (group, [g.lower() for g in group])).fetchall()})
    if not sets:
        return []
    return sorted(set.intersection(*sets))
