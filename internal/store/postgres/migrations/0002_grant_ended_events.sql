-- 0002: tell every instance when a grant ends.
--
-- An IMAP connection stays authenticated after its token is revoked, so when a user signs out on one instance, or a
-- grant turns needs_sign_in there, the connections other instances hold for that grant must close. The database
-- says so itself: a NOTIFY on the channel postern_grant_ended, payload the grant id (an opaque random id, not a
-- secret), sent at commit (PostgreSQL delivers notifications only when the transaction commits) for a deleted grant
-- or one that enters needs_sign_in. Doing it in a trigger means no code path that ends a grant can forget to.
CREATE FUNCTION postern_grant_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('postern_grant_ended', OLD.id);
    ELSIF NEW.state = 'needs_sign_in' AND OLD.state <> 'needs_sign_in' THEN
        PERFORM pg_notify('postern_grant_ended', NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER grants_ended AFTER DELETE OR UPDATE OF state ON grants
    FOR EACH ROW EXECUTE FUNCTION postern_grant_ended();
