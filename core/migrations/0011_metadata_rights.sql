-- Embedded metadata and rights (docs/metadata.md).
--
-- 1. search_docs.meta_text: the headline, caption and keywords of an asset's metadata record, ranked like its
--    title (weight A). The generated tsv column is rebuilt to include it.
-- 2. asset_lifecycle: one row per asset that was ever killed, deleted, embargoed or edited: its state (the
--    tombstone of a killed or deleted asset, with the reason: the legal record), the embargo time and a
--    sequence number that only grows. Search, the web app, the media routes and every sink read it.
-- 3. asset_lifecycle_log: the audit trail (who, when, what; a metadata edit's old -> new values).
-- 4. asset_metadata_edits: the current edited fields of an asset (they win over the embedded record).

ALTER TABLE search_docs ADD COLUMN IF NOT EXISTS meta_text text;
DROP INDEX IF EXISTS search_docs_tsv;
ALTER TABLE search_docs DROP COLUMN IF EXISTS tsv;
ALTER TABLE search_docs ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(labels_text, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(meta_text, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(description, '')), 'B') ||
    setweight(to_tsvector('english', coalesce(text_extra, '')), 'B') ||
    setweight(to_tsvector('simple', regexp_replace(coalesce(filename, ''), '[._\-]+', ' ', 'g')), 'C')
) STORED;
CREATE INDEX IF NOT EXISTS search_docs_tsv ON search_docs USING gin (tsv);

CREATE TABLE IF NOT EXISTS asset_lifecycle (
    asset_id      text PRIMARY KEY,
    state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'killed', 'deleted')),
    embargo_until timestamptz,
    reason        text,
    actor         text,
    seq           bigint NOT NULL DEFAULT 1,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- what search hides: few rows (tombstones and embargoes), read on every query
CREATE INDEX IF NOT EXISTS asset_lifecycle_hidden ON asset_lifecycle (asset_id)
    WHERE state <> 'active' OR embargo_until IS NOT NULL;

CREATE TABLE IF NOT EXISTS asset_lifecycle_log (
    id         bigserial PRIMARY KEY,
    asset_id   text NOT NULL,
    seq        bigint NOT NULL,
    action     text NOT NULL,
    reason     text,
    actor      text,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb,
    at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, seq)
);

CREATE TABLE IF NOT EXISTS asset_metadata_edits (
    asset_id   text PRIMARY KEY,
    fields     jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
