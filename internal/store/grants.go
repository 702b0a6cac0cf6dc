package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// grantColumns is the column list every grant read selects, in scanGrant's
// order. Lease columns are deliberately absent: they belong to ClaimLease and
// ReleaseLease alone.
const grantColumns = `id, issuer, subject, email, username, name, key_id,
	access_sealed, refresh_sealed, id_sealed, access_expiry, refresh_expiry,
	state, last_error, fail_count, version, last_refresh, last_active,
	next_refresh_at, created_at, updated_at, kind`

// insertGrantSQL creates a grant; its arguments come from insertGrantArgs.
const insertGrantSQL = `INSERT INTO grants (` + grantColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// updateGrantSQL is the compare-and-swap at the heart of token safety: it
// only matches the row at the version the caller read. Issuer, subject and
// created_at are fixed at creation and not written. last_active only moves
// forward, because TouchGrant changes it without bumping the version and a
// refresher's older copy must not roll a page view back.
const updateGrantSQL = `UPDATE grants SET
	email = ?, username = ?, name = ?, key_id = ?,
	access_sealed = ?, refresh_sealed = ?, id_sealed = ?,
	access_expiry = ?, refresh_expiry = ?, state = ?, last_error = ?,
	fail_count = ?, version = version + 1, last_refresh = ?,
	last_active = MAX(last_active, ?), next_refresh_at = ?, updated_at = ?
	WHERE id = ? AND version = ?
	RETURNING issuer, subject, last_active, created_at, version, kind`

// dueGrantsSQL lists the refresher's work. Its WHERE clause repeats the
// grants_due index's condition word for word: SQLite only uses a partial
// index when the query provably implies it, and TestDueGrantsUsesIndex holds
// it to a covering-index search.
const dueGrantsSQL = `SELECT id FROM grants
	WHERE next_refresh_at <= ? AND state IN ('ok', 'degraded')
	ORDER BY next_refresh_at LIMIT ?`

// sealedTokens is the at-rest form of a grant's three tokens.
type sealedTokens struct {
	keyID                  string
	access, refresh, idTok []byte
}

// grantAAD binds a sealed token to its grant and column, so a blob copied to
// another row or column does not open.
func grantAAD(id, column string) []byte {
	return []byte("grant:" + id + ":" + column)
}

// sealTokens seals g's tokens under the current key. All three share one key
// id, so re-sealing on every update migrates a grant to the newest key: key
// rotation completes by itself as grants refresh.
func (s *codec) sealTokens(g *Grant) (sealedTokens, error) {
	t := sealedTokens{keyID: s.sealer.CurrentKeyID()}
	for _, f := range []struct {
		column string
		plain  string
		out    *[]byte
	}{
		{"access", g.AccessToken, &t.access},
		{"refresh", g.RefreshToken, &t.refresh},
		{"id", g.IDToken, &t.idTok},
	} {
		if f.plain == "" {
			*f.out = []byte{}
			continue
		}
		_, sealed, err := s.sealer.Seal([]byte(f.plain), grantAAD(g.ID, f.column))
		if err != nil {
			return t, fmt.Errorf("store: grant %q: seal %s token: %w", g.ID, f.column, err)
		}
		*f.out = sealed
	}
	return t, nil
}

// openTokens is the inverse of sealTokens, writing into g.
func (s *codec) openTokens(g *Grant, t sealedTokens) error {
	for _, f := range []struct {
		column string
		sealed []byte
		out    *string
	}{
		{"access", t.access, &g.AccessToken},
		{"refresh", t.refresh, &g.RefreshToken},
		{"id", t.idTok, &g.IDToken},
	} {
		if len(f.sealed) == 0 {
			*f.out = ""
			continue
		}
		plain, err := s.sealer.Open(t.keyID, f.sealed, grantAAD(g.ID, f.column))
		if err != nil {
			return fmt.Errorf("store: grant %q: open %s token: %w", g.ID, f.column, err)
		}
		*f.out = string(plain)
	}
	return nil
}

// insertGrantArgs prepares g for insertGrantSQL: defaults filled in (ID,
// State, Version, timestamps) and tokens sealed. g is updated in place so the
// caller sees what was stored.
func (s *codec) insertGrantArgs(g *Grant) ([]any, error) {
	if g.Issuer == "" || g.Subject == "" {
		return nil, errors.New("store: grant needs an issuer and a subject")
	}
	if g.ID == "" {
		g.ID = newID()
	}
	if g.State == "" {
		g.State = StateOK
	}
	if !g.State.valid() {
		return nil, fmt.Errorf("store: grant %q: unknown state %q", g.ID, g.State)
	}
	if g.Kind == "" {
		g.Kind = KindWeb
	}
	if g.Kind != KindWeb && g.Kind != KindDevice {
		return nil, fmt.Errorf("store: grant %q: unknown kind %q", g.ID, g.Kind)
	}
	now := s.now()
	if g.CreatedAt.IsZero() {
		g.CreatedAt = now
	}
	if g.UpdatedAt.IsZero() {
		g.UpdatedAt = g.CreatedAt
	}
	t, err := s.sealTokens(g)
	if err != nil {
		return nil, err
	}
	return []any{
		g.ID, g.Issuer, g.Subject, g.Email, g.Username, g.Name, t.keyID,
		t.access, t.refresh, t.idTok, toNanos(g.AccessExpiry), toNanos(g.RefreshExpiry),
		string(g.State), g.LastError, g.FailCount, int64(1), toNanos(g.LastRefresh), toNanos(g.LastActive),
		toNanos(g.NextRefreshAt), toNanos(g.CreatedAt), toNanos(g.UpdatedAt), string(g.Kind),
	}, nil
}

// CreateGrant stores a new grant. An empty g.ID is replaced by a random
// 128-bit id; g.Version is set to 1, an empty State to StateOK, and zero
// CreatedAt/UpdatedAt to now. It returns ErrConflict if the id is taken.
func (s *SQLite) CreateGrant(ctx context.Context, g *Grant) error {
	args, err := s.insertGrantArgs(g)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, insertGrantSQL, args...); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: create grant %q: id exists: %w", g.ID, ErrConflict)
		}
		return fmt.Errorf("store: create grant %q: %w", g.ID, err)
	}
	g.Version = 1
	return nil
}

// Grant returns the grant with the given id, tokens opened, or ErrNotFound.
// A grant sealed under a key the sealer no longer holds fails with an error
// naming the key id.
func (s *SQLite) Grant(ctx context.Context, id string) (Grant, error) {
	row := s.queryRow(ctx, "SELECT "+grantColumns+" FROM grants WHERE id = ?", id)
	g, err := s.scanGrant(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Grant{}, fmt.Errorf("store: grant %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Grant{}, err
	}
	return g, nil
}

// rowScanner is the one method *sql.Row and pgx.Row share, so both drivers read a grant with the same code.
type rowScanner interface{ Scan(dest ...any) error }

// scanGrant reads one row selected with grantColumns. A missing row comes back as the driver's own no-rows error,
// unwrapped, for the caller to turn into ErrNotFound.
func (s *codec) scanGrant(row rowScanner) (Grant, error) {
	var (
		g                                    Grant
		t                                    sealedTokens
		state, kind                          string
		accessExp, refreshExp                int64
		lastRefresh, lastActive, nextRefresh int64
		created, updated                     int64
	)
	err := row.Scan(&g.ID, &g.Issuer, &g.Subject, &g.Email, &g.Username, &g.Name, &t.keyID,
		&t.access, &t.refresh, &t.idTok, &accessExp, &refreshExp,
		&state, &g.LastError, &g.FailCount, &g.Version, &lastRefresh, &lastActive,
		&nextRefresh, &created, &updated, &kind)
	if errors.Is(err, sql.ErrNoRows) || pgNoRows(err) {
		return Grant{}, err
	}
	if err != nil {
		return Grant{}, fmt.Errorf("store: read grant: %w", err)
	}
	g.State, g.Kind = GrantState(state), GrantKind(kind)
	g.AccessExpiry, g.RefreshExpiry = fromNanos(accessExp), fromNanos(refreshExp)
	g.LastRefresh, g.LastActive, g.NextRefreshAt = fromNanos(lastRefresh), fromNanos(lastActive), fromNanos(nextRefresh)
	g.CreatedAt, g.UpdatedAt = fromNanos(created), fromNanos(updated)
	if err := s.openTokens(&g, t); err != nil {
		return Grant{}, err
	}
	return g, nil
}

// UpdateGrant writes g over the stored grant if, and only if, the stored
// version still equals g.Version, and returns the grant as now stored (Version
// bumped, UpdatedAt now). A stale g fails with ErrConflict and changes
// nothing, which is what stops a slow writer from replacing a freshly rotated
// refresh token with a spent one; a deleted grant fails with ErrNotFound.
//
// Issuer, Subject and CreatedAt are never changed. LastActive never moves
// backwards (see TouchGrant). Tokens are re-sealed under the current key.
func (s *SQLite) UpdateGrant(ctx context.Context, g Grant) (Grant, error) {
	args, err := s.updateGrantArgs(&g)
	if err != nil {
		return Grant{}, err
	}
	var lastActive, created int64
	var kind string
	err = s.db.QueryRowContext(ctx, updateGrantSQL, args...).Scan(&g.Issuer, &g.Subject, &lastActive, &created, &g.Version, &kind)
	if errors.Is(err, sql.ErrNoRows) {
		return Grant{}, s.missOrConflict(ctx, g.ID, g.Version)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("store: update grant %q: %w", g.ID, err)
	}
	g.LastActive, g.CreatedAt, g.Kind = fromNanos(lastActive), fromNanos(created), GrantKind(kind)
	return g, nil
}

// updateGrantArgs prepares g for the versioned update of either driver (updateGrantSQL's argument order): the state
// checked, the tokens re-sealed under the current key, UpdatedAt stamped.
func (s *codec) updateGrantArgs(g *Grant) ([]any, error) {
	if g.State == "" {
		g.State = StateOK
	}
	if !g.State.valid() {
		return nil, fmt.Errorf("store: grant %q: unknown state %q", g.ID, g.State)
	}
	t, err := s.sealTokens(g)
	if err != nil {
		return nil, err
	}
	g.UpdatedAt = s.now()
	return []any{
		g.Email, g.Username, g.Name, t.keyID,
		t.access, t.refresh, t.idTok,
		toNanos(g.AccessExpiry), toNanos(g.RefreshExpiry), string(g.State), g.LastError,
		g.FailCount, toNanos(g.LastRefresh),
		toNanos(g.LastActive), toNanos(g.NextRefreshAt), toNanos(g.UpdatedAt),
		g.ID, g.Version,
	}, nil
}

// missOrConflict explains why a versioned update matched no row.
func (s *SQLite) missOrConflict(ctx context.Context, id string, version int64) error {
	var stored int64
	err := s.db.QueryRowContext(ctx, "SELECT version FROM grants WHERE id = ?", id).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("store: update grant %q: %w", id, ErrNotFound)
	case err != nil:
		return fmt.Errorf("store: update grant %q: %w", id, err)
	}
	return fmt.Errorf("store: update grant %q: have version %d, stored %d: %w", id, version, stored, ErrConflict)
}

// TouchGrant records activity. It never moves last_active back, and it can only bring next_refresh_at earlier,
// and only for a grant in state ok: the caller computed nextRefreshAt from a copy read before, and a refresh may
// have failed since — the backoff time of a degraded grant must survive a page view that raced it. It neither
// bumps the version nor touches tokens, so a page view never makes the refresher's copy stale.
func (s *SQLite) TouchGrant(ctx context.Context, id string, lastActive, nextRefreshAt time.Time) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE grants SET last_active = MAX(last_active, ?),
		   next_refresh_at = CASE WHEN state = ? THEN MIN(next_refresh_at, ?) ELSE next_refresh_at END
		 WHERE id = ?`,
		toNanos(lastActive), string(StateOK), toNanos(nextRefreshAt), id)
	if err != nil {
		return fmt.Errorf("store: touch grant %q: %w", id, err)
	}
	return oneRow(res, "store: touch grant %q: %w", id)
}

// DeleteGrant removes a grant. Deleting a grant that does not exist is not an
// error, so sign-out can be retried.
func (s *SQLite) DeleteGrant(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM grants WHERE id = ?", id); err != nil {
		return fmt.Errorf("store: delete grant %q: %w", id, err)
	}
	return nil
}

// DeleteEndedGrants removes grants in state needs_sign_in that nobody has used since before: their tokens are already
// dropped, and the refresher never visits them (DueGrants skips the state), so without this sweep they would stay
// forever when their user does not come back. It returns how many it deleted.
func (s *SQLite) DeleteEndedGrants(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM grants WHERE state = ? AND last_active < ?", string(StateNeedsSignIn), toNanos(before))
	if err != nil {
		return 0, fmt.Errorf("store: delete ended grants: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: delete ended grants: %w", err)
	}
	return int(n), nil
}

// DueGrants returns up to limit ids of grants in state ok or degraded whose
// next_refresh_at is at or before before, most overdue first. It reads only
// the grants_due index, so its cost follows limit, not the table size.
func (s *SQLite) DueGrants(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, dueGrantsSQL, toNanos(before), limit)
	if err != nil {
		return nil, fmt.Errorf("store: due grants: %w", err)
	}
	return scanIDs(rows, "store: due grants: %w")
}

// GrantsBySubject returns the ids of the grants of one user at one issuer,
// oldest first, so sign-in can reuse or retire earlier grants.
func (s *SQLite) GrantsBySubject(ctx context.Context, issuer, subject string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx,
		"SELECT id FROM grants WHERE issuer = ? AND subject = ? ORDER BY created_at, id", issuer, subject)
	if err != nil {
		return nil, fmt.Errorf("store: grants by subject: %w", err)
	}
	return scanIDs(rows, "store: grants by subject: %w")
}

// CountGrantsByState returns how many grants are in each state, for metrics
// and the health page. The known states are always present, with 0 if
// there are none.
func (s *SQLite) CountGrantsByState(ctx context.Context) (map[GrantState]int, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT state, COUNT(*) FROM grants GROUP BY state")
	if err != nil {
		return nil, fmt.Errorf("store: count grants: %w", err)
	}
	defer rows.Close()
	counts := map[GrantState]int{StateOK: 0, StateDegraded: 0, StateNeedsSignIn: 0}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("store: count grants: %w", err)
		}
		counts[GrantState(state)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count grants: %w", err)
	}
	return counts, nil
}

// scanIDs collects a single-column result of ids and closes rows. format
// wraps any error; it must contain one %w.
func scanIDs(rows *sql.Rows, format string) ([]string, error) {
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf(format, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf(format, err)
	}
	return ids, nil
}

// oneRow turns an UPDATE or DELETE that matched nothing into ErrNotFound.
// format takes the id and the error, in that order.
func oneRow(res sql.Result, format string, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf(format, id, err)
	}
	if n == 0 {
		return fmt.Errorf(format, id, ErrNotFound)
	}
	return nil
}
