-- 0002: device grants and device passwords (issue 11).
--
-- grants.kind says which policy ends a grant: 'web' grants belong to a browser session (idle timeout, lifetime,
-- sign-out), 'device' grants to one mail client (ended only by revoking the device, by the IdP, or after the long
-- device lifetime). Existing rows are browser grants.
--
-- devices holds one mail client's password, only as an argon2id hash in PHC string form
-- ($argon2id$v=19$m=…,t=…,p=…$salt$hash), so the parameters travel with the hash and can be raised later. The id is
-- also the first group of the password, so a login finds its row by primary key without trying every hash.
ALTER TABLE grants ADD COLUMN kind TEXT NOT NULL DEFAULT 'web';

CREATE TABLE devices (
    id               TEXT    NOT NULL PRIMARY KEY,
    issuer           TEXT    NOT NULL,
    subject          TEXT    NOT NULL,
    address          TEXT    NOT NULL, -- the user's mail address, lower case: the bridge's username
    name             TEXT    NOT NULL,
    grant_id         TEXT    NOT NULL, -- the device's own grant (kind 'device')
    password_hash    TEXT    NOT NULL, -- argon2id PHC string, never the password
    created_at       INTEGER NOT NULL,
    last_used_at     INTEGER NOT NULL DEFAULT 0,
    last_used_ip     TEXT    NOT NULL DEFAULT '',
    last_used_client TEXT    NOT NULL DEFAULT '', -- IMAP ID / SMTP client string, as sent (display only)
    revoked_at       INTEGER NOT NULL DEFAULT 0  -- 0 = live
);

-- The Devices page lists one user's devices.
CREATE INDEX devices_owner ON devices (issuer, subject, created_at);
