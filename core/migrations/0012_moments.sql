-- 0012: moments, the time-coded side of search (docs/video.md). They live in PostgreSQL whichever engine holds
-- the asset index (like the catalog tables of 0005): written by the search sink in the transaction that stores
-- its offsets (sinks/search/moments.py), read by retrieval/search/moments.py.
--
-- search_moments: one row per transcript segment of an asset (speech), newest transcript per (asset, model,
-- version) wins; 'simple' text search configuration (no stemming: transcripts come in any language, and a
-- quoted phrase must match the words spoken).
CREATE TABLE IF NOT EXISTS search_moments (
    asset_id      text NOT NULL,
    model         text NOT NULL,
    model_version text NOT NULL,
    seq           integer NOT NULL,
    start_ms      integer NOT NULL,
    end_ms        integer NOT NULL,
    text          text NOT NULL,
    language      text,
    produced_at   timestamptz NOT NULL,
    annotation_id text NOT NULL,
    tsv           tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    PRIMARY KEY (asset_id, model, model_version, seq)
);
CREATE INDEX IF NOT EXISTS search_moments_tsv ON search_moments USING gin (tsv);
CREATE INDEX IF NOT EXISTS search_moments_language ON search_moments (language);

-- search_frame_vectors: one embedding per video keyframe and model version (the per-asset vector stays in
-- search_vectors_<model>): "more like this" answers a video and a time. Untyped vector column (models differ in
-- size); each (model, version) gets a partial HNSW index on the cast when first written (like 0006's tables).
CREATE TABLE IF NOT EXISTS search_frame_vectors (
    asset_id      text NOT NULL,
    model         text NOT NULL,
    model_version text NOT NULL,
    t_ms          integer NOT NULL,
    embedding     vector NOT NULL,
    produced_at   timestamptz NOT NULL,
    annotation_id text NOT NULL,
    PRIMARY KEY (asset_id, model, model_version, t_ms)
);
