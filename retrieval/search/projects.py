"""Projects: user collections ("projects" in MAAM) that search can be restricted to
(``SearchQuery.project``). Named projects because ``assets.collection`` already is the ingest-time label.

User curation on the read side: the tables ``projects`` / ``project_assets`` are SQL migrations
(core/migrations/), and nothing in the event pipeline writes them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import db
from core.settings import Settings


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
