"""Search-side tables that always live in PostgreSQL, whichever engine holds the index.

- ``search_model_versions``: the ACTIVE version per model. Queries read vectors of that version
  only; the search sink reads it (FOR SHARE) inside its transaction, so a switch (FOR UPDATE)
  never interleaves with a half-applied batch.
- ``projects`` / ``project_assets``: user collections that search can be restricted to; user
  curation, read by queries: their functions are retrieval/search/projects.py.
- ``reindex_runs``: one row per ``argus reindex`` run (what was re-published, for which version).

The tables are created by core/migrations/0005_search_catalog.sql (``argus migrate``).
"""

from __future__ import annotations

import re

from core.db import Conn

_SLUG_RE = re.compile(r"[^a-z0-9]+")


# ------------------------------------------------------------------------------ model versions
def active_versions(conn: Conn, *, lock: bool = False) -> dict[str, str]:
    """model -> active version. ``lock`` (sink writes): FOR SHARE, so a switch waits for the batch."""
    q = "SELECT model, active_version FROM search_model_versions" + (" FOR SHARE" if lock else "")
    return {r["model"]: r["active_version"] for r in conn.execute(q)}  # type: ignore[arg-type]


def claim_first_version(conn: Conn, model: str, version: str) -> None:
    """The first version seen for a model becomes active; later ones wait for an explicit switch."""
    conn.execute(
        "INSERT INTO search_model_versions (model, active_version) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (model, version),
    )


def set_active_version(conn: Conn, model: str, version: str) -> str | None:
    """Switch (inside the caller's transaction); returns the previous active version."""
    row = conn.execute(
        "SELECT active_version FROM search_model_versions WHERE model=%s FOR UPDATE", (model,)
    ).fetchone()
    previous = row["active_version"] if row else None
    conn.execute(
        """INSERT INTO search_model_versions (model, active_version, previous_version) VALUES (%s, %s, %s)
           ON CONFLICT (model) DO UPDATE SET active_version=EXCLUDED.active_version,
                previous_version=search_model_versions.active_version, updated_at=now()""",
        (model, version, previous),
    )
    return previous  # type: ignore[no-any-return]


def version_slug(version: str) -> str:
    """An index-name-safe rendering of a model version (OpenSearch names are lowercase, no ':' etc.)."""
    return _SLUG_RE.sub("-", version.lower()).strip("-")[:80] or "v"
