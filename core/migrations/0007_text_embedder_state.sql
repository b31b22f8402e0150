-- 0007: the text-embedding processor's state (processors/text_embedder.py): each source's text per asset
-- (metadata or a model; newest wins) and the hash of the text last embedded per asset and model version.
-- IF NOT EXISTS: databases created before this migration existed already have these tables.
CREATE TABLE IF NOT EXISTS asset_texts (
    asset_id    text NOT NULL,
    source      text NOT NULL,              -- 'metadata' or a model name
    text        text NOT NULL,
    produced_at timestamptz NOT NULL,
    PRIMARY KEY (asset_id, source)
);
CREATE TABLE IF NOT EXISTS asset_text_embedded (
    asset_id      text NOT NULL,
    model_version text NOT NULL,
    text_sha256   text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, model_version)
);
