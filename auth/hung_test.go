package auth

import (
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
)

// TestHungIdP: the IdP freezes — it accepts and reads requests and answers
// them only when it resumes, as Authelia under SIGSTOP, a stalled database or
// a queueing proxy does — while two processes sharing one store (two store
// handles on one file) serve bursts of page views of a grant with 30 s access
// tokens. No grant may be lost and no refresh token re-used: views get a
// token while a usable one exists, ErrTransient (the friendly 503) while none
// does, and tokens again after the freeze, and nobody has to sign in again.
func TestHungIdP(t *testing.T) {
	for _, tc := range []struct {
		name     string
		freeze   time.Duration
		dropGone bool          // the IdP drops requests whose client went away (else it still processes them)
		timeout  time.Duration // TokenCallTimeout; 0 = the default (2m)
		lost     bool          // the grant is expected to need a sign-in (with no re-use)
		devIdP   bool          // freeze with the dev IdP's own hook (else in the transport, in arrival order)
	}{
		{name: "90s, abandoned requests still processed", freeze: 90 * time.Second},
		{name: "90s, the dev IdP's freeze", freeze: 90 * time.Second, devIdP: true},
		{name: "10m, abandoned requests still processed, TokenCallTimeout 15m", freeze: 10 * time.Minute, timeout: 15 * time.Minute},
		{name: "10m, abandoned requests dropped", freeze: 10 * time.Minute, dropGone: true},
		// The limit of waiting: an IdP that commits a refresh Postern gave up on has spent the refresh token. The
		// probe after the freeze says so, and the grant needs a sign-in without the spent token being sent again.
		{name: "10m beyond TokenCallTimeout, abandoned requests still processed", freeze: 10 * time.Minute, lost: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testHungIdP(t, tc.freeze, tc.dropGone, tc.timeout, tc.lost, tc.devIdP) })
		})
	}
}

func testHungIdP(t *testing.T, freeze time.Duration, dropGone bool, timeout time.Duration, lost, devIdP bool) {
	e := newKeeperEnvTTL(t, 30*time.Second)
	opts := KeeperOptions{IdleTimeout: 1 << 62, Lifetime: 1 << 62, TokenCallTimeout: timeout}
	opts.Owner = "process-a"
	a := e.keeperProbing(t, e.st, opts, byIntrospection)
	opts.Owner = "process-b"
	b := e.keeperProbing(t, e.openStore(t), opts, byIntrospection)
	id := e.start(t, a)
	runKeeper(t, a)
	runKeeper(t, b)

	rng := rand.New(rand.NewPCG(3, 4))
	type tally struct{ tokens, transient atomic.Int64 }
	// burst sends 1–5 views spread over 3 s to either process and checks each
	// answer against the grant as stored when the view started.
	burst := func(phase string, c *tally) {
		n := 1 + rng.IntN(5)
		done := make(chan struct{}, n)
		for range n {
			k := a
			if rng.IntN(2) == 1 {
				k = b
			}
			delay := time.Duration(rng.Int64N(int64(3 * time.Second)))
			go func() {
				defer func() { done <- struct{}{} }()
				time.Sleep(delay)
				before := e.grant(t, id)
				hadToken := usable(before, time.Now())
				tok, err := k.Token(t.Context(), id)
				switch {
				case err == nil:
					if time.Until(tok.Expiry) <= 0 {
						t.Errorf("%s: Token() handed out an expired token", phase)
					}
					c.tokens.Add(1)
				case errors.Is(err, ErrTransient) && !hadToken:
					c.transient.Add(1)
				case errors.Is(err, ErrTransient):
					t.Errorf("%s: Token() = %v while a usable token was stored", phase, err)
				case errors.Is(err, ErrNeedsSignIn) && lost:
				default:
					t.Errorf("%s: Token() = %v", phase, err)
				}
			}()
		}
		for range n {
			<-done
		}
	}
	type counts struct{ tokens, transient int64 }
	views := func(phase string, d time.Duration) counts {
		var c tally
		for end := time.Now().Add(d); time.Now().Before(end); {
			burst(phase, &c)
		}
		return counts{c.tokens.Load(), c.transient.Load()}
	}

	before := views("before", 2*time.Minute)
	if devIdP {
		e.idp.Freeze(idp.FreezeOptions{For: freeze})
	} else {
		e.faults.freeze(freeze, dropGone)
	}
	during := views("frozen", freeze)
	// A grant whose refresh failed during the freeze is retried within the
	// backoff cap of the IdP's return; until then views without a usable
	// token still get ErrTransient (checked in burst).
	recovering := views("recovering", backoffMax+tickInterval)
	after := views("after", 2*time.Minute)
	t.Logf("views before: %+v, during the freeze: %+v, recovering: %+v, after: %+v", before, during, recovering, after)

	e.checkNoReuse(t)
	if before.transient != 0 || before.tokens == 0 {
		t.Errorf("before the freeze: %+v, want tokens only", before)
	}
	if during.transient == 0 {
		t.Errorf("during the freeze: %+v, want some ErrTransient (30 s tokens cannot outlast it)", during)
	}
	g := e.grant(t, id)
	if lost {
		if g.State != "needs_sign_in" || Reason(g.LastError) != ReasonRefreshSpent {
			t.Errorf("grant = %s (%s), want needs_sign_in (refresh_spent)", g.State, g.LastError)
		}
		return
	}
	if after.transient != 0 || after.tokens == 0 {
		t.Errorf("after the freeze: %+v, want tokens only", after)
	}
	if g.State != "ok" || !e.idp.Active(g.RefreshToken) {
		t.Errorf("grant = %s (%s), refresh token active %v; want ok and active", g.State, g.LastError, e.idp.Active(g.RefreshToken))
	}
	for _, k := range []*Keeper{a, b} {
		if m := k.Metrics(); len(m.SignInRequired) != 0 {
			t.Errorf("Metrics().SignInRequired = %v, want none", m.SignInRequired)
		}
	}
}

// TestRunShutdownCancelsHungCall: at shutdown Run waits shutdownGrace for a
// token call the frozen IdP has not answered, then cancels it and records the
// outcome as unknown, so the next attempt (from any process) probes first.
func TestRunShutdownCancelsHungCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeperProbing(t, e.st, KeeperOptions{}, byIntrospection)
		id := e.start(t, k)
		before := e.grant(t, id)
		stop := runKeeper(t, k)
		sleepUntil(k.pol.refreshAt(before, before.LastRefresh.Add(time.Hour)).Add(-time.Second)) // idle by then
		e.faults.freeze(time.Hour, false)
		time.Sleep(tickInterval + 2*time.Second) // the refresh is out, waiting for the IdP
		if n := e.idp.Stats().TokenRequests; n != 1 {
			t.Fatalf("token requests answered = %d, want 1 (the code exchange; the refresh is held)", n)
		}
		start := time.Now()
		stop()
		if waited := time.Since(start); waited != shutdownGrace {
			t.Errorf("Run returned %v after cancellation, want %v (the grace for calls in flight)", waited, shutdownGrace)
		}
		g := e.grant(t, id)
		if g.State != "degraded" || Reason(g.LastError) != ReasonOutcomeUnknown || g.RefreshToken != before.RefreshToken {
			t.Errorf("grant after shutdown = %s (%s), same refresh token %v; want degraded (outcome_unknown), true",
				g.State, g.LastError, g.RefreshToken == before.RefreshToken)
		}
		time.Sleep(time.Hour) // the IdP resumes and answers the held requests to no one
	})
}
