-- 0001: grants and sessions, the PostgreSQL twin of migrations/0001_init.sql.
--
-- Same tables, same columns, same meaning: BLOB -> bytea, INTEGER -> bigint. Times stay unix nanoseconds UTC in
-- bigint columns (0 = unset) rather than timestamptz, so both drivers compare, order and round-trip them
-- identically (timestamptz keeps microseconds only) and the contract tests hold both to the same values.

CREATE TABLE grants (
    id              text   NOT NULL PRIMARY KEY,
    issuer          text   NOT NULL,
    subject         text   NOT NULL,
    email           text   NOT NULL,
    username        text   NOT NULL,
    name            text   NOT NULL,
    key_id          text   NOT NULL, -- seal key of the three *_sealed columns
    access_sealed   bytea  NOT NULL,
    refresh_sealed  bytea  NOT NULL,
    id_sealed       bytea  NOT NULL,
    access_expiry   bigint NOT NULL,
    refresh_expiry  bigint NOT NULL,
    state           text   NOT NULL, -- ok | degraded | needs_sign_in
    last_error      text   NOT NULL, -- a reason class, never a token
    fail_count      bigint NOT NULL,
    version         bigint NOT NULL, -- optimistic concurrency, bumped per update
    last_refresh    bigint NOT NULL,
    last_active     bigint NOT NULL,
    next_refresh_at bigint NOT NULL,
    lease_owner     text   NOT NULL DEFAULT '', -- '' = no refresher holds it
    lease_until     bigint NOT NULL DEFAULT 0,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);

-- The refresher's work queue; partial, like SQLite's, because needs_sign_in grants are never refreshed.
CREATE INDEX grants_due ON grants (next_refresh_at, id) WHERE state IN ('ok', 'degraded');

-- Sign-in finds an existing grant for the same person at the same issuer.
CREATE INDEX grants_identity ON grants (issuer, subject);

CREATE TABLE sessions (
    id          text   NOT NULL PRIMARY KEY,
    key_id      text   NOT NULL,
    data_sealed bytea  NOT NULL,
    created_at  bigint NOT NULL,
    last_seen   bigint NOT NULL,
    expires_at  bigint NOT NULL
);

CREATE INDEX sessions_expiry ON sessions (expires_at);
