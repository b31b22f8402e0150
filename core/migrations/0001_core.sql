-- 0001: the core tables (assets, outbox, annotations, model status, sink offsets, dead letters).

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
