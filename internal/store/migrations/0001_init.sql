-- 0001: grants and sessions.
--
-- Portable by design: a PostgreSQL implementation uses the same tables with
-- BLOB -> bytea and INTEGER -> bigint. Times are unix nanoseconds UTC in
-- INTEGER columns (0 = unset), never dialect-specific timestamp types, so both
-- implementations compare and order them the same way. Sealed columns hold
-- nonce||ciphertext from internal/seal; an empty blob is an empty token.

CREATE TABLE grants (
    id              TEXT    NOT NULL PRIMARY KEY,
    issuer          TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    email           TEXT    NOT NULL,
    username        TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    key_id          TEXT    NOT NULL, -- seal key of the three *_sealed columns
    access_sealed   BLOB    NOT NULL,
    refresh_sealed  BLOB    NOT NULL,
    id_sealed       BLOB    NOT NULL,
    access_expiry   INTEGER NOT NULL,
    refresh_expiry  INTEGER NOT NULL,
    state           TEXT    NOT NULL, -- ok | degraded | needs_sign_in
    last_error      TEXT    NOT NULL, -- a reason class, never a token
    fail_count      INTEGER NOT NULL,
    version         INTEGER NOT NULL, -- optimistic concurrency, bumped per update
    last_refresh    INTEGER NOT NULL,
    last_active     INTEGER NOT NULL,
    next_refresh_at INTEGER NOT NULL,
    lease_owner     TEXT    NOT NULL DEFAULT '', -- '' = no refresher holds it
    lease_until     INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- The refresher's work queue. Partial, because grants that need a new sign-in
-- are never refreshed and would only bloat the queue. id and state ride along
-- so the due-list query is answered from the index alone (SQLite does not
-- count a partial index's WHERE columns as covered unless they are indexed).
CREATE INDEX grants_due ON grants (next_refresh_at, id, state) WHERE state IN ('ok', 'degraded');

-- Sign-in finds an existing grant for the same person at the same issuer.
CREATE INDEX grants_identity ON grants (issuer, subject);

CREATE TABLE sessions (
    id          TEXT    NOT NULL PRIMARY KEY,
    key_id      TEXT    NOT NULL,
    data_sealed BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE INDEX sessions_expiry ON sessions (expires_at);
