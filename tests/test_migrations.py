"""Schema migrations (core/migrations/*.sql applied by core.db.migrate, docs/architecture.md).

Runs against a real embedded PostgreSQL of its own (only that server: a second or so to start), one
fresh database per case: a fresh database gets every file in numeric order, migrating again is a
no-op, and a database left at any older version (also one whose search/text tables were created
at run time by older releases) upgrades to exactly the schema a fresh database has.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core import db
from core.settings import Settings

pytestmark = pytest.mark.integration

MIGRATIONS = db.load_migrations()
LATEST = MIGRATIONS[-1].version


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    from argus.stack.manager import EmbeddedStack
    from argus.stack.ports import settings_for_tests

    settings = settings_for_tests(tmp_path_factory.mktemp("argus-migrations"))
    stack = EmbeddedStack(settings)
    stack.up(["postgres"])
    try:
        yield settings
    finally:
        stack.down(["postgres"])


@pytest.fixture
def fresh(pg: Settings, request: pytest.FixtureRequest) -> Settings:
    """Settings for a new, empty database named after the test."""
    node = request.node.name.lower()
    name = f"mig_{re.sub(r'[^a-z0-9_]', '_', node)[:36]}_{hashlib.sha256(node.encode()).hexdigest()[:8]}"
    s = pg.model_copy(deep=True)
    s.postgres.database = name
    with psycopg.connect(pg.postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return s


def applied(s: Settings) -> list[int]:
    with db.connect(s) as conn:
        return [r["version"] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def schema(s: Settings) -> dict[str, Any]:
    """What the migrations define: columns (type, nullability, default/generation), indexes, extensions."""
    with db.connect(s) as conn:
        cols = conn.execute(
            """SELECT table_name, column_name, data_type, is_nullable, column_default, generation_expression
               FROM information_schema.columns WHERE table_schema='public' AND table_name <> 'schema_migrations'
               ORDER BY 1, 2""").fetchall()
        idx = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname='public' "
                           "AND tablename <> 'schema_migrations' ORDER BY 1").fetchall()
        ext = conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall()
    return {"columns": [tuple(r.values()) for r in cols], "indexes": [tuple(r.values()) for r in idx],
            "extensions": [r["extname"] for r in ext]}


# ------------------------------------------------------------------------------ the files
def test_files_are_numbered_1_to_n_and_keep_their_meaning() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    assert all(m.name.startswith(f"{m.version:04d}_") and m.name.endswith(".sql") for m in MIGRATIONS)
    # versions that existed before the files did keep meaning the same thing (existing databases)
    assert "CREATE TABLE assets" in MIGRATIONS[0].sql and "CREATE EXTENSION IF NOT EXISTS vector" in MIGRATIONS[0].sql
    assert "CREATE TABLE ndd_hashes" in MIGRATIONS[1].sql
    assert "CREATE TABLE api_keys" in MIGRATIONS[2].sql
    assert "CREATE TABLE feeds" in MIGRATIONS[3].sql
    # tables older releases created at run time: adopted idempotently
    for m in MIGRATIONS[4:7]:
        creates = re.findall(r"CREATE (?:UNIQUE )?(?:TABLE|INDEX)(?! IF NOT EXISTS)", m.sql)
        assert creates == [], f"{m.name} must use IF NOT EXISTS: existing databases already have its tables"


def test_loader_refuses_gaps_duplicates_and_odd_names(tmp_path: Path) -> None:
    for names in (["0001_a.sql", "0003_c.sql"], ["0001_a.sql", "0001_b.sql"], ["0001_a.sql", "2_b.sql"]):
        d = tmp_path / "_".join(n[:4] for n in names)
        d.mkdir()
        for n in names:
            (d / n).write_text("SELECT 1;")
        with pytest.raises(ValueError):
            db.load_migrations(d)


def test_package_data_ships_the_sql_files() -> None:
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'core = ["migrations/*.sql"]' in text
    assert db.MIGRATIONS_DIR.is_dir() and len(list(db.MIGRATIONS_DIR.glob("*.sql"))) == LATEST


# ------------------------------------------------------------------------------ applying them
def test_fresh_database_gets_every_file_and_a_second_migrate_is_a_no_op(fresh: Settings) -> None:
    assert db.schema_version(fresh) == 0
    assert db.migrate(fresh) == LATEST
    assert applied(fresh) == list(range(1, LATEST + 1))
    before = schema(fresh)
    for table in ("assets", "ndd_hashes", "api_keys", "feeds", "search_model_versions", "projects",
                  "reindex_runs", "search_docs", "search_vector_meta", "asset_texts", "asset_text_embedded"):
        assert any(c[0] == table for c in before["columns"]), table
    assert ("search_docs", "tsv") in {(c[0], c[1]) for c in before["columns"]}
    assert "vector" in before["extensions"]
    with db.connect(fresh) as conn:
        stamps = conn.execute("SELECT applied_at FROM schema_migrations ORDER BY version").fetchall()
    assert db.migrate(fresh) == LATEST  # again: nothing to do
    assert applied(fresh) == list(range(1, LATEST + 1)) and schema(fresh) == before
    with db.connect(fresh) as conn:
        assert conn.execute("SELECT applied_at FROM schema_migrations ORDER BY version").fetchall() == stamps


def test_files_are_applied_in_numeric_order(fresh: Settings, tmp_path: Path) -> None:
    # every file appends its version to a log; written in reverse so the directory order is not the answer
    n = 12
    for v in range(n, 0, -1):
        sql = ("CREATE TABLE mig_log (seq bigserial PRIMARY KEY, version int NOT NULL);\n" if v == 1 else "")
        (tmp_path / f"{v:04d}_step_{v}.sql").write_text(sql + f"INSERT INTO mig_log (version) VALUES ({v});\n")
    migs = db.load_migrations(tmp_path)
    assert db.migrate(fresh, migs[:5]) == 5
    assert db.migrate(fresh, migs) == n
    with db.connect(fresh) as conn:
        assert [r["version"] for r in conn.execute("SELECT version FROM mig_log ORDER BY seq")] == list(range(1, n + 1))


def test_a_failing_migration_rolls_back_alone(fresh: Settings, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE one (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE two (x int); SELECT no_such_function();")
    migs = db.load_migrations(tmp_path)
    with pytest.raises(psycopg.Error):
        db.migrate(fresh, migs)
    assert applied(fresh) == [1]  # 0001 committed in its own transaction; 0002 left nothing behind
    with db.connect(fresh) as conn:
        assert db.scalar(conn, "SELECT to_regclass('two') IS NULL")


@pytest.mark.parametrize("k", range(1, LATEST))
def test_database_at_an_older_version_upgrades(pg: Settings, fresh: Settings, k: int) -> None:
    old = fresh
    assert db.migrate(old, MIGRATIONS[:k]) == k
    assert applied(old) == list(range(1, k + 1))
    assert db.migrate(old) == LATEST
    assert applied(old) == list(range(1, LATEST + 1))
    reference = pg.model_copy(deep=True)
    reference.postgres.database = old.postgres.database + "_ref"
    with psycopg.connect(pg.postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{reference.postgres.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{reference.postgres.database}"')
    db.migrate(reference)
    assert schema(old) == schema(reference)


# what releases before the SQL files created at run time (search sink / text embedder start), at their
# oldest: search_docs without the later columns and with a tsv that predates text_extra
LEGACY_RUNTIME_DDL = r"""
CREATE TABLE search_model_versions (model text PRIMARY KEY, active_version text NOT NULL, previous_version text,
                                    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE projects (project_id text PRIMARY KEY, name text NOT NULL, description text,
                       created_at timestamptz NOT NULL DEFAULT now());
CREATE UNIQUE INDEX projects_name ON projects (lower(name));
CREATE TABLE project_assets (project_id text NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
                             asset_id text NOT NULL REFERENCES assets(asset_id),
                             added_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (project_id, asset_id));
CREATE INDEX project_assets_asset ON project_assets (asset_id);
CREATE TABLE reindex_runs (run_id text PRIMARY KEY, model text NOT NULL, target_version text NOT NULL,
                           assets integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
                           activated_at timestamptz);
CREATE TABLE search_docs (asset_id text PRIMARY KEY, media_type text, content_type text, filename text, title text,
                          description text, source text, collection text, uploaded_at timestamptz,
                          labels text[] NOT NULL DEFAULT '{}', labels_text text,
                          models jsonb NOT NULL DEFAULT '{}', updated_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE search_docs ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(description, '')), 'B')) STORED;
CREATE INDEX search_docs_tsv ON search_docs USING gin (tsv);
CREATE INDEX search_docs_labels ON search_docs USING gin (labels);
CREATE TABLE search_vector_meta (model text NOT NULL, model_version text NOT NULL, dim integer NOT NULL,
                                 created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (model, model_version));
CREATE TABLE asset_texts (asset_id text NOT NULL, source text NOT NULL, text text NOT NULL,
                          produced_at timestamptz NOT NULL, PRIMARY KEY (asset_id, source));
CREATE TABLE asset_text_embedded (asset_id text NOT NULL, model_version text NOT NULL, text_sha256 text NOT NULL,
                                  updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (asset_id, model_version));
INSERT INTO search_docs (asset_id, title) VALUES ('a1', 'harbour at dawn');
INSERT INTO projects (project_id, name) VALUES ('prj_1', 'Picks');
INSERT INTO asset_texts (asset_id, source, text, produced_at) VALUES ('a1', 'metadata', 'harbour', now());
"""


def test_version_4_database_with_runtime_created_tables_upgrades(fresh: Settings) -> None:
    assert db.migrate(fresh, MIGRATIONS[:4]) == 4  # the last version before the tables were adopted
    with db.connect(fresh) as conn, conn.transaction():
        conn.execute(LEGACY_RUNTIME_DDL)  # type: ignore[arg-type]  # static test SQL
    assert db.migrate(fresh) == LATEST
    with db.connect(fresh) as conn:
        expr = db.scalar(conn, """SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
                                  JOIN pg_attribute a ON a.attrelid=d.adrelid AND a.attnum=d.adnum
                                  WHERE d.adrelid='search_docs'::regclass AND a.attname='tsv'""")
        assert "text_extra" in expr  # the old generated column was rebuilt
        conn.execute("UPDATE search_docs SET text_extra='breaking news' WHERE asset_id='a1'")
        assert db.scalar(conn, "SELECT tsv @@ websearch_to_tsquery('english', 'harbour breaking') "
                               "FROM search_docs WHERE asset_id='a1'")
        assert db.scalar(conn, "SELECT count(*) FROM projects") == 1  # rows kept
        assert db.scalar(conn, "SELECT count(*) FROM asset_texts") == 1
    columns = {(c[0], c[1]) for c in schema(fresh)["columns"]}
    assert {("search_docs", "text_extra"), ("search_docs", "numeric"), ("search_docs", "versions"),
            ("search_docs", "model_keys")} <= columns
    assert db.migrate(fresh) == LATEST


def test_concurrent_migrates_apply_each_file_once(fresh: Settings) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(db.migrate(fresh))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == [LATEST] * 4
    assert applied(fresh) == list(range(1, LATEST + 1))
