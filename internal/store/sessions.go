package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// saveSessionSQL inserts or replaces a session, keeping the original
// created_at so the absolute lifetime cannot be extended by saving again.
const saveSessionSQL = `INSERT INTO sessions (id, key_id, data_sealed, created_at, last_seen, expires_at)
	VALUES (?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET
		key_id = excluded.key_id, data_sealed = excluded.data_sealed,
		last_seen = excluded.last_seen, expires_at = excluded.expires_at`

// sessionAAD binds sealed session data to its session id.
func sessionAAD(id string) []byte { return []byte("session:" + id) }

// Session ids are bearer secrets (whoever has one is signed in), so no error
// or log line in this file includes one.

// SaveSession inserts or updates a session, sealing its data. ExpiresAt is
// required: a session without an end would never be swept. A zero CreatedAt
// or LastSeen is set to now; on update the stored CreatedAt is kept.
func (s *SQLite) SaveSession(ctx context.Context, sess Session) error {
	keyID, sealed, err := s.sealSession(&sess)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, saveSessionSQL, sess.ID, keyID, sealed,
		toNanos(sess.CreatedAt), toNanos(sess.LastSeen), toNanos(sess.ExpiresAt)); err != nil {
		return fmt.Errorf("store: save session: %w", err)
	}
	return nil
}

// sealSession checks sess for SaveSession, fills in its defaults and seals its data: both drivers' one rule.
func (s *codec) sealSession(sess *Session) (keyID string, sealed []byte, err error) {
	if sess.ID == "" {
		return "", nil, errors.New("store: save session: empty id")
	}
	if sess.ExpiresAt.IsZero() {
		return "", nil, errors.New("store: save session: no expiry")
	}
	now := s.now()
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = now
	}
	if sess.LastSeen.IsZero() {
		sess.LastSeen = now
	}
	keyID, sealed = s.sealer.CurrentKeyID(), []byte{}
	if len(sess.Data) > 0 {
		keyID, sealed, err = s.sealer.Seal(sess.Data, sessionAAD(sess.ID))
		if err != nil {
			return "", nil, fmt.Errorf("store: save session: %w", err)
		}
	}
	return keyID, sealed, nil
}

// Session returns the session with the given id, data opened. An expired
// session is reported as ErrNotFound even before DeleteExpiredSessions sweeps
// it, so expiry holds regardless of how often the sweeper runs.
func (s *SQLite) Session(ctx context.Context, id string) (Session, error) {
	var (
		keyID                  string
		sealed                 []byte
		created, seen, expires int64
	)
	err := s.queryRow(ctx,
		"SELECT key_id, data_sealed, created_at, last_seen, expires_at FROM sessions WHERE id = ?", id,
	).Scan(&keyID, &sealed, &created, &seen, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("store: session: %w", ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("store: session: %w", err)
	}
	return s.openSession(id, keyID, sealed, created, seen, expires)
}

// openSession is the read half of both drivers' Session: expiry judged on read, data opened.
func (s *codec) openSession(id, keyID string, sealed []byte, created, seen, expires int64) (Session, error) {
	if expires <= toNanos(s.now()) {
		return Session{}, fmt.Errorf("store: session: expired: %w", ErrNotFound)
	}
	sess := Session{ID: id, CreatedAt: fromNanos(created), LastSeen: fromNanos(seen), ExpiresAt: fromNanos(expires)}
	if len(sealed) > 0 {
		var err error
		sess.Data, err = s.sealer.Open(keyID, sealed, sessionAAD(id))
		if err != nil {
			return Session{}, fmt.Errorf("store: session: open data: %w", err)
		}
	}
	return sess, nil
}

// TouchSession moves a session's last_seen and expires_at without re-sealing
// its data, for idle-timeout bookkeeping on requests that change nothing
// else. It returns ErrNotFound if the session does not exist.
func (s *SQLite) TouchSession(ctx context.Context, id string, lastSeen, expiresAt time.Time) error {
	res, err := s.db.ExecContext(ctx, "UPDATE sessions SET last_seen = ?, expires_at = ? WHERE id = ?",
		toNanos(lastSeen), toNanos(expiresAt), id)
	if err != nil {
		return fmt.Errorf("store: touch session: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: touch session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("store: touch session: %w", ErrNotFound)
	}
	return nil
}

// DeleteSession removes a session; deleting a missing session is not an
// error, so sign-out is idempotent.
func (s *SQLite) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM sessions WHERE id = ?", id); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions removes every session whose expiry is at or before
// now and returns how many it removed. It uses the sessions_expiry index.
func (s *SQLite) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at <= ?", toNanos(now))
	if err != nil {
		return 0, fmt.Errorf("store: delete expired sessions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: delete expired sessions: %w", err)
	}
	return int(n), nil
}
