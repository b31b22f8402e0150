"""Assigning faces to persons: incrementally as they arrive, and by re-clustering the loose ones.

* ``assign_new``: a new clusterable face joins the person of its nearest assigned face when that face is within
  ``people.match_distance`` (dlib L2 distance), else it starts a new unconfirmed person of its own. One kNN query
  per face: adding a face never re-processes the others.
* ``recluster``: the loose faces (those of unconfirmed persons that the machine placed, never a face a user placed
  or removed, never a face of a confirmed person) are clustered again with Chinese whispers over the graph of
  pairs closer than ``people.cluster_distance``. Each cluster keeps the id of the unconfirmed person holding most
  of its faces, so ids stay stable; emptied unconfirmed persons are deleted.

Both are deterministic functions of the table contents (faces ordered by id, fixed-seed Chinese whispers), so a
redelivered batch, recomputed after a crash from the same committed state, gives the same assignment.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from core.db import Conn
from core.settings import Settings

RECLUSTER_KEY = "faces_since_recluster"
PEOPLE_LOCK = 7245509  # pg_advisory_xact_lock key: curation and the people sink never interleave
MAX_LOOSE = 20000  # a re-clustering pass holds the loose faces' descriptors in memory (20k x 128 floats)


def lock(conn: Conn) -> None:
    """Serialise with every other writer of the people tables (held until the transaction ends)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PEOPLE_LOCK,))


def person_id_for(face_id: str) -> str:
    return "p-" + hashlib.sha256(face_id.encode()).hexdigest()[:16]


def vec_param(v: Sequence[float] | np.ndarray) -> str:
    """pgvector's text form (no adapter registration needed on the sink's connection)."""
    return "[" + ",".join(f"{float(x):.7g}" for x in v) + "]"


def parse_vec(text: str) -> np.ndarray:
    return np.asarray([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)


def nearest_person(conn: Conn, descriptor: Sequence[float] | np.ndarray, max_distance: float,
                   exclude_face: str | None = None) -> tuple[str, float] | None:
    """(person id, distance) of the nearest assigned face within ``max_distance``, or None."""
    conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
                 "set_config('hnsw.ef_search', '100', true)")
    row = conn.execute(
        """SELECT person_id, descriptor <-> %s::vector AS dist FROM people_faces
           WHERE person_id IS NOT NULL AND descriptor IS NOT NULL AND face_id <> %s
           ORDER BY descriptor <-> %s::vector, face_id LIMIT 1""",
        (vec_param(descriptor), exclude_face or "", vec_param(descriptor))).fetchone()
    if row is None or float(row["dist"]) > max_distance:
        return None
    return str(row["person_id"]), float(row["dist"])


def ensure_person(conn: Conn, person_id: str) -> None:
    conn.execute("INSERT INTO people_persons (person_id) VALUES (%s) ON CONFLICT DO NOTHING", (person_id,))


def assign_new(conn: Conn, settings: Settings, face_id: str, descriptor: Sequence[float] | np.ndarray) -> str:
    """Place one new clusterable face (already inserted, unassigned); returns its person id."""
    found = nearest_person(conn, descriptor, settings.people.match_distance, exclude_face=face_id)
    person = found[0] if found is not None else person_id_for(face_id)
    if found is None:
        ensure_person(conn, person)
    conn.execute("UPDATE people_faces SET person_id=%s, assigned_by='auto' WHERE face_id=%s", (person, face_id))
    return person


def count_new_face(conn: Conn, settings: Settings) -> bool:
    """Count one new clusterable face; True when a re-clustering is due (the counter is then reset)."""
    row = conn.execute(
        """INSERT INTO people_state (key, value) VALUES (%s, 1)
           ON CONFLICT (key) DO UPDATE SET value = people_state.value + 1 RETURNING value""",
        (RECLUSTER_KEY,)).fetchone()
    assert row is not None
    if settings.people.recluster_every > 0 and int(row["value"]) >= settings.people.recluster_every:
        conn.execute("UPDATE people_state SET value = 0 WHERE key = %s", (RECLUSTER_KEY,))
        return True
    return False


def chinese_whispers(vectors: np.ndarray, threshold: float, iterations: int = 100) -> list[int]:
    """Cluster labels for ``vectors`` (rows): Chinese whispers (dlib's, fixed seed) over the pairs closer than
    ``threshold``; every vector is its own cluster when nothing is close."""
    n = len(vectors)
    if n == 0:
        return []
    edges: list[tuple[int, int, float]] = []
    for start in range(0, n, 1024):  # blockwise distances: memory stays O(1024 * n)
        block = vectors[start:start + 1024]
        d = np.sqrt(np.maximum(((block[:, None, :] - vectors[None, :, :]) ** 2).sum(-1), 0.0))
        for i, j in zip(*np.nonzero(d < threshold), strict=True):
            a = start + int(i)
            if a < int(j):
                edges.append((a, int(j), 1.0))
    edges += [(i, i, 1.0) for i in range(n)]  # every node is in the graph, alone if need be
    import dlib  # lazy: the compiled extension loads in ~0.1 s and only the sinks and the evaluation need it

    return [int(x) for x in dlib.chinese_whispers(edges)]


def recluster(conn: Conn, settings: Settings) -> dict[str, int]:
    """Re-cluster the loose faces (see the module docstring); returns counts of what changed."""
    rows = conn.execute(
        """SELECT f.face_id, f.person_id, f.descriptor::text AS d FROM people_faces f
           LEFT JOIN people_persons p ON p.person_id = f.person_id
           WHERE f.descriptor IS NOT NULL AND NOT f.removed AND f.assigned_by IN ('auto', 'cluster', 'none')
             AND (f.person_id IS NULL OR NOT coalesce(p.confirmed, false))
           ORDER BY f.face_id LIMIT %s FOR UPDATE OF f""", (MAX_LOOSE,)).fetchall()
    if not rows:
        return {"loose": 0, "moved": 0, "persons_removed": 0}
    labels = chinese_whispers(np.stack([parse_vec(r["d"]) for r in rows]), settings.people.cluster_distance)
    clusters: dict[int, list[dict[str, str]]] = {}
    for r, lab in zip(rows, labels, strict=True):
        clusters.setdefault(lab, []).append(r)
    # bigger clusters choose their id first; ties by their smallest face id (deterministic)
    order = sorted(clusters.values(), key=lambda members: (-len(members), members[0]["face_id"]))
    taken: set[str] = set()
    moves: list[tuple[str, str]] = []
    for members in order:
        votes = Counter(m["person_id"] for m in members if m["person_id"] and m["person_id"] not in taken)
        best = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        person = best[0][0] if best else person_id_for(members[0]["face_id"])
        taken.add(person)
        ensure_person(conn, person)
        moves += [(person, m["face_id"]) for m in members if m["person_id"] != person]
    if moves:
        conn.cursor().executemany("UPDATE people_faces SET person_id=%s, assigned_by='cluster' WHERE face_id=%s", moves)
    gone = conn.execute(
        """DELETE FROM people_persons p WHERE NOT p.confirmed AND p.name IS NULL
           AND NOT EXISTS (SELECT 1 FROM people_faces f WHERE f.person_id = p.person_id)""").rowcount
    return {"loose": len(rows), "moved": len(moves), "persons_removed": gone}
