package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The grant statements PostgreSQL shares with SQLite word for word (placeholders aside) are taken from grants.go
// and lease.go through dollar; only the two that need SQLite's two-argument MAX/MIN differ, here as GREATEST/LEAST.
var (
	pgInsertGrantSQL = dollar(insertGrantSQL)
	pgDueGrantsSQL   = dollar(dueGrantsSQL)
	pgClaimLeaseSQL  = dollar(claimLeaseSQL)

	// pgUpdateGrantSQL is updateGrantSQL with GREATEST for SQLite's scalar MAX: the same compare-and-swap on version.
	pgUpdateGrantSQL = `UPDATE grants SET
	email = $1, username = $2, name = $3, key_id = $4,
	access_sealed = $5, refresh_sealed = $6, id_sealed = $7,
	access_expiry = $8, refresh_expiry = $9, state = $10, last_error = $11,
	fail_count = $12, version = version + 1, last_refresh = $13,
	last_active = GREATEST(last_active, $14), next_refresh_at = $15, updated_at = $16
	WHERE id = $17 AND version = $18
	RETURNING issuer, subject, last_active, created_at, version, kind`

	// pgTouchGrantSQL is TouchGrant's statement with GREATEST/LEAST: last_active only forward, next_refresh_at
	// only earlier and only for a grant in state ok (a degraded grant's backoff survives a racing page view).
	pgTouchGrantSQL = `UPDATE grants SET last_active = GREATEST(last_active, $1),
	   next_refresh_at = CASE WHEN state = $2 THEN LEAST(next_refresh_at, $3) ELSE next_refresh_at END
	 WHERE id = $4`
)

// CreateGrant stores a new grant; see (*SQLite).CreateGrant for the contract.
func (s *Postgres) CreateGrant(ctx context.Context, g *Grant) error {
	args, err := s.insertGrantArgs(g)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, pgInsertGrantSQL, args...); err != nil {
		if pgUniqueViolation(err) {
			return fmt.Errorf("store: create grant %q: id exists: %w", g.ID, ErrConflict)
		}
		return fmt.Errorf("store: create grant %q: %w", g.ID, err)
	}
	g.Version = 1
	return nil
}

// Grant returns the grant with the given id, tokens opened, or ErrNotFound.
func (s *Postgres) Grant(ctx context.Context, id string) (Grant, error) {
	g, err := s.scanGrant(s.pool.QueryRow(ctx, "SELECT "+grantColumns+" FROM grants WHERE id = $1", id))
	if pgNoRows(err) {
		return Grant{}, fmt.Errorf("store: grant %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Grant{}, err
	}
	return g, nil
}

// UpdateGrant writes g if the stored version still equals g.Version; see (*SQLite).UpdateGrant.
func (s *Postgres) UpdateGrant(ctx context.Context, g Grant) (Grant, error) {
	args, err := s.updateGrantArgs(&g)
	if err != nil {
		return Grant{}, err
	}
	var lastActive, created int64
	var kind string
	err = s.pool.QueryRow(ctx, pgUpdateGrantSQL, args...).Scan(&g.Issuer, &g.Subject, &lastActive, &created, &g.Version, &kind)
	if pgNoRows(err) {
		return Grant{}, s.missOrConflict(ctx, g.ID, g.Version)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("store: update grant %q: %w", g.ID, err)
	}
	g.LastActive, g.CreatedAt, g.Kind = fromNanos(lastActive), fromNanos(created), GrantKind(kind)
	return g, nil
}

// missOrConflict explains why a versioned update matched no row.
func (s *Postgres) missOrConflict(ctx context.Context, id string, version int64) error {
	var stored int64
	err := s.pool.QueryRow(ctx, "SELECT version FROM grants WHERE id = $1", id).Scan(&stored)
	switch {
	case pgNoRows(err):
		return fmt.Errorf("store: update grant %q: %w", id, ErrNotFound)
	case err != nil:
		return fmt.Errorf("store: update grant %q: %w", id, err)
	}
	return fmt.Errorf("store: update grant %q: have version %d, stored %d: %w", id, version, stored, ErrConflict)
}

// TouchGrant records activity without bumping the version; see (*SQLite).TouchGrant.
func (s *Postgres) TouchGrant(ctx context.Context, id string, lastActive, nextRefreshAt time.Time) error {
	tag, err := s.pool.Exec(ctx, pgTouchGrantSQL, toNanos(lastActive), string(StateOK), toNanos(nextRefreshAt), id)
	if err != nil {
		return fmt.Errorf("store: touch grant %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: touch grant %q: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteGrant removes a grant; deleting a missing grant is not an error.
func (s *Postgres) DeleteGrant(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM grants WHERE id = $1", id); err != nil {
		return fmt.Errorf("store: delete grant %q: %w", id, err)
	}
	return nil
}

// DeleteEndedGrants removes needs_sign_in grants unused since before; see (*SQLite).DeleteEndedGrants.
func (s *Postgres) DeleteEndedGrants(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM grants WHERE state = $1 AND last_active < $2",
		string(StateNeedsSignIn), toNanos(before))
	if err != nil {
		return 0, fmt.Errorf("store: delete ended grants: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// DueGrants returns up to limit ids of grants due at before, most overdue first, from the grants_due index.
func (s *Postgres) DueGrants(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	return s.ids(ctx, "store: due grants: %w", pgDueGrantsSQL, toNanos(before), limit)
}

// GrantsBySubject returns the ids of one user's grants at one issuer, oldest first.
func (s *Postgres) GrantsBySubject(ctx context.Context, issuer, subject string) ([]string, error) {
	return s.ids(ctx, "store: grants by subject: %w",
		"SELECT id FROM grants WHERE issuer = $1 AND subject = $2 ORDER BY created_at, id", issuer, subject)
}

// CountGrantsByState counts grants per state, every known state present.
func (s *Postgres) CountGrantsByState(ctx context.Context) (map[GrantState]int, error) {
	rows, err := s.pool.Query(ctx, "SELECT state, COUNT(*) FROM grants GROUP BY state")
	if err != nil {
		return nil, fmt.Errorf("store: count grants: %w", err)
	}
	counts := map[GrantState]int{StateOK: 0, StateDegraded: 0, StateNeedsSignIn: 0}
	var state string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		counts[GrantState(state)] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: count grants: %w", err)
	}
	return counts, nil
}

// ids runs a query of one text column and collects it; format wraps any error and must contain one %w.
func (s *Postgres) ids(ctx context.Context, format, query string, args ...any) ([]string, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf(format, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf(format, err)
	}
	return ids, nil
}

// ClaimLease tries to become the only refresher of a grant until until; see (*SQLite).ClaimLease.
//
// Why a conditional UPDATE and not SELECT … FOR UPDATE: a row lock lives as long as its transaction, so holding it
// across the token-endpoint call would keep a transaction (and a pooled connection) open for as long as the IdP
// takes — minutes when it hangs — and would vanish with the connection rather than expire on a clock the other
// instances can read. The lease is a value in the row: claimed by one statement that PostgreSQL serialises on the
// row lock (the second claimant re-evaluates the WHERE against the committed first claim and matches nothing),
// released or left to expire at lease_until if its holder dies.
func (s *Postgres) ClaimLease(ctx context.Context, grantID, owner string, now, until time.Time) (bool, error) {
	if owner == "" {
		return false, errors.New("store: claim lease: empty owner")
	}
	tag, err := s.pool.Exec(ctx, pgClaimLeaseSQL, owner, toNanos(until), grantID, toNanos(now), owner)
	if err != nil {
		return false, fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var one int
	err = s.pool.QueryRow(ctx, "SELECT 1 FROM grants WHERE id = $1", grantID).Scan(&one)
	switch {
	case pgNoRows(err):
		return false, fmt.Errorf("store: claim lease on grant %q: %w", grantID, ErrNotFound)
	case err != nil:
		return false, fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	return false, nil
}

// ReleaseLease gives up owner's lease on a grant; see (*SQLite).ReleaseLease.
func (s *Postgres) ReleaseLease(ctx context.Context, grantID, owner string) error {
	if _, err := s.pool.Exec(ctx,
		"UPDATE grants SET lease_owner = '', lease_until = 0 WHERE id = $1 AND lease_owner = $2",
		grantID, owner); err != nil {
		return fmt.Errorf("store: release lease on grant %q: %w", grantID, err)
	}
	return nil
}

// ClaimLeaseFrom is ClaimLease that also says whose expired lease it took over; see (*SQLite).ClaimLeaseFrom. The
// sub-select locks the row and reads the previous owner; the outer UPDATE applies the same condition as ClaimLease
// to the row as it is after any concurrent claim committed (READ COMMITTED re-checks it), so of two claimants only
// one matches.
func (s *Postgres) ClaimLeaseFrom(ctx context.Context, grantID, owner string, now, until time.Time) (ok bool, prev string, err error) {
	if owner == "" {
		return false, "", errors.New("store: claim lease: empty owner")
	}
	var prevOwner string
	err = s.pool.QueryRow(ctx, `UPDATE grants g SET lease_owner = $1, lease_until = $2
		FROM (SELECT id, lease_owner AS prev FROM grants WHERE id = $3 FOR UPDATE) p
		WHERE g.id = p.id AND (g.lease_owner = '' OR g.lease_until <= $4 OR g.lease_owner = $1)
		RETURNING p.prev`, owner, toNanos(until), grantID, toNanos(now)).Scan(&prevOwner)
	if pgNoRows(err) {
		// Held by someone else, or no such grant.
		var one int
		switch err := s.pool.QueryRow(ctx, "SELECT 1 FROM grants WHERE id = $1", grantID).Scan(&one); {
		case pgNoRows(err):
			return false, "", fmt.Errorf("store: claim lease on grant %q: %w", grantID, ErrNotFound)
		case err != nil:
			return false, "", fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
		}
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	if prevOwner != "" && prevOwner != owner {
		prev = prevOwner
	}
	return true, prev, nil
}
