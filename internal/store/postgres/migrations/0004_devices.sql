-- 0004: device grants and device passwords, the PostgreSQL twin of migrations/0002_devices.sql.
--
-- grants.kind says which policy ends a grant: 'web' grants belong to a browser session (idle timeout, lifetime,
-- sign-out), 'device' grants to one mail client (ended only by revoking the device, by the IdP, or after the long
-- device lifetime). Existing rows are browser grants.
--
-- devices holds one mail client's password, only as an argon2id hash in PHC string form
-- ($argon2id$v=19$m=…,t=…,p=…$salt$hash), so the parameters travel with the hash and can be raised later. The id is
-- also the first group of the password, so a login finds its row by primary key without trying every hash.
ALTER TABLE grants ADD COLUMN kind text NOT NULL DEFAULT 'web';

CREATE TABLE devices (
    id               text    NOT NULL PRIMARY KEY,
    issuer           text    NOT NULL,
    subject          text    NOT NULL,
    address          text    NOT NULL, -- the user's mail address, lower case: the bridge's username
    name             text    NOT NULL,
    grant_id         text    NOT NULL, -- the device's own grant (kind 'device')
    password_hash    text    NOT NULL, -- argon2id PHC string, never the password
    created_at       bigint  NOT NULL,
    last_used_at     bigint  NOT NULL DEFAULT 0,
    last_used_ip     text    NOT NULL DEFAULT '',
    last_used_client text    NOT NULL DEFAULT '', -- IMAP ID / SMTP client string, as sent (display only)
    revoked_at       bigint  NOT NULL DEFAULT 0  -- 0 = live
);

-- The Devices page lists one user's devices.
CREATE INDEX devices_owner ON devices (issuer, subject, created_at);
