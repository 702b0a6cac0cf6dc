package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/postern/postern/internal/store"
)

// The one refresh path. Page views (Token), mail retries (Replace) and the
// scheduler (Run) all call refresh; it is the only code that sends a refresh
// token. Its order of operations keeps a single-use refresh token from being
// spent twice (docs/protocol-notes.md §0 items 3–4, B.1):
//
//  1. decide from a plain read whether a refresh is needed (policy.decide);
//     a page view whose token is still usable never waits: it starts the
//     refresh behind itself and goes on with the current token;
//  2. the grant's in-process lock, so concurrent callers share one call;
//  3. the grant's lease in the store, so other processes wait;
//  4. a re-read under the lease: if someone else already rotated, use theirs;
//  5. if the previous attempt's outcome is unknown, probe before sending the
//     refresh token again (introspection of the refresh token, or userinfo);
//  6. the token-endpoint call, on a context of its own that only shutdown
//     cancels (a user closing a tab must not turn a refresh into an unknown
//     outcome), for up to TokenCallTimeout;
//  7. the versioned write of the transition (lifecycle.go); only then are
//     new tokens used.

// refresh returns grant id, refreshed first if m needs it.
func (k *Keeper) refresh(ctx context.Context, id string, m mode, rejected string) (store.Grant, error) {
	g, err := k.load(ctx, id)
	if err != nil {
		return store.Grant{}, err
	}
	if do, err := k.pol.decide(g, time.Now(), m, rejected); !do {
		return g, err
	}
	switch {
	case m == modeView && usable(g, time.Now()):
		if unlock, ok := k.locks.tryLock(id); ok { // else a refresh is already running here
			k.calls.goDetached(func(ctx context.Context) {
				defer unlock()
				wctx, cancel := context.WithTimeout(ctx, k.shortCall())
				defer cancel()
				k.refreshLocked(wctx, id, m, rejected)
			})
		}
		return g, nil
	case m == modeBackground:
		if err := k.limit.Wait(ctx); err != nil {
			return g, err
		}
		unlock, err := k.locks.lock(ctx, id)
		if err != nil {
			return g, err
		}
		defer unlock()
		return k.refreshLocked(ctx, id, m, rejected)
	}
	// A view without a usable token, or a refused one: wait for the refresh,
	// but not for as long as the IdP may take. The refresh goes on without us.
	wctx, cancel := context.WithTimeout(ctx, k.shortCall())
	defer cancel()
	unlock, err := k.locks.lock(wctx, id)
	if err != nil {
		return g, k.waited(ctx, id, err)
	}
	type result struct {
		g   store.Grant
		err error
	}
	done := make(chan result, 1)
	k.calls.goDetached(func(context.Context) {
		defer unlock()
		g, err := k.refreshLocked(wctx, id, m, rejected)
		done <- result{g, err}
	})
	select {
	case r := <-done:
		return r.g, r.err
	case <-wctx.Done():
		return g, k.waited(ctx, id, wctx.Err())
	}
}

// waited is the error for a caller that stopped waiting for a refresh.
func (k *Keeper) waited(ctx context.Context, id string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("auth: grant %s: refresh still running: %w: %w", id, ErrTransient, err)
}

// refreshLocked is refresh once the grant's lock is held: steps 3 to 7. ctx
// bounds the wait for the lease only.
func (k *Keeper) refreshLocked(ctx context.Context, id string, m mode, rejected string) (store.Grant, error) {
	// Whoever held the lock before us may have refreshed already: check
	// with a read before claiming the lease, which is a write.
	g, err := k.load(ctx, id)
	if err != nil {
		return store.Grant{}, err
	}
	if do, err := k.pol.decide(g, time.Now(), m, rejected); !do {
		return g, err
	}
	leased, g, err := k.claim(ctx, id, m, rejected)
	if !leased {
		return g, err
	}
	defer k.release(id)
	return k.refreshLeased(g)
}

// refreshLeased refreshes g, whose lease we hold, and records the outcome.
func (k *Keeper) refreshLeased(g store.Grant) (store.Grant, error) {
	if k.idp == nil {
		return g, errors.New("auth: keeper has no provider")
	}
	ctx := k.calls.context()
	if g.LastError == string(ReasonOutcomeUnknown) || k.memo.isUnknown(g) {
		// The last refresh with this token may have committed: find out
		// before sending it again.
		switch res, err := k.probeUnknown(ctx, g); res {
		case ProbeInactive:
			return k.signOff(g, ReasonRefreshSpent)
		case ProbeRevoked:
			return k.signOff(g, ReasonRefreshLost)
		case ProbeUnreachable:
			return k.record(g, ReasonOutcomeUnknown, err)
		}
	}
	if g.RefreshToken == "" {
		return k.signOff(g, ReasonNoRefreshToken)
	}
	if p, ok := k.memo.pendingFor(g); ok {
		// The IdP rotated this grant but the store would not take the result: the stored refresh token is spent
		// and must never be sent again; the rotated tokens are still good. Store them now instead of refreshing.
		return k.commit(g, p.ts)
	}
	if ctx.Err() != nil {
		return g, fmt.Errorf("auth: grant %s: shutting down: %w", g.ID, ErrTransient)
	}
	if err := k.extend(g.ID); err != nil {
		return g, err
	}
	cctx, cancel := context.WithTimeout(ctx, k.opts.TokenCallTimeout)
	k.metrics.attempt()
	ts, err := k.idp.Refresh(cctx, g.RefreshToken)
	cancel()
	reason := outcomeOf(err)
	k.metrics.outcome(reason)
	switch reason {
	case ReasonOK:
		return k.commit(g, ts)
	case ReasonInvalidGrant:
		return k.signOff(g, reason)
	case ReasonUnavailable, ReasonTimeout, ReasonRejected:
		return k.record(g, reason, err)
	}
	// Outcome unknown (or unclassified): the refresh token may be spent.
	// Record that first, so that even after a crash the next attempt (from
	// any process) probes before re-sending it; and in memory, in case the
	// store refuses the write.
	k.memo.markUnknown(g)
	saved, derr := k.record(g, ReasonOutcomeUnknown, err)
	if saved.RefreshToken != g.RefreshToken || ctx.Err() != nil {
		return saved, derr // another writer rotated the grant meanwhile, or we are shutting down
	}
	switch res, _ := k.probeUnknown(ctx, g); res {
	case ProbeInactive:
		return k.signOff(saved, ReasonRefreshSpent)
	case ProbeRevoked:
		return k.signOff(saved, ReasonRefreshLost)
	}
	// Not committed yet — or committing right now, after our deadline (an IdP that is slow, not dead). The marker
	// stays, so the retry after backoff probes again before it sends the refresh token: by then a late commit shows
	// (docs/protocol-notes.md §C).
	return saved, derr
}

// outcomeOf classifies the error of a refresh call.
func outcomeOf(err error) Reason {
	switch {
	case err == nil:
		return ReasonOK
	case errors.Is(err, ErrInvalidGrant):
		return ReasonInvalidGrant
	case errors.Is(err, ErrTransient):
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			return ReasonTimeout
		}
		return ReasonUnavailable
	case errors.Is(err, ErrRejected):
		return ReasonRejected
	}
	return ReasonOutcomeUnknown
}

// probeUnknown finds out whether a refresh of g whose outcome is unknown
// committed. Where the provider offers introspection (RFC 7662), it asks
// about the refresh token itself, which is definitive: Authelia answers
// active: false for a refresh token that has been used, and introspecting it
// revokes nothing. Otherwise it asks userinfo about the old access token:
// Authelia revokes every access token of a grant in the same transaction as
// a rotation, so 200 means the refresh did not commit, and 401 on a token
// that had not expired means it did.
//
// If the access token has (nearly) expired, userinfo's 401 proves nothing.
// Then the Keeper retries the refresh (ProbeExpired): if the lost refresh had
// committed, the retry re-uses a spent token and the IdP revokes the grant,
// which is no worse than giving up (the rotated tokens are lost either way);
// if it had not committed, the retry saves the session.
func (k *Keeper) probeUnknown(ctx context.Context, g store.Grant) (ProbeResult, error) {
	introspect := k.idp.CanIntrospect() && g.RefreshToken != ""
	if !introspect && (g.AccessToken == "" || g.AccessExpiry.Sub(time.Now()) < k.shortCall()+minUsable) {
		k.metrics.probe(ProbeExpired)
		return ProbeExpired, nil
	}
	if err := k.extend(g.ID); err != nil {
		k.metrics.probe(ProbeUnreachable)
		return ProbeUnreachable, err
	}
	pctx, cancel := context.WithTimeout(ctx, k.shortCall())
	defer cancel()
	if !introspect {
		return k.probeAccess(pctx, g.AccessToken)
	}
	active, err := k.idp.Introspect(pctx, g.RefreshToken, "refresh_token")
	res := ProbeUnreachable
	switch {
	case err != nil:
	case active:
		res = ProbeActive
	default:
		res = ProbeInactive
	}
	k.metrics.probe(res)
	return res, err
}

// probeAccess calls userinfo with access and classifies the answer.
func (k *Keeper) probeAccess(ctx context.Context, access string) (ProbeResult, error) {
	if k.idp == nil {
		return ProbeUnreachable, errors.New("auth: keeper has no provider")
	}
	_, err := k.idp.UserInfo(ctx, access)
	res := ProbeUnreachable
	switch {
	case err == nil:
		res = ProbeAlive
	case errors.Is(err, ErrTokenRejected):
		res = ProbeRevoked
	}
	k.metrics.probe(res)
	return res, err
}

// commit stores rotated tokens (ReasonOK). Only after it returns are they
// handed out.
func (k *Keeper) commit(g store.Grant, ts TokenSet) (store.Grant, error) {
	saved, err := k.update(g, ReasonOK, ts)
	switch {
	case err == nil:
		k.memo.forget(g.ID)
		return saved, nil
	case errors.Is(err, store.ErrNotFound):
		// Signed out while this refresh ran: the new tokens belong to no one.
		if ts.RefreshToken != "" {
			rctx, cancel := context.WithTimeout(context.Background(), k.shortCall())
			if rerr := k.idp.Revoke(rctx, ts.RefreshToken, "refresh_token"); rerr != nil {
				k.log.Warn("auth: revoke tokens of a deleted grant", "grant", g.ID, "err", rerr)
			}
			cancel()
		}
		return store.Grant{}, fmt.Errorf("auth: grant %s: %w", g.ID, ErrNeedsSignIn)
	case errors.Is(err, errBasisChanged):
		k.log.Error("auth: grant rotated by another refresher during ours; lease too short?", "grant", g.ID)
		return saved, nil
	}
	// The old refresh token is spent and the new ones are only in memory. Never send the old one again from here
	// (that would revoke the whole grant): keep the rotation, and the next attempt on this grant — a page view or
	// Run after backoff — stores it instead of calling the IdP. Only a restart of this process loses it.
	k.memo.keepRotation(g, ts)
	k.log.Error("auth: rotated tokens could not be stored yet; will retry", "grant", g.ID, "err", err)
	// Best effort (a store that failed the commit may fail this too): degraded with a backoff, so Run comes back.
	_, _ = k.record(g, ReasonUnsaved, err)
	return store.Grant{}, fmt.Errorf("auth: store rotated tokens: %w", err)
}

// signOff moves g to needs_sign_in (its tokens are dead at the IdP). It
// always returns an error wrapping ErrNeedsSignIn.
func (k *Keeper) signOff(g store.Grant, r Reason) (store.Grant, error) {
	k.metrics.signIn(r)
	k.log.Info("auth: grant needs a new sign-in", "grant", g.ID, "reason", r)
	saved, err := k.update(g, r, TokenSet{})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		k.log.Warn("auth: record needs_sign_in", "grant", g.ID, "err", err)
	}
	k.ended(g.ID)
	return saved, fmt.Errorf("auth: grant %s (%s): %w", g.ID, r, ErrNeedsSignIn)
}

// record stores a failed refresh that leaves the tokens intact (a reason
// leading to degraded). The returned error wraps cause.
func (k *Keeper) record(g store.Grant, r Reason, cause error) (store.Grant, error) {
	saved, err := k.update(g, r, TokenSet{})
	k.nudge()
	switch {
	case errors.Is(err, errBasisChanged):
		return saved, nil // someone else rotated it: their tokens are the answer
	case err != nil:
		k.log.Warn("auth: record refresh failure", "grant", g.ID, "reason", r, "err", err)
		saved = g
	}
	k.log.Info("auth: refresh failed; tokens kept", "grant", g.ID, "reason", r, "failures", saved.FailCount)
	return saved, fmt.Errorf("auth: refresh grant %s: %w", g.ID, cause)
}
