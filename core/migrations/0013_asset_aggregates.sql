-- 0013: the per-asset aggregate (sinks/aggregate_sink.py): what it knows of each asset and each model's outcome,
-- written in the same transaction as its consumed offsets; the `assets.annotated` events go out through the outbox.

CREATE TABLE IF NOT EXISTS asset_aggregates (
    asset_id          text PRIMARY KEY,
    media_type        text NOT NULL,
    expected          text[] NOT NULL,          -- the active models for this media type when the upload was read
    metadata          jsonb NOT NULL,           -- filename, content type, size, title, description, source, ...
    uploaded_at       timestamptz NOT NULL,     -- the upload event's time
    emitted_event_id  text,                     -- the last assets.annotated event written to the outbox
    emitted_at        timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS asset_aggregates_pending ON asset_aggregates (uploaded_at) WHERE emitted_event_id IS NULL;

-- one row per asset and model (videos: the summary, not the keyframes); newest wins, a failure never over a result
CREATE TABLE IF NOT EXISTS asset_aggregate_models (
    asset_id      text NOT NULL,
    model         text NOT NULL,
    status        text NOT NULL CHECK (status IN ('done', 'failed')),
    model_version text,
    annotation_id text,
    produced_at   timestamptz NOT NULL,
    compact       jsonb NOT NULL DEFAULT '{}'::jsonb,   -- labels, text, numeric, embedding reference
    reason        text,
    PRIMARY KEY (asset_id, model)
);
