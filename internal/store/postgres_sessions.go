package store

import (
	"context"
	"fmt"
	"time"
)

// pgSaveSessionSQL is saveSessionSQL with PostgreSQL placeholders: the same upsert that keeps created_at.
var pgSaveSessionSQL = dollar(saveSessionSQL)

// SaveSession inserts or updates a session, sealing its data; see (*SQLite).SaveSession.
func (s *Postgres) SaveSession(ctx context.Context, sess Session) error {
	keyID, sealed, err := s.sealSession(&sess)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, pgSaveSessionSQL, sess.ID, keyID, sealed,
		toNanos(sess.CreatedAt), toNanos(sess.LastSeen), toNanos(sess.ExpiresAt)); err != nil {
		return fmt.Errorf("store: save session: %w", err)
	}
	return nil
}

// Session returns the session with the given id, data opened; an expired one is ErrNotFound.
func (s *Postgres) Session(ctx context.Context, id string) (Session, error) {
	var (
		keyID                  string
		sealed                 []byte
		created, seen, expires int64
	)
	err := s.pool.QueryRow(ctx,
		"SELECT key_id, data_sealed, created_at, last_seen, expires_at FROM sessions WHERE id = $1", id,
	).Scan(&keyID, &sealed, &created, &seen, &expires)
	if pgNoRows(err) {
		return Session{}, fmt.Errorf("store: session: %w", ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("store: session: %w", err)
	}
	return s.openSession(id, keyID, sealed, created, seen, expires)
}

// TouchSession moves a session's last_seen and expires_at; ErrNotFound if it does not exist.
func (s *Postgres) TouchSession(ctx context.Context, id string, lastSeen, expiresAt time.Time) error {
	tag, err := s.pool.Exec(ctx, "UPDATE sessions SET last_seen = $1, expires_at = $2 WHERE id = $3",
		toNanos(lastSeen), toNanos(expiresAt), id)
	if err != nil {
		return fmt.Errorf("store: touch session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: touch session: %w", ErrNotFound)
	}
	return nil
}

// DeleteSession removes a session; a missing one is not an error.
func (s *Postgres) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM sessions WHERE id = $1", id); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions removes every session expired at now and returns how many.
func (s *Postgres) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM sessions WHERE expires_at <= $1", toNanos(now))
	if err != nil {
		return 0, fmt.Errorf("store: delete expired sessions: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
