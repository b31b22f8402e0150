"""PostgreSQL: the system of record (assets, outbox, annotations, sink offsets, dead letters).

Migrations are plain SQL applied in order inside one transaction each, recorded in
``schema_migrations``; an advisory lock lets several processes start at once safely.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import DictRow, dict_row

from core.extra_schema import API_KEYS_SCHEMA, FEEDS_SCHEMA
from core.ndd_schema import NDD_SCHEMA
from core.settings import Settings

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE EXTENSION IF NOT EXISTS vector;

        CREATE TABLE assets (
            asset_id     text PRIMARY KEY,            -- sha256 of the content
            bucket       text NOT NULL,
            object_key   text NOT NULL,
            media_type   text NOT NULL,
            content_type text NOT NULL,
            size_bytes   bigint NOT NULL,
            filename     text NOT NULL,
            title        text,
            description  text,
            source       text,
            collection   text,
            uploaded_at  timestamptz NOT NULL DEFAULT now()
        );

        -- Transactional outbox: written with the asset row, published to Kafka by the relay.
        CREATE TABLE outbox (
            id           bigserial PRIMARY KEY,
            event_id     text NOT NULL UNIQUE,
            topic        text NOT NULL,
            key          text NOT NULL,
            payload      bytea NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz
        );
        CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

        CREATE TABLE annotations (
            annotation_id text PRIMARY KEY,          -- hash(asset, model, version, keyframe)
            asset_id      text NOT NULL REFERENCES assets(asset_id),
            model         text NOT NULL,
            model_version text NOT NULL,
            keyframe_ms   integer,
            payload       jsonb NOT NULL,
            produced_at   timestamptz NOT NULL,
            applied_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX annotations_asset ON annotations (asset_id);

        CREATE TABLE asset_model_status (
            asset_id      text NOT NULL REFERENCES assets(asset_id),
            model         text NOT NULL,
            model_version text,
            status        text NOT NULL CHECK (status IN ('done', 'failed')),
            reason        text,
            updated_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (asset_id, model)
        );

        -- Each sink's consumed position, committed in the same transaction as its writes.
        CREATE TABLE sink_offsets (
            sink        text NOT NULL,
            topic       text NOT NULL,
            partition   integer NOT NULL,
            next_offset bigint NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (sink, topic, partition)
        );

        CREATE TABLE dead_letters (
            event_id      text PRIMARY KEY,
            stage         text NOT NULL,
            reason        text NOT NULL,
            error_type    text NOT NULL,
            asset_id      text,
            model         text,
            source_topic  text,
            source_partition integer,
            source_offset bigint,
            raw_value     text,
            created_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX dead_letters_asset ON dead_letters (asset_id);
        """,
    ),
    (2, NDD_SCHEMA),  # near-duplicate hashes (core/ndd_schema.py)
    (3, API_KEYS_SCHEMA),  # hashed API keys with scopes (core/auth.py)
    (4, FEEDS_SCHEMA),  # feed poller: validators + seen items (producers/feed_poller.py)
]


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


def migrate(settings: Settings) -> int:
    """Apply pending migrations; returns the schema version. Safe to call from many processes."""
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz DEFAULT now())"  # noqa: E501
        )
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7245501)")
            done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in MIGRATIONS:
                if version in done:
                    continue
                conn.execute(sql)  # type: ignore[arg-type]  # trusted, static SQL
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        from sinks.search import get_search_index

        get_search_index(settings).ensure_schema()
        return max(v for v, _ in MIGRATIONS)


def scalar(conn: Conn, query: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
    """The first column of the first row (queries that always return one row, e.g. count(*))."""
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None, query
    return next(iter(row.values()))
