-- 0009: people (sinks/people_sink.py, sinks/people/, retrieval/people/; docs/people.md). Faces with their
-- descriptors, persons, curation memory and the audit log. A descriptor is biometric data: it lives only in
-- people_faces.descriptor (and the object faces/<ref>), and forgetting a person deletes both.
CREATE TABLE people_persons (
    person_id     text PRIMARY KEY,                 -- p-<sha256(first face id)[:16]>: the same on a replay
    name          text,
    confirmed     boolean NOT NULL DEFAULT false,   -- named or curated by a user: re-clustering never moves its faces
    hidden        boolean NOT NULL DEFAULT false,
    cover_face_id text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX people_persons_name ON people_persons (lower(name));

CREATE TABLE people_faces (
    face_id        text PRIMARY KEY,                -- <annotation id>-<index in the payload>
    annotation_id  text NOT NULL,
    asset_id       text NOT NULL,
    model_version  text NOT NULL,
    keyframe_ms    integer,
    face_index     integer NOT NULL,
    box            jsonb NOT NULL,                  -- x1,y1,x2,y2 normalised to the frame
    score          real NOT NULL,
    size_px        real NOT NULL,
    sharpness      real NOT NULL,
    recognisable   boolean NOT NULL,
    descriptor_ref text,
    descriptor     vector(128),                     -- NULL: a detection only (small, blurred, recognition off)
    person_id      text,
    assigned_by    text NOT NULL DEFAULT 'none' CHECK (assigned_by IN ('none', 'auto', 'cluster', 'user')),
    removed        boolean NOT NULL DEFAULT false,  -- a user took it out of a person: never assigned automatically
    produced_at    timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX people_faces_asset ON people_faces (asset_id);
CREATE INDEX people_faces_person ON people_faces (person_id, asset_id);
CREATE INDEX people_faces_annotation ON people_faces (annotation_id);
CREATE INDEX people_faces_descriptor ON people_faces USING hnsw (descriptor vector_l2_ops);

-- faces whose data was deleted (a forgotten person, a removed asset): a replay never brings them back
CREATE TABLE people_tombstones (
    face_id     text PRIMARY KEY,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- per-collection privacy switch (the global one is people.enabled)
CREATE TABLE people_collections (
    collection  text PRIMARY KEY,
    recognition boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- the sink's counters (new clusterable faces since the last re-clustering)
CREATE TABLE people_state (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);

-- every curation action, with the state it replaced (undo restores it)
CREATE TABLE people_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text,
    action     text NOT NULL,
    person_id  text,
    detail     jsonb NOT NULL DEFAULT '{}',
    undo       jsonb,                               -- NULL: cannot be undone (forget)
    undone_at  timestamptz
);
CREATE INDEX people_audit_person ON people_audit (person_id, id);
