-- 0014: webhooks for subscribers without Kafka (sinks/webhook_sink.py, docs/interfaces.md): registered URLs and one
-- delivery row per (webhook, assets.annotated event), enqueued in the sink's transaction with its offsets, then
-- POSTed (HMAC-signed), retried with backoff and dead-lettered (status 'dead') after webhooks.max_attempts.

CREATE TABLE IF NOT EXISTS webhooks (
    webhook_id   text PRIMARY KEY,
    url          text NOT NULL,
    secret       text NOT NULL,              -- the HMAC-SHA256 key (shown once at registration; needed to sign)
    description  text,
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    webhook_id       text NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    event_id         text NOT NULL,          -- the assets.annotated event id: a redelivery carries the same id
    asset_id         text NOT NULL,
    payload          bytea NOT NULL,         -- the event's bytes as on the topic
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),  -- also the lease while an attempt is in flight
    last_status      integer,                -- the receiver's HTTP status of the last attempt
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    PRIMARY KEY (webhook_id, event_id)
);

CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
