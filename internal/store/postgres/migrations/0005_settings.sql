-- 0005: per-user settings, the PostgreSQL twin of migrations/0003_settings.sql.
--
-- One row per person, keyed like devices by the OIDC identity (issuer, subject: OIDC Core §2, the only stable one),
-- so settings survive sign-outs and follow the user to every browser. A missing row means "all defaults".
-- remote_senders is the allowlist, one lower-case address or domain per line (at most a few hundred entries,
-- checked in Go), read and written whole. conversations is a bigint 0/1 rather than boolean so that both drivers
-- scan the row with the same code.
CREATE TABLE settings (
    issuer         text   NOT NULL,
    subject        text   NOT NULL,
    display_name   text   NOT NULL DEFAULT '', -- '' = the name the IdP gives
    signature      text   NOT NULL DEFAULT '', -- plain text, without the "-- " separator
    time_zone      text   NOT NULL DEFAULT '', -- an IANA name such as Europe/Berlin; '' = the browser's
    page_size      bigint NOT NULL DEFAULT 0,  -- messages per list page; 0 = the server's default
    conversations  bigint NOT NULL DEFAULT 1,  -- 1 = group the list into conversations, 0 = one row per message
    remote_senders text   NOT NULL DEFAULT '',
    updated_at     bigint NOT NULL,
    PRIMARY KEY (issuer, subject)
);
