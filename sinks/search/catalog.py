"""Search-side tables that always live in PostgreSQL, whichever engine holds the index.

- ``search_model_versions``: the ACTIVE version per model. Queries read vectors of that version
  only; the search sink reads it (FOR SHARE) inside its transaction, so a switch (FOR UPDATE)
  never interleaves with a half-applied batch.
- ``projects`` / ``project_assets``: user collections ("projects" in MAAM) that search can be
  restricted to. Named projects because ``assets.collection`` already is the ingest-time label.
- ``reindex_runs``: one row per ``argus reindex`` run (what was re-published, for which version).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import db
from core.db import Conn
from core.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS search_model_versions (
    model            text PRIMARY KEY,
    active_version   text NOT NULL,
    previous_version text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS projects (
    project_id  text PRIMARY KEY,
    name        text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS projects_name ON projects (lower(name));
CREATE TABLE IF NOT EXISTS project_assets (
    project_id text NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
    asset_id   text NOT NULL REFERENCES assets(asset_id),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, asset_id)
);
CREATE INDEX IF NOT EXISTS project_assets_asset ON project_assets (asset_id);
CREATE TABLE IF NOT EXISTS reindex_runs (
    run_id         text PRIMARY KEY,
    model          text NOT NULL,
    target_version text NOT NULL,
    assets         integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    activated_at   timestamptz
);
"""

_SLUG_RE = re.compile(r"[^a-z0-9]+")


def ensure_schema(settings: Settings) -> None:
    with db.connect(settings) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7245503)")
        conn.execute(SCHEMA)  # type: ignore[arg-type]  # static DDL


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


# ------------------------------------------------------------------------------ projects
@dataclass
class Project:
    project_id: str
    name: str
    description: str | None
    created_at: datetime
    assets: int = 0


class ProjectError(Exception):
    status = 400


class ProjectNotFound(ProjectError):
    status = 404


class ProjectConflict(ProjectError):
    status = 409


def _project(row: dict[str, Any]) -> Project:
    return Project(row["project_id"], row["name"], row["description"], row["created_at"], int(row.get("n") or 0))


def create_project(settings: Settings, name: str, description: str | None = None) -> Project:
    name = name.strip()
    if not name:
        raise ProjectError("project name must not be empty")
    with db.transaction(settings) as conn:
        if conn.execute("SELECT 1 FROM projects WHERE lower(name)=lower(%s)", (name,)).fetchone():
            raise ProjectConflict(f"a project named {name!r} exists")
        row = conn.execute(
            "INSERT INTO projects (project_id, name, description) VALUES (%s,%s,%s) RETURNING *, 0 AS n",
            (f"prj_{uuid.uuid4().hex[:16]}", name, description),
        ).fetchone()
    assert row is not None
    return _project(row)


def list_projects(settings: Settings) -> list[Project]:
    with db.connect(settings) as conn:
        rows = conn.execute(
            """SELECT p.*, (SELECT count(*) FROM project_assets a WHERE a.project_id=p.project_id) AS n
               FROM projects p ORDER BY p.created_at, p.project_id"""
        ).fetchall()
    return [_project(r) for r in rows]


def get_project(settings: Settings, project_id: str) -> Project:
    with db.connect(settings) as conn:
        row = conn.execute(
            """SELECT p.*, (SELECT count(*) FROM project_assets a WHERE a.project_id=p.project_id) AS n
               FROM projects p WHERE project_id=%s""",
            (project_id,),
        ).fetchone()
    if row is None:
        raise ProjectNotFound(f"no project {project_id}")
    return _project(row)


def delete_project(settings: Settings, project_id: str) -> None:
    with db.transaction(settings) as conn:
        if conn.execute("DELETE FROM projects WHERE project_id=%s RETURNING 1", (project_id,)).fetchone() is None:
            raise ProjectNotFound(f"no project {project_id}")


def add_assets(settings: Settings, project_id: str, asset_ids: list[str]) -> int:
    """Idempotent; unknown asset ids are refused as a whole (nothing added), naming them."""
    with db.transaction(settings) as conn:
        if conn.execute("SELECT 1 FROM projects WHERE project_id=%s FOR SHARE", (project_id,)).fetchone() is None:
            raise ProjectNotFound(f"no project {project_id}")
        known = {r["asset_id"] for r in conn.execute(
            "SELECT asset_id FROM assets WHERE asset_id = ANY(%s)", (asset_ids,))}
        unknown = [a for a in asset_ids if a not in known]
        if unknown:
            raise ProjectNotFound(f"unknown asset id(s): {', '.join(unknown[:5])}")
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO project_assets (project_id, asset_id) VALUES (%s,%s) ON CONFLICT DO NOTHING",
            [(project_id, a) for a in dict.fromkeys(asset_ids)],
        )
        return int(db.scalar(conn, "SELECT count(*) FROM project_assets WHERE project_id=%s", (project_id,)))


def remove_asset(settings: Settings, project_id: str, asset_id: str) -> None:
    with db.transaction(settings) as conn:
        gone = conn.execute(
            "DELETE FROM project_assets WHERE project_id=%s AND asset_id=%s RETURNING 1", (project_id, asset_id)
        ).fetchone()
    if gone is None:
        raise ProjectNotFound(f"asset {asset_id} is not in project {project_id}")


def project_asset_ids(settings: Settings, project_id: str) -> list[str]:
    with db.connect(settings) as conn:
        if conn.execute("SELECT 1 FROM projects WHERE project_id=%s", (project_id,)).fetchone() is None:
            raise ProjectNotFound(f"no project {project_id}")
        return [r["asset_id"] for r in conn.execute(
            "SELECT asset_id FROM project_assets WHERE project_id=%s ORDER BY asset_id", (project_id,))]
