-- 0003: API keys: only the SHA-256 of each token is stored (core/auth.py)
CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    key_hash     text NOT NULL UNIQUE,
    scopes       text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'upload', 'admin']::text[] AND cardinality(scopes) > 0),
    name         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
