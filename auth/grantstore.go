package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/postern/postern/internal/store"
)

// GrantStore is the persistence a Keeper needs. *store.SQLite satisfies it;
// tokens are sealed by the store, so the Keeper only ever sees plaintext in
// memory.
type GrantStore interface {
	CreateGrant(ctx context.Context, g *store.Grant) error
	Grant(ctx context.Context, id string) (store.Grant, error)
	UpdateGrant(ctx context.Context, g store.Grant) (store.Grant, error)
	TouchGrant(ctx context.Context, id string, lastActive, nextRefreshAt time.Time) error
	DeleteGrant(ctx context.Context, id string) error
	DeleteEndedGrants(ctx context.Context, before time.Time) (int, error)
	ClaimLease(ctx context.Context, grantID, owner string, now, until time.Time) (bool, error)
	ClaimLeaseFrom(ctx context.Context, grantID, owner string, now, until time.Time) (ok bool, prev string, err error)
	ReleaseLease(ctx context.Context, grantID, owner string) error
	DueGrants(ctx context.Context, before time.Time, limit int) ([]string, error)
	GrantsBySubject(ctx context.Context, issuer, subject string) ([]string, error)
	CountGrantsByState(ctx context.Context) (map[store.GrantState]int, error)
}

var _ GrantStore = (*store.SQLite)(nil)

// storeTimeout bounds one store call made on a detached context.
const storeTimeout = 5 * time.Second

// errBasisChanged means the grant's refresh token changed while this writer
// held an older copy: someone else rotated it, and theirs wins.
var errBasisChanged = errors.New("auth: grant was rotated by another writer")

// The store primitives of the refresh path: read, lease, versioned write.

// load reads a grant; a missing grant means the user must sign in.
func (k *Keeper) load(ctx context.Context, id string) (store.Grant, error) {
	g, err := k.st.Grant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Grant{}, fmt.Errorf("auth: grant %s: %w", id, ErrNeedsSignIn)
	}
	if err != nil {
		return store.Grant{}, fmt.Errorf("auth: load grant: %w", err)
	}
	return g, nil
}

// leaseFor is how long a refresh lease lasts: the token call's timeout plus
// the budget of the store work around it. Sizing it rather than renewing it
// during the call keeps the guarantee independent of the store: a store that
// stalls while the call is out cannot let the lease lapse and another process
// send the same refresh token. The price is that a process that dies mid-call
// blocks that grant's refreshes until the lease runs out.
func (k *Keeper) leaseFor() time.Duration { return k.opts.TokenCallTimeout + k.opts.LeaseTTL }

// shortCall bounds a short IdP call (probe, revocation) and a page view's
// wait for a refresh.
func (k *Keeper) shortCall() time.Duration { return k.opts.LeaseTTL / 4 }

// claim takes the grant's store lease, waiting (page views until ctx ends,
// sign-out for at most LeaseTTL) or giving up (background) while another
// process holds it. It re-reads the grant after every attempt: under the
// lease, to see a rotation that landed before the claim; while waiting, to
// pick up the other process's result.
func (k *Keeper) claim(ctx context.Context, id string, m mode, rejected string) (bool, store.Grant, error) {
	deadline := time.Now().Add(k.opts.LeaseTTL + time.Second)
	delay := 20 * time.Millisecond
	for {
		now := time.Now()
		ok, prev, err := k.st.ClaimLeaseFrom(ctx, id, k.opts.Owner, now, now.Add(k.leaseFor()))
		if errors.Is(err, store.ErrNotFound) {
			return false, store.Grant{}, fmt.Errorf("auth: grant %s: %w", id, ErrNeedsSignIn)
		}
		if err != nil {
			return false, store.Grant{}, fmt.Errorf("auth: claim refresh lease: %w", err)
		}
		g, err := k.load(ctx, id)
		do := false
		if err == nil {
			do, err = k.pol.decide(g, time.Now(), m, rejected)
		}
		if ok && prev != "" && err == nil {
			// The lease ran out in another process's hands without being released: that process died (kill -9,
			// a crash, a lost machine) or stalled, perhaps after sending this refresh token and before storing
			// what came back. Nothing in the store says so, so treat it as an unknown outcome: the refresh path
			// probes before it sends the token again (introspection says whether it was spent).
			k.log.Warn("auth: took over a refresh lease that was never released; probing before refreshing",
				"grant", id, "previous_owner", prev)
			k.memo.markUnknown(g)
		}
		if ok {
			if do {
				return true, g, nil
			}
			k.release(id)
			return false, g, err
		}
		// Another process holds the lease.
		if err != nil || !do || m == modeBackground {
			return false, g, err
		}
		if m == modeForce && time.Now().After(deadline) {
			return false, g, fmt.Errorf("auth: grant %s: refresh held elsewhere: %w", id, ErrTransient)
		}
		if err := sleep(ctx, delay); err != nil {
			return false, g, fmt.Errorf("auth: grant %s: refresh held elsewhere: %w: %w", id, ErrTransient, err)
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// extend renews our lease before an IdP call, so the call and the write after
// it both finish inside the lease. It fails if the lease was lost.
func (k *Keeper) extend(id string) error {
	now := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	ok, err := k.st.ClaimLease(sctx, id, k.opts.Owner, now, now.Add(k.leaseFor()))
	if err != nil {
		return fmt.Errorf("auth: renew refresh lease: %w", err)
	}
	if !ok {
		return fmt.Errorf("auth: grant %s: refresh lease lost: %w", id, ErrTransient)
	}
	return nil
}

// release gives the lease back so other processes need not wait it out.
func (k *Keeper) release(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := k.st.ReleaseLease(ctx, id, k.opts.Owner); err != nil {
		k.log.Warn("auth: release refresh lease", "grant", id, "err", err)
	}
}

// update writes the transition of g by r (with ts for ReasonOK) with the
// version check. On a conflict it re-reads and re-applies, unless the refresh
// token changed (then errBasisChanged with the stored grant). Store failures
// are retried for up to half of LeaseTTL.
func (k *Keeper) update(g store.Grant, r Reason, ts TokenSet) (store.Grant, error) {
	deadline := time.Now().Add(k.opts.LeaseTTL / 2)
	delay := 50 * time.Millisecond
	cur := g
	for {
		next, err := transition(cur, r, ts, time.Now(), k.pol)
		if err != nil {
			return g, err
		}
		sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		saved, err := k.st.UpdateGrant(sctx, next)
		if errors.Is(err, store.ErrConflict) {
			// A page view's TouchGrant does not bump the version, so a
			// conflict means another writer; theirs may be newer.
			var c store.Grant
			if c, err = k.st.Grant(sctx, g.ID); err == nil {
				cancel()
				if c.RefreshToken != g.RefreshToken {
					return c, errBasisChanged
				}
				cur = c
				continue
			}
		}
		cancel()
		switch {
		case err == nil:
			return saved, nil
		case errors.Is(err, store.ErrNotFound), time.Now().After(deadline):
			return g, err
		}
		if err := sleep(context.Background(), delay); err != nil {
			return g, err
		}
		delay = min(2*delay, time.Second)
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
