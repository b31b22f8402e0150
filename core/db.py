"""PostgreSQL: the system of record (assets, outbox, annotations, sink offsets, dead letters).

Every table, index and extension is created by the numbered SQL files in ``core/migrations/``
(``NNNN_name.sql``), applied in order by :func:`migrate`, one transaction each, recorded in
``schema_migrations``; an advisory lock lets several processes start at once safely
(docs/architecture.md, "Schema migrations").
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import DictRow, dict_row

from core.settings import Settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 7245501  # pg_advisory_lock key held while migrating
_FILE_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file name, e.g. 0001_core.sql
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order. Versions must run 1..N without gaps or duplicates: a
    database at version K has applied exactly files 1..K, whatever their names."""
    found: list[Migration] = []
    for path in directory.iterdir():
        if path.suffix != ".sql":
            continue
        m = _FILE_RE.match(path.name)
        if m is None:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), path.name, path.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions must be 1..N without gaps or duplicates, got {versions}")
    return found


Conn = psycopg.Connection[DictRow]


def connect(settings: Settings, *, autocommit: bool = False) -> Conn:
    conn = psycopg.connect(settings.postgres_dsn, autocommit=autocommit, row_factory=dict_row)
    with contextlib.suppress(psycopg.ProgrammingError):
        register_vector(conn)  # fails only before the first migration created the extension
    return conn


@contextmanager
def transaction(settings: Settings) -> Iterator[Conn]:
    with connect(settings) as conn, conn.transaction():
        yield conn


def migrate(settings: Settings, migrations: list[Migration] | None = None) -> int:
    """Apply pending migrations (``migrations``: default every file in core/migrations/); returns the
    schema version. Each migration runs in its own transaction with its schema_migrations row, under a
    session advisory lock, so many processes may call this at once: one applies, the others wait and
    then find nothing left to do."""
    migrations = load_migrations() if migrations is None else migrations
    with connect(settings, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz DEFAULT now())"  # noqa: E501
            )
            done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
            for mig in migrations:
                if mig.version in done:
                    continue
                with conn.transaction():
                    conn.execute(mig.sql)  # type: ignore[arg-type]  # trusted, static SQL from the package
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (mig.version,))
                done.add(mig.version)
        finally:
            with contextlib.suppress(psycopg.Error):  # a broken connection released the lock already
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        return max(done, default=0)


def schema_version(settings: Settings) -> int:
    """The highest applied migration (0 for an empty database)."""
    with connect(settings) as conn:
        if scalar(conn, "SELECT to_regclass('schema_migrations') IS NULL"):
            return 0
        return int(scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations"))


def scalar(conn: Conn, query: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
    """The first column of the first row (queries that always return one row, e.g. count(*))."""
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None, query
    return next(iter(row.values()))
