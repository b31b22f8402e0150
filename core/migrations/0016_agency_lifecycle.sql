-- 0016: agency lifecycle notices (docs/metadata.md, producers/agency.py, sinks/lifecycle_sink.py).
--
-- 1. agency_items: which asset(s) an agency item (ninjs uri / NewsML-G2 guid) delivered; written by the agency
--    producer BEFORE the asset is ingested (the media's sha256 is the asset id), so a crash between the two never
--    leaves an ingested item that a later "canceled" notice cannot find. One item may deliver several assets
--    (a corrected version with a new picture).
-- 2. lifecycle_requests: the lifecycle requests (kill / withhold / release) the lifecycle sink applied, keyed by
--    the request's deterministic id, written in the transaction that applies it and stores the consumed offsets:
--    a redelivered or replayed request finds its row and changes nothing (exactly once).

CREATE TABLE IF NOT EXISTS agency_items (
    item_uri   text NOT NULL,
    asset_id   text NOT NULL,
    format     text NOT NULL,          -- ninjs | newsml
    source     text,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_uri, asset_id)
);
CREATE INDEX IF NOT EXISTS agency_items_asset ON agency_items (asset_id);

CREATE TABLE IF NOT EXISTS lifecycle_requests (
    request_id text PRIMARY KEY,
    asset_id   text NOT NULL,
    action     text NOT NULL,
    actor      text,
    reason     text,
    outcome    text NOT NULL,          -- applied | already killed | unknown asset | refused: ...
    seq        bigint,                 -- the asset's lifecycle seq the request produced (applied only)
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS lifecycle_requests_asset ON lifecycle_requests (asset_id);
