package auth

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/postern/postern/internal/store"
)

// Timing of the refresh path and the scheduler.
const (
	tickInterval  = 5 * time.Second // scheduler pass while work is pending
	maxIdleSleep  = 5 * time.Minute // longest sleep between passes
	backlogWarn   = 5 * time.Minute // a backlog this old is logged (again)
	gaugeInterval = time.Minute     // how often Run counts grants by state
	storeTimeout  = 5 * time.Second // one store write on a detached context
	backoffBase   = 5 * time.Second // first retry after a transient failure
	backoffMax    = time.Minute     // cap of the exponential backoff
	idleMargin    = 0.20            // idle grants refresh this fraction of the RT lifetime before it lapses…
	idleJitter    = 0.05            // …plus up to this fraction more, by jitter
	activeJitter  = 0.20            // active grants refresh up to this fraction of RefreshBeforeExpiry earlier
)

// errBasisChanged means the grant's refresh token changed while this writer
// held an older copy: someone else rotated it, and theirs wins.
var errBasisChanged = errors.New("auth: grant was rotated by another writer")

// refreshLeased refreshes g, whose lease we hold, and records the outcome.
// ctx carries no cancellation from the caller.
func (k *Keeper) refreshLeased(ctx context.Context, g store.Grant) (store.Grant, error) {
	if k.idp == nil {
		return g, errors.New("auth: keeper has no provider")
	}
	if g.LastError == reasonOutcomeUnknown || k.isUnknown(g) {
		// The last refresh with this token may have committed: find out
		// before sending it again.
		switch res, err := k.probeUnknown(ctx, g); res {
		case probeRevoked:
			return k.signOff(ctx, g, reasonRefreshLost)
		case probeUnreachable:
			return k.degrade(ctx, g, reasonOutcomeUnknown, err)
		}
	}
	if g.RefreshToken == "" {
		return k.signOff(ctx, g, reasonNoRefreshToken)
	}
	if p, ok := k.pendingFor(g); ok {
		// The IdP rotated this grant but the store would not take the result: the stored refresh token is spent
		// and must never be sent again; the rotated tokens are still good. Store them now instead of refreshing.
		return k.commit(ctx, g, p.ts)
	}
	if err := k.extend(ctx, g.ID); err != nil {
		return g, err
	}
	cctx, cancel := context.WithTimeout(ctx, k.callTimeout())
	k.metrics.attempt()
	ts, err := k.idp.Refresh(cctx, g.RefreshToken)
	cancel()
	switch {
	case err == nil:
		k.metrics.outcome(reasonOK)
		return k.commit(ctx, g, ts)
	case errors.Is(err, ErrInvalidGrant):
		k.metrics.outcome(reasonInvalidGrant)
		return k.signOff(ctx, g, reasonInvalidGrant)
	case errors.Is(err, ErrTransient):
		reason := reasonUnavailable
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			reason = reasonTimeout
		}
		k.metrics.outcome(reason)
		return k.degrade(ctx, g, reason, err)
	case errors.Is(err, ErrRejected):
		k.metrics.outcome(reasonRejected)
		return k.degrade(ctx, g, reasonRejected, err)
	}
	// ErrOutcomeUnknown, or anything unclassified: the refresh token may be
	// spent. Record that first, so that even after a crash the next attempt
	// (from any process) probes before re-sending it.
	k.metrics.outcome(reasonOutcomeUnknown)
	// Also in memory: if the store write below fails, this process must still probe before re-sending.
	k.mu.Lock()
	k.unknown[g.ID] = g.RefreshToken
	k.mu.Unlock()
	saved, derr := k.degrade(ctx, g, reasonOutcomeUnknown, err)
	if saved.RefreshToken != g.RefreshToken {
		return saved, derr // another writer rotated the grant meanwhile
	}
	switch res, _ := k.probeUnknown(ctx, g); res {
	case probeRevoked:
		return k.signOff(ctx, saved, reasonRefreshLost)
	case probeUnreachable:
		return saved, derr // the marker stays; Run probes again after backoff
	}
	// Alive: not committed yet — or committing right now, after our deadline (an IdP that is slow, not dead). The
	// marker stays, so the retry after backoff probes again before it sends the refresh token: by then a late commit
	// shows as a revoked access token (docs/protocol-notes.md §C).
	return saved, derr
}

// probeUnknown asks userinfo whether g's access token survived a refresh
// whose outcome is unknown. Authelia revokes every access token of a grant in
// the same transaction as a rotation, so 200 means the refresh did not
// commit, and 401 on a token that had not expired means it did.
//
// If the access token has (nearly) expired, a 401 proves nothing. Then the
// Keeper retries the refresh (probeExpired): if the lost refresh had
// committed, the retry re-uses a spent token and the IdP revokes the grant,
// which is no worse than giving up (the rotated tokens are lost either way,
// and a sign-in is needed in both cases); if it had not committed, the retry
// saves the session. Idle grants refresh after their access token expired,
// so this is the common case for them.
func (k *Keeper) probeUnknown(ctx context.Context, g store.Grant) (string, error) {
	if g.AccessToken == "" || g.AccessExpiry.Sub(time.Now()) < k.callTimeout()+minUsable {
		k.metrics.probe(probeExpired)
		return probeExpired, nil
	}
	if err := k.extend(ctx, g.ID); err != nil {
		k.metrics.probe(probeUnreachable)
		return probeUnreachable, err
	}
	pctx, cancel := context.WithTimeout(ctx, k.callTimeout())
	defer cancel()
	return k.probe(pctx, g.AccessToken)
}

// probe calls userinfo with access and classifies the answer.
func (k *Keeper) probe(ctx context.Context, access string) (string, error) {
	if k.idp == nil {
		return probeUnreachable, errors.New("auth: keeper has no provider")
	}
	_, err := k.idp.UserInfo(ctx, access)
	res := probeUnreachable
	switch {
	case err == nil:
		res = probeAlive
	case errors.Is(err, ErrTokenRejected):
		res = probeRevoked
	}
	k.metrics.probe(res)
	return res, err
}

// commit stores rotated tokens. Only after it returns are they handed out.
func (k *Keeper) commit(ctx context.Context, g store.Grant, ts TokenSet) (store.Grant, error) {
	now := time.Now()
	saved, err := k.update(ctx, g, func(c *store.Grant) {
		c.AccessToken = ts.AccessToken
		if ts.RefreshToken != "" {
			c.RefreshToken = ts.RefreshToken
		}
		if ts.IDToken != "" {
			c.IDToken = ts.IDToken
		}
		c.AccessExpiry = accessExpiry(ts.Expiry, now)
		c.RefreshExpiry = now.Add(k.opts.RefreshTokenLifetime)
		c.State, c.LastError, c.FailCount = store.StateOK, "", 0
		c.LastRefresh = now
		c.NextRefreshAt = k.schedule(*c, now)
	})
	switch {
	case err == nil:
		k.mu.Lock()
		delete(k.spent, g.ID)
		delete(k.unknown, g.ID)
		k.mu.Unlock()
		return saved, nil
	case errors.Is(err, store.ErrNotFound):
		// Signed out while this refresh ran: the new tokens belong to no one.
		if ts.RefreshToken != "" {
			rctx, cancel := context.WithTimeout(ctx, k.callTimeout())
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
	if ts.RefreshToken != "" && ts.RefreshToken != g.RefreshToken {
		k.mu.Lock()
		k.spent[g.ID] = pendingRotation{base: g.RefreshToken, ts: ts}
		k.mu.Unlock()
	}
	k.log.Error("auth: rotated tokens could not be stored yet; will retry", "grant", g.ID, "err", err)
	// Best effort (a store that failed the commit may fail this too): degraded with a backoff, so Run comes back.
	_, _ = k.degrade(ctx, g, reasonUnsaved, err)
	return store.Grant{}, fmt.Errorf("auth: store rotated tokens: %w", err)
}

// pendingRotation is a refresh the IdP committed whose result is not stored: base is the (now spent) refresh token
// it replaced, ts the new tokens.
type pendingRotation struct {
	base string
	ts   TokenSet
}

// pendingFor returns the rotation this process holds for g, if g still carries the refresh token it replaced.
func (k *Keeper) pendingFor(g store.Grant) (pendingRotation, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.spent[g.ID]
	if ok && p.base != g.RefreshToken {
		delete(k.spent, g.ID) // the grant moved on (signed in again, or another writer): the rotation is moot
		return pendingRotation{}, false
	}
	return p, ok
}

// signOff moves g to needs_sign_in and drops its tokens: they are dead at
// the IdP. It always returns an error wrapping ErrNeedsSignIn.
func (k *Keeper) signOff(ctx context.Context, g store.Grant, reason string) (store.Grant, error) {
	k.metrics.signIn(reason)
	k.log.Info("auth: grant needs a new sign-in", "grant", g.ID, "reason", reason)
	saved, err := k.update(ctx, g, func(c *store.Grant) {
		c.State, c.LastError = store.StateNeedsSignIn, reason
		c.AccessToken, c.RefreshToken, c.IDToken = "", "", ""
		c.NextRefreshAt = time.Time{}
		c.FailCount++
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		k.log.Warn("auth: record needs_sign_in", "grant", g.ID, "err", err)
	}
	return saved, fmt.Errorf("auth: grant %s (%s): %w", g.ID, reason, ErrNeedsSignIn)
}

// degrade records a failed refresh that leaves the tokens intact: state
// degraded, the reason, and a retry time with exponential backoff. The
// returned error wraps cause.
func (k *Keeper) degrade(ctx context.Context, g store.Grant, reason string, cause error) (store.Grant, error) {
	now := time.Now()
	saved, err := k.update(ctx, g, func(c *store.Grant) {
		c.State, c.LastError = store.StateDegraded, reason
		c.FailCount++
		c.NextRefreshAt = now.Add(k.backoff(*c, now))
	})
	k.nudge()
	switch {
	case errors.Is(err, errBasisChanged):
		return saved, nil // someone else rotated it: their tokens are the answer
	case err != nil:
		k.log.Warn("auth: record refresh failure", "grant", g.ID, "reason", reason, "err", err)
		saved = g
	}
	k.log.Info("auth: refresh failed; tokens kept", "grant", g.ID, "reason", reason, "failures", saved.FailCount)
	return saved, fmt.Errorf("auth: refresh grant %s: %w", g.ID, cause)
}

// backoff is the wait before retry number c.FailCount: exponential from
// backoffBase to backoffMax with equal jitter, and never so long that the
// refresh token could lapse before two more tries.
func (k *Keeper) backoff(c store.Grant, now time.Time) time.Duration {
	d := min(backoffBase<<min(max(c.FailCount-1, 0), 16), backoffMax)
	d = d/2 + rand.N(d/2+1)
	if left := c.RefreshExpiry.Sub(now); left > 0 && d > left/3 {
		d = max(left/3, time.Second)
	}
	return d
}

// update applies mutate to g and writes it with the version check. On a
// conflict it re-reads and re-applies, unless the refresh token changed (then
// errBasisChanged with the stored grant). Store failures are retried within a
// bounded time; ctx must be detached from the caller.
func (k *Keeper) update(ctx context.Context, g store.Grant, mutate func(*store.Grant)) (store.Grant, error) {
	deadline := time.Now().Add(k.opts.LeaseTTL / 2)
	delay := 50 * time.Millisecond
	cur := g
	for {
		next := cur
		mutate(&next)
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
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
		if err := sleep(ctx, delay); err != nil {
			return g, err
		}
		delay = min(2*delay, time.Second)
	}
}

// refreshAt is when the scheduler should refresh g, by token lifetimes
// alone: for an active session a little before the access token expires, and
// in any case at about 0.75–0.8 of the sliding refresh-token lifetime, so an
// idle grant stays alive with one call per ~70 minutes at Authelia's 90.
// Jitter is a stable function of the grant and its last rotation, so every
// process computes the same time and re-computing it never moves it.
func (k *Keeper) refreshAt(g store.Grant, now time.Time) time.Time {
	if g.RefreshToken == "" {
		return g.AccessExpiry // nothing to refresh with; needs sign-in then
	}
	o := k.opts
	j := jitter(g)
	t := g.RefreshExpiry.Add(-time.Duration(float64(o.RefreshTokenLifetime) * (idleMargin + idleJitter*j)))
	if now.Sub(g.LastActive) < o.ActiveWindow {
		lead := o.RefreshBeforeExpiry + time.Duration(activeJitter*j*float64(o.RefreshBeforeExpiry))
		lead = min(lead, g.AccessExpiry.Sub(g.LastRefresh)/2)
		t = minTime(t, g.AccessExpiry.Add(-lead))
	}
	return t
}

// policyEnd is when session policy ends g: IdleTimeout after the last page
// view, or Lifetime after sign-in, whichever is first.
func (k *Keeper) policyEnd(g store.Grant) time.Time {
	last := g.LastActive
	if last.IsZero() {
		last = g.CreatedAt
	}
	return minTime(last.Add(k.opts.IdleTimeout), g.CreatedAt.Add(k.opts.Lifetime))
}

// schedule is the NextRefreshAt to store for g: its refresh time, or the end
// of its session if that comes first (Run then revokes and deletes it).
func (k *Keeper) schedule(g store.Grant, now time.Time) time.Time {
	return minTime(k.refreshAt(g, now), k.policyEnd(g))
}

// jitter maps a grant and its last rotation to [0, 1).
func jitter(g store.Grant) float64 {
	h := fnv.New64a()
	h.Write([]byte(g.ID))
	var b [8]byte
	n := g.LastRefresh.UnixNano()
	for i := range b {
		b[i] = byte(n >> (8 * i))
	}
	h.Write(b[:])
	return float64(h.Sum64()>>11) / (1 << 53)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
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

// limiter spaces calls at least every apart: a token bucket of depth one,
// which is the strictest reading of "calls per second". A nil limiter does
// not limit.
type limiter struct {
	mu    sync.Mutex
	every time.Duration
	next  time.Time
}

func newLimiter(perSecond float64) *limiter {
	if perSecond < 0 || math.IsInf(perSecond, 1) {
		return nil
	}
	return &limiter{every: time.Duration(float64(time.Second) / perSecond)}
}

// wait blocks until the next call may go out, or ctx ends.
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	at := l.next
	if at.Before(now) {
		at = now
	}
	l.next = at.Add(l.every)
	l.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		return sleep(ctx, d)
	}
	return nil
}

// Run is the background refresher. It asks the store for grants due now (an
// index range scan, so a pass costs in proportion to the due grants, not to
// all grants) and hands them to Concurrency workers, which refresh them
// through the same path as page views, at most MaxPerSecond IdP calls a
// second. Grants past their session policy are revoked and deleted. Between
// passes it sleeps until the next grant is due (tickInterval while work is
// pending, at most maxIdleSleep), and wakes early when this process moves a
// grant's refresh earlier. Run returns nil when ctx is done, after every
// refresh in progress has been written to the store.
func (k *Keeper) Run(ctx context.Context) error {
	if k.idp == nil {
		return errors.New("auth: run: keeper has no provider")
	}
	queue := make(chan string, k.queueCap())
	var wg sync.WaitGroup
	for range k.opts.Concurrency {
		wg.Go(func() {
			for id := range queue {
				k.processDue(ctx, id)
				k.mu.Lock()
				delete(k.queued, id)
				k.mu.Unlock()
			}
		})
	}
	// Refreshes run on a context detached from ctx, so once the workers
	// drain the queue (instantly: ctx is done) every started refresh is
	// stored.
	defer wg.Wait()
	defer close(queue)

	wake := make(chan struct{}, 1)
	k.mu.Lock()
	k.wake = wake
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.wake = nil
		k.mu.Unlock()
	}()
	// Two deadlines share one timer: the next scheduler pass and the next
	// count of grants by state.
	timer := time.NewTimer(0)
	defer timer.Stop()
	var nextTick, nextCount time.Time
	for {
		woken := false
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-wake:
			woken = true
		}
		now := time.Now()
		if !now.Before(nextCount) {
			k.countStates(ctx)
			nextCount = now.Add(gaugeInterval)
		}
		if woken || !now.Before(nextTick) {
			nextTick = now.Add(k.tick(ctx, now, queue))
		}
		timer.Reset(minTime(nextTick, nextCount).Sub(now))
	}
}

// nudge wakes Run's scheduler, if it is running, to look at the due list
// now: a grant's refresh time just moved earlier.
func (k *Keeper) nudge() {
	k.mu.Lock()
	w := k.wake
	k.mu.Unlock()
	if w != nil {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// queueCap sizes the work queue: enough to keep the workers busy for one
// tick at the rate cap, so a pass never reads more ids than it can start.
func (k *Keeper) queueCap() int {
	n := 2 * k.opts.Concurrency
	if k.opts.MaxPerSecond > 0 {
		n += int(math.Ceil(k.opts.MaxPerSecond * tickInterval.Seconds()))
	}
	return n
}

// tick hands the grants due at now to the workers, skipping those already
// queued or in progress, and returns how long the scheduler may sleep. It
// never blocks: when the queue is full, the rest wait for the next pass,
// most overdue first.
func (k *Keeper) tick(ctx context.Context, now time.Time, queue chan<- string) time.Duration {
	k.mu.Lock()
	busy := len(k.queued)
	k.mu.Unlock()
	ids, err := k.st.DueGrants(ctx, now, busy+cap(queue))
	if err != nil {
		if ctx.Err() == nil {
			k.log.Warn("auth: list due grants", "err", err)
		}
		return tickInterval
	}
	handed := 0
	defer func() {
		k.metrics.mu.Lock()
		k.metrics.m.Ticks++
		k.metrics.m.Due += int64(handed)
		k.metrics.mu.Unlock()
	}()
	for _, id := range ids {
		k.mu.Lock()
		_, dup := k.queued[id]
		if !dup {
			k.queued[id] = struct{}{}
		}
		k.mu.Unlock()
		if dup {
			continue
		}
		select {
		case queue <- id:
			handed++
		default:
			k.mu.Lock()
			delete(k.queued, id)
			k.mu.Unlock()
			return tickInterval
		}
	}
	if len(ids) == busy+cap(queue) {
		k.backlogged(now)
	} else {
		k.mu.Lock()
		k.backlogSince = time.Time{}
		k.mu.Unlock()
	}
	if busy > 0 || len(ids) > 0 {
		return tickInterval // work in progress: look again soon
	}
	return k.untilNextDue(ctx, now)
}

// backlogged notes a pass that found more due grants than it could start.
// Sustained, it means the rate cap (or Concurrency) is below what the grants
// need: each idle grant needs one call per ~0.75 × RefreshTokenLifetime, so
// MaxPerSecond 2 keeps about 8,000 grants alive at Authelia's 90 minutes.
// Grants that fall behind lapse, so say so loudly.
func (k *Keeper) backlogged(now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.backlogSince.IsZero() {
		k.backlogSince, k.backlogWarned = now, time.Time{}
		return
	}
	if now.Sub(k.backlogSince) >= backlogWarn && now.Sub(k.backlogWarned) >= backlogWarn {
		k.backlogWarned = now
		k.log.Warn("auth: refresh backlog: more grants are due than MaxPerSecond and Concurrency allow; "+
			"grants may lapse", "since", k.backlogSince, "max_per_second", k.opts.MaxPerSecond,
			"concurrency", k.opts.Concurrency)
	}
}

// untilNextDue is how long until the earliest grant comes due, at most
// maxIdleSleep: the bound covers changes made by other processes (which
// their own schedulers handle anyway).
func (k *Keeper) untilNextDue(ctx context.Context, now time.Time) time.Duration {
	ids, err := k.st.DueGrants(ctx, now.Add(maxIdleSleep), 1)
	if err != nil || len(ids) == 0 {
		return maxIdleSleep
	}
	g, err := k.st.Grant(ctx, ids[0])
	if err != nil {
		return tickInterval
	}
	return max(g.NextRefreshAt.Sub(now), 10*time.Millisecond)
}

// processDue handles one due grant: delete it if its session is over,
// reschedule it if it is no longer due (the user went idle), or refresh it.
func (k *Keeper) processDue(ctx context.Context, id string) {
	g, err := k.st.Grant(ctx, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			k.log.Warn("auth: read due grant", "grant", id, "err", err)
		}
		return
	}
	now := time.Now()
	switch {
	case g.State == store.StateNeedsSignIn:
		return
	case !now.Before(k.policyEnd(g)):
		k.expire(ctx, id)
		return
	case !k.needs(g, now, want{background: true}):
		// Not due after all: the session went idle since the time was set.
		// (TouchGrant rewrites LastActive with the value just read; a page
		// view racing this loses one activity mark, which its next view
		// restores.)
		if next := k.schedule(g, now); g.State == store.StateOK && !next.Equal(g.NextRefreshAt) {
			if err := k.st.TouchGrant(ctx, id, g.LastActive, next); err != nil && !errors.Is(err, store.ErrNotFound) {
				k.log.Warn("auth: reschedule grant", "grant", id, "err", err)
			}
		}
		return
	}
	if _, err := k.refreshGrant(ctx, id, want{background: true}); err != nil &&
		!errors.Is(err, ErrNeedsSignIn) && ctx.Err() == nil {
		k.log.Debug("auth: background refresh failed", "grant", id, "err", err)
	}
}

// expire revokes and deletes a grant whose session policy has run out,
// unless a page view revived it in the meantime.
func (k *Keeper) expire(ctx context.Context, id string) {
	if err := k.limit.wait(ctx); err != nil {
		return
	}
	unlock, err := k.locks.lock(ctx, id)
	if err != nil {
		return
	}
	defer unlock()
	leased, g, err := k.claim(ctx, id, want{force: true, background: true})
	if !leased {
		return
	}
	defer k.release(id)
	if time.Now().Before(k.policyEnd(g)) {
		return
	}
	k.metrics.add(&k.metrics.m.Expired, 1)
	k.log.Info("auth: session policy ended; revoking grant", "grant", id)
	if err := k.retire(context.WithoutCancel(ctx), id); err != nil {
		k.log.Warn("auth: retire expired grant", "grant", id, "err", err)
	}
}

// countStates refreshes the grants-by-state gauge.
func (k *Keeper) countStates(ctx context.Context) {
	counts, err := k.st.CountGrantsByState(ctx)
	if err != nil {
		if ctx.Err() == nil {
			k.log.Warn("auth: count grants", "err", err)
		}
		return
	}
	k.metrics.setStates(counts)
}

// isUnknown reports whether this process saw a refresh of g's current refresh token end with an unknown outcome,
// whether or not the store took the marker.
func (k *Keeper) isUnknown(g store.Grant) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	rt, ok := k.unknown[g.ID]
	if ok && rt != g.RefreshToken {
		delete(k.unknown, g.ID)
		return false
	}
	return ok
}
