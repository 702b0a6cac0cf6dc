package auth

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/postern/postern/internal/store"
)

// Timing of the scheduler.
const (
	tickInterval  = 5 * time.Second  // scheduler pass while work is pending
	maxIdleSleep  = 5 * time.Minute  // longest sleep between passes
	backlogWarn   = 5 * time.Minute  // a backlog this old is logged (again)
	gaugeInterval = time.Minute      // how often Run counts grants by state and sweeps ended grants
	shutdownGrace = 30 * time.Second // how long Run's return waits for token calls in flight
)

// Run is the background refresher. It asks the store for grants due now (an
// index range scan, so a pass costs in proportion to the due grants, not to
// all grants) and hands them to Concurrency workers, which refresh them
// through the same path as page views, at most MaxPerSecond IdP calls a
// second. Grants past their session policy are revoked and deleted, and
// grants that need a sign-in and went unused for IdleTimeout are deleted.
// Between passes it sleeps until the next grant is due (tickInterval while
// work is pending, at most maxIdleSleep), and wakes early when this process
// moves a grant's refresh earlier.
//
// Run returns nil when ctx is done, after every refresh in progress has been
// written to the store: token calls still waiting for the IdP after
// shutdownGrace are cancelled and recorded as outcome_unknown.
func (k *Keeper) Run(ctx context.Context) error {
	if k.idp == nil {
		return errors.New("auth: run: keeper has no provider")
	}
	queue := make(chan string, k.queueCap())
	var workers sync.WaitGroup
	for range k.opts.Concurrency {
		workers.Go(func() {
			for id := range queue {
				k.processDue(ctx, id)
				k.mu.Lock()
				delete(k.queued, id)
				k.mu.Unlock()
			}
		})
	}
	defer k.drain(&workers)
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
			k.sweepEnded(ctx, now)
			nextCount = now.Add(gaugeInterval)
		}
		if woken || !now.Before(nextTick) {
			nextTick = now.Add(k.tick(ctx, now, queue))
		}
		timer.Reset(minTime(nextTick, nextCount).Sub(now))
	}
}

// drain waits for the refreshes in flight (the workers' and those behind
// page views) for at most shutdownGrace; then it cancels their token calls,
// which records them as outcome_unknown, and waits for those writes.
func (k *Keeper) drain(workers *sync.WaitGroup) {
	grace := time.NewTimer(shutdownGrace)
	defer grace.Stop()
	cancelled := false
	wait := func(done <-chan struct{}) {
		if !cancelled {
			select {
			case <-done:
				return
			case <-grace.C:
				k.log.Warn("auth: shutdown: cancelling token calls still waiting for the identity provider")
				k.calls.cancelCalls()
				cancelled = true
			}
		}
		<-done
	}
	wdone := make(chan struct{})
	go func() { workers.Wait(); close(wdone) }()
	wait(wdone)
	wait(k.calls.idleCh())
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
	if k.opts.MaxPerSecond > 0 && !math.IsInf(k.opts.MaxPerSecond, 1) {
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
	ids, err := k.dueIDs(ctx, now, busy+cap(queue))
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
			if _, claimed := k.st.(dueClaimer); claimed {
				k.release(id) // leave it to another instance, or to our next pass
			}
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

// dueClaimer is a store that hands each due grant to one process at a time: instances sharing PostgreSQL split the
// due list between them (FOR UPDATE SKIP LOCKED) instead of all reading the same ids, each taking a rate-limit slot
// and all but one then finding the lease taken. The claim is the grant's refresh lease, held by this process (its
// Owner) until the refresh path, which takes the same lease again, releases it, or until it expires.
type dueClaimer interface {
	ClaimDueGrants(ctx context.Context, owner string, now, until time.Time, limit int) ([]string, error)
}

// dueIDs lists the grants due at now, claimed for this process where the store can do that.
func (k *Keeper) dueIDs(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if c, ok := k.st.(dueClaimer); ok {
		return c.ClaimDueGrants(ctx, k.opts.Owner, now, now.Add(k.opts.LeaseTTL), limit)
	}
	return k.st.DueGrants(ctx, now, limit)
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
	if _, claimed := k.st.(dueClaimer); claimed {
		defer k.release(id) // the scheduler's claim, whatever happens below
	}
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
	case !now.Before(k.pol.end(g)):
		k.expire(ctx, id)
		return
	case !k.pol.needs(g, now, modeBackground, ""):
		// Not due after all: the session went idle since the time was set.
		// (TouchGrant rewrites LastActive with the value just read; a page
		// view racing this loses one activity mark, which its next view
		// restores.)
		if next := k.pol.schedule(g, now); g.State == store.StateOK && !next.Equal(g.NextRefreshAt) {
			if err := k.st.TouchGrant(ctx, id, g.LastActive, next); err != nil && !errors.Is(err, store.ErrNotFound) {
				k.log.Warn("auth: reschedule grant", "grant", id, "err", err)
			}
		}
		return
	}
	if _, err := k.refresh(ctx, id, modeBackground, ""); err != nil &&
		!errors.Is(err, ErrNeedsSignIn) && ctx.Err() == nil {
		k.log.Debug("auth: background refresh failed", "grant", id, "err", err)
	}
}

// expire revokes and deletes a grant whose session policy has run out
// (ReasonSessionEnded), unless a page view revived it in the meantime.
func (k *Keeper) expire(ctx context.Context, id string) {
	if err := k.limit.Wait(ctx); err != nil {
		return
	}
	unlock, err := k.locks.lock(ctx, id)
	if err != nil {
		return
	}
	defer unlock()
	leased, g, _ := k.claim(ctx, id, modeForce, "")
	if !leased {
		return
	}
	defer k.release(id)
	if time.Now().Before(k.pol.end(g)) {
		return
	}
	k.metrics.add(&k.metrics.m.Expired, 1)
	k.log.Info("auth: session policy ended; revoking grant", "grant", id)
	if err := k.retire(context.WithoutCancel(ctx), id, ReasonSessionEnded); err != nil {
		k.log.Warn("auth: retire expired grant", "grant", id, "err", err)
	}
}

// sweepEnded deletes grants in needs_sign_in whose user has not come back
// within IdleTimeout (ReasonAbandoned): their tokens are already dropped, the
// scheduler never visits them, and there is no session left to come back
// with. One statement does the transition for all of them.
func (k *Keeper) sweepEnded(ctx context.Context, now time.Time) {
	n, err := k.st.DeleteEndedGrants(ctx, now.Add(-k.opts.IdleTimeout))
	switch {
	case err != nil && ctx.Err() == nil:
		k.log.Warn("auth: delete ended grants", "err", err)
	case n > 0:
		k.metrics.add(&k.metrics.m.Abandoned, int64(n))
		k.log.Info("auth: ended grants deleted", "count", n)
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
