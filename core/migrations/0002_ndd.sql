-- 0002: the near-duplicate (NDD) index's tables, written by the ndd sink (sinks/ndd_sink.py).
-- ndd_hashes: one row per (asset, algorithm), the exactly-once unit the ndd sink writes. seq comes from a
-- sequence and is bumped on every insert or replacement: the API's in-memory index remembers the highest seq
-- it loaded (its checkpoint) and loads only rows above it.
-- ndd_frames: a video's sampled frame hashes, replaced together with their parent row.

CREATE SEQUENCE ndd_seq;

CREATE TABLE ndd_hashes (
    id            bigserial PRIMARY KEY,
    seq           bigint NOT NULL DEFAULT nextval('ndd_seq'),
    asset_id      text NOT NULL REFERENCES assets(asset_id),
    algorithm     text NOT NULL,               -- 'pdq'
    model_version text NOT NULL,
    annotation_id text NOT NULL,
    media_type    text NOT NULL,
    hash          bytea,                        -- images: 32 bytes (videos: NULL, see ndd_frames)
    quality       smallint NOT NULL,
    interval_ms   integer,
    duration_ms   integer,
    n_frames      integer NOT NULL DEFAULT 0,
    produced_at   timestamptz NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, algorithm)
);
CREATE INDEX ndd_hashes_seq ON ndd_hashes (seq);
CREATE INDEX ndd_hashes_hash ON ndd_hashes (hash) WHERE hash IS NOT NULL;  -- exact (distance 0) lookups

CREATE TABLE ndd_frames (
    hash_id  bigint NOT NULL REFERENCES ndd_hashes(id) ON DELETE CASCADE,
    t_ms     integer NOT NULL,
    hash     bytea NOT NULL,
    quality  smallint NOT NULL,
    PRIMARY KEY (hash_id, t_ms)
);
