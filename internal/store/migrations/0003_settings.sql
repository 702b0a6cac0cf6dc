-- 0003: per-user settings (issue 15): display name, signature, time zone, page size, conversations, and the senders
-- whose remote content is always shown.
--
-- One row per person, keyed like devices by the OIDC identity (issuer, subject: OIDC Core §2, the only stable one),
-- so settings survive sign-outs and follow the user to every browser. A missing row means "all defaults".
-- remote_senders is the allowlist, one lower-case address or domain per line (at most a few hundred entries,
-- checked in Go), read and written whole.
CREATE TABLE settings (
    issuer         TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    display_name   TEXT    NOT NULL DEFAULT '', -- '' = the name the IdP gives
    signature      TEXT    NOT NULL DEFAULT '', -- plain text, without the "-- " separator
    time_zone      TEXT    NOT NULL DEFAULT '', -- an IANA name such as Europe/Berlin; '' = the browser's
    page_size      INTEGER NOT NULL DEFAULT 0,  -- messages per list page; 0 = the server's default
    conversations  INTEGER NOT NULL DEFAULT 1,  -- 1 = group the list into conversations, 0 = one row per message
    remote_senders TEXT    NOT NULL DEFAULT '',
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
);
