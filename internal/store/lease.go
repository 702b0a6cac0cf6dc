package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// claimLeaseSQL takes the refresh lease in one statement. SQLite executes a
// single UPDATE under the database write lock, across connections and
// processes, so two claimants can never both see the lease as free: this is
// what keeps a single-use refresh token from being spent twice.
const claimLeaseSQL = `UPDATE grants SET lease_owner = ?, lease_until = ?
	WHERE id = ? AND (lease_owner = '' OR lease_until <= ? OR lease_owner = ?)`

// ClaimLease tries to become the only refresher of a grant until until. It
// succeeds when the lease is free, expired at now, or already owner's (which
// extends it). It returns false, nil when someone else holds it, and false,
// ErrNotFound when the grant does not exist.
//
// now comes from the caller rather than the store's clock so that all
// processes judge expiry by the same rule the caller uses to pick until; the
// lease length must exceed the longest refresh round-trip.
func (s *SQLite) ClaimLease(ctx context.Context, grantID, owner string, now, until time.Time) (bool, error) {
	if owner == "" {
		return false, errors.New("store: claim lease: empty owner")
	}
	res, err := s.db.ExecContext(ctx, claimLeaseSQL, owner, toNanos(until), grantID, toNanos(now), owner)
	if err != nil {
		return false, fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	if n == 1 {
		return true, nil
	}
	var one int
	err = s.db.QueryRowContext(ctx, "SELECT 1 FROM grants WHERE id = ?", grantID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, fmt.Errorf("store: claim lease on grant %q: %w", grantID, ErrNotFound)
	case err != nil:
		return false, fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	return false, nil
}

// ReleaseLease gives up owner's lease on a grant so another refresher need
// not wait for it to expire. It does nothing if owner does not hold the lease
// (it expired and was taken over), and is not an error then.
func (s *SQLite) ReleaseLease(ctx context.Context, grantID, owner string) error {
	if _, err := s.db.ExecContext(ctx,
		"UPDATE grants SET lease_owner = '', lease_until = 0 WHERE id = ? AND lease_owner = ?",
		grantID, owner); err != nil {
		return fmt.Errorf("store: release lease on grant %q: %w", grantID, err)
	}
	return nil
}

// ClaimLeaseFrom is ClaimLease that also says whose expired lease it took over: prev is the owner of a lease that
// had run out without being released — a holder that died or stalled, perhaps in the middle of a refresh whose
// outcome only the IdP knows — and "" when the lease was free or already owner's. The refresher probes before
// spending the refresh token of a grant it took over. The read and the claim are one transaction (BEGIN IMMEDIATE
// takes the write lock first), so no other claimant slips between them.
func (s *SQLite) ClaimLeaseFrom(ctx context.Context, grantID, owner string, now, until time.Time) (ok bool, prev string, err error) {
	if owner == "" {
		return false, "", errors.New("store: claim lease: empty owner")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, "", fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	defer tx.Rollback()
	var prevOwner string
	var prevUntil int64
	err = tx.QueryRowContext(ctx, "SELECT lease_owner, lease_until FROM grants WHERE id = ?", grantID).Scan(&prevOwner, &prevUntil)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, "", fmt.Errorf("store: claim lease on grant %q: %w", grantID, ErrNotFound)
	case err != nil:
		return false, "", fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	res, err := tx.ExecContext(ctx, claimLeaseSQL, owner, toNanos(until), grantID, toNanos(now), owner)
	if err != nil {
		return false, "", fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, "", err
	}
	if err := tx.Commit(); err != nil {
		return false, "", fmt.Errorf("store: claim lease on grant %q: %w", grantID, err)
	}
	if prevOwner != "" && prevOwner != owner {
		prev = prevOwner
	}
	return true, prev, nil
}
