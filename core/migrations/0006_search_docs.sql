-- 0006: the PostgreSQL search backend's documents (sinks/search/postgres_backend.py): one row per asset,
-- plus the dimension of each (model, version) of vectors. The per-model vector tables search_vectors_<model>
-- and their per-version HNSW indexes are runtime DDL (created when a new model version is first written).
-- Idempotent: databases created before this migration existed already have these tables, possibly from an
-- older release without the later columns (ADD COLUMN IF NOT EXISTS) or with an older tsv expression.
CREATE TABLE IF NOT EXISTS search_docs (
    asset_id     text PRIMARY KEY,
    media_type   text,
    content_type text,
    filename     text,
    title        text,
    description  text,
    source       text,
    collection   text,
    uploaded_at  timestamptz,
    labels       text[] NOT NULL DEFAULT '{}',
    labels_text  text,
    models       jsonb NOT NULL DEFAULT '{}',   -- model -> summary of the version queries use
    updated_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS text_extra text;                       -- OCR, captions
ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS numeric jsonb NOT NULL DEFAULT '{}';   -- face_count, nsfw...
ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS versions jsonb NOT NULL DEFAULT '{}';  -- merge.Versions
ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS model_keys text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS search_docs_labels ON search_docs USING gin (labels);
CREATE INDEX IF NOT EXISTS search_docs_model_keys ON search_docs USING gin (model_keys);
CREATE INDEX IF NOT EXISTS search_docs_media_type ON search_docs (media_type);
CREATE INDEX IF NOT EXISTS search_docs_source ON search_docs (source);
CREATE INDEX IF NOT EXISTS search_docs_collection ON search_docs (collection);
CREATE INDEX IF NOT EXISTS search_docs_uploaded ON search_docs (uploaded_at, asset_id);
CREATE TABLE IF NOT EXISTS search_vector_meta (
    model         text NOT NULL,
    model_version text NOT NULL,
    dim           integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, model_version)
);

-- The full-text column. A database whose tsv predates text_extra (its generation expression lacks it) gets
-- the column rebuilt; one that already has the current expression is left alone.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attrdef d
        JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        WHERE d.adrelid = 'search_docs'::regclass AND a.attname = 'tsv'
          AND pg_get_expr(d.adbin, d.adrelid) LIKE '%text_extra%'
    ) THEN
        ALTER TABLE search_docs DROP COLUMN IF EXISTS tsv;
        ALTER TABLE search_docs ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
            setweight(to_tsvector('english', coalesce(labels_text, '')), 'A') ||
            setweight(to_tsvector('english', coalesce(description, '')), 'B') ||
            setweight(to_tsvector('english', coalesce(text_extra, '')), 'B') ||
            setweight(to_tsvector('simple', regexp_replace(coalesce(filename, ''), '[._\-]+', ' ', 'g')), 'C')
        ) STORED;
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING gin (tsv);
