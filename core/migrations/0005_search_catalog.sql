-- 0005: search-side tables that live in PostgreSQL whichever engine holds the index (sinks/search/catalog.py):
-- the active version per model, projects (user collections search can be restricted to), reindex runs.
-- IF NOT EXISTS: databases created before this migration existed already have these tables.
CREATE TABLE IF NOT EXISTS search_model_versions (
    model            text PRIMARY KEY,
    active_version   text NOT NULL,
    previous_version text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS projects (
    project_id  text PRIMARY KEY,
    name        text NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS projects_name ON projects (lower(name));
CREATE TABLE IF NOT EXISTS project_assets (
    project_id text NOT NULL REFERENCES projects(project_id) ON DELETE CASCADE,
    asset_id   text NOT NULL REFERENCES assets(asset_id),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, asset_id)
);
CREATE INDEX IF NOT EXISTS project_assets_asset ON project_assets (asset_id);
CREATE TABLE IF NOT EXISTS reindex_runs (
    run_id         text PRIMARY KEY,
    model          text NOT NULL,
    target_version text NOT NULL,
    assets         integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    activated_at   timestamptz
);
