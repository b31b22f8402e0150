-- 0015: meaning search over transcript segments (docs/video.md "Meaning search"). One MiniLM vector per
-- search_moments row, keyed to the text model and its version (embed_model = "text_embed:<version>", as the
-- transcript's vector_model says). Written by the search sink in the transaction that replaces the segments
-- (sinks/search/moments.py): the vectors arrive inside the transcript event (embedded by the speech processor),
-- so the transaction makes no network call; ON DELETE CASCADE drops them with the segments they belong to.
-- Untyped vector column (a text model of another size can follow); each embed_model gets a partial HNSW index on
-- the cast when first written (like search_frame_vectors in 0012).
CREATE TABLE IF NOT EXISTS search_moment_vectors (
    asset_id      text NOT NULL,
    model         text NOT NULL,
    model_version text NOT NULL,
    seq           integer NOT NULL,
    embed_model   text NOT NULL,
    embedding     vector NOT NULL,
    PRIMARY KEY (asset_id, model, model_version, seq),
    FOREIGN KEY (asset_id, model, model_version, seq)
        REFERENCES search_moments (asset_id, model, model_version, seq) ON DELETE CASCADE
);
