-- 0003: one rate cap for all instances.
--
-- Each refresh costs Authelia CPU (a pbkdf2 client-secret check, ~0.3 s), so the background refresher spaces its
-- token-endpoint calls. With several instances the cap must be global, not one per instance: the next free slot of
-- each named limit is a row, and reserving a slot is one upsert that moves it on (see RateLimiter).
CREATE TABLE rate_slots (
    name    text   NOT NULL PRIMARY KEY,
    next_at bigint NOT NULL -- unix nanoseconds of the first free slot
);
