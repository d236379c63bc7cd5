-- Uploaded notifiers: one row per scheme, one per immutable version.
-- Written for PostgreSQL and SQLite alike: BYTEA is PostgreSQL's binary
-- type, and SQLite keeps blobs as blobs in a column of that name.
CREATE TABLE notifiers (
    scheme TEXT PRIMARY KEY NOT NULL,
    -- The owning tenant; NULL for the operator's.
    tenant TEXT,
    -- The version deliveries run; NULL until one is activated.
    active_version BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE notifier_versions (
    scheme TEXT NOT NULL REFERENCES notifiers (scheme) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    component BYTEA NOT NULL,
    -- JSON: the component's imports, the hosts granted, the limit overrides.
    imports TEXT NOT NULL,
    allow_hosts TEXT NOT NULL,
    limits TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scheme, version)
);

CREATE INDEX notifiers_by_tenant ON notifiers (tenant);
