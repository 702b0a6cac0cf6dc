package auth

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/postern/postern/internal/store"
)

// TestPolicy is the specification of the time policy: when a grant is
// refreshed, for each kind of grant, with every jitter the grant id can give.
func TestPolicy(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	hourToken := store.Grant{RefreshToken: "rt", AccessToken: "at", LastRefresh: t0, State: store.StateOK,
		AccessExpiry: t0.Add(time.Hour), RefreshExpiry: t0.Add(90 * time.Minute), CreatedAt: t0.Add(-time.Hour)}
	with := func(g store.Grant, f func(*store.Grant)) store.Grant { f(&g); return g }
	tests := []struct {
		name     string
		opts     KeeperOptions
		g        store.Grant
		from, to time.Duration // schedule() after t0
	}{
		{"idle: 0.75–0.8 of the refresh-token lifetime", KeeperOptions{},
			with(hourToken, func(g *store.Grant) { g.LastActive = t0.Add(-time.Hour) }), 67*time.Minute + 30*time.Second, 72 * time.Minute},
		{"active: RefreshBeforeExpiry (5m) + up to 20% before expiry", KeeperOptions{},
			with(hourToken, func(g *store.Grant) { g.LastActive = t0 }), 54 * time.Minute, 55 * time.Minute},
		{"active, TokenCallTimeout above RefreshBeforeExpiry: the call timeout + 20% before expiry",
			KeeperOptions{TokenCallTimeout: 10 * time.Minute},
			with(hourToken, func(g *store.Grant) { g.LastActive = t0 }), 48 * time.Minute, 50 * time.Minute},
		{"active, 30 s access tokens: at half their life", KeeperOptions{},
			with(hourToken, func(g *store.Grant) { g.LastActive = t0; g.AccessExpiry = t0.Add(30 * time.Second) }),
			15 * time.Second, 15 * time.Second},
		{"idle timeout comes first", KeeperOptions{},
			with(hourToken, func(g *store.Grant) { g.LastActive = t0.Add(-24*time.Hour + 10*time.Minute) }), 10 * time.Minute, 10 * time.Minute},
		{"lifetime comes first", KeeperOptions{Lifetime: 90 * time.Minute},
			with(hourToken, func(g *store.Grant) { g.LastActive = t0 }), 30 * time.Minute, 30 * time.Minute},
		{"device grant: no idle timeout, a month idle still refreshes by the token lifetime", KeeperOptions{},
			with(hourToken, func(g *store.Grant) { g.Kind = store.KindDevice; g.LastActive = t0.Add(-30 * 24 * time.Hour) }),
			67*time.Minute + 30*time.Second, 72 * time.Minute},
		{"device grant: the browser Lifetime does not apply", KeeperOptions{Lifetime: 90 * time.Minute},
			with(hourToken, func(g *store.Grant) { g.Kind = store.KindDevice; g.LastActive = t0.Add(-time.Hour) }),
			67*time.Minute + 30*time.Second, 72 * time.Minute},
		{"device grant: DeviceLifetime comes first", KeeperOptions{DeviceLifetime: 90 * time.Minute},
			with(hourToken, func(g *store.Grant) { g.Kind = store.KindDevice; g.LastActive = t0 }), 30 * time.Minute, 30 * time.Minute},
		{"no refresh token: when the access token expires", KeeperOptions{},
			with(hourToken, func(g *store.Grant) { g.LastActive = t0; g.RefreshToken = "" }), time.Hour, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.opts.withDefaults().policy()
			for i := range 50 {
				g := tc.g
				g.ID = fmt.Sprint("g", i)
				got := p.schedule(g, t0).Sub(t0)
				if got < tc.from || got > tc.to {
					t.Fatalf("schedule(%s) = t0+%v, want t0+[%v, %v]", g.ID, got, tc.from, tc.to)
				}
				if again := p.schedule(g, t0).Sub(t0); again != got {
					t.Fatalf("schedule() moved from %v to %v on recomputation", got, again)
				}
			}
		})
	}
}

// TestBackoff: exponential from 5 s to a minute with equal jitter, and never
// so long that the refresh token lapses before two more tries.
func TestBackoff(t *testing.T) {
	p := KeeperOptions{}.withDefaults().policy()
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		rtLeft    time.Duration // refresh-token lifetime left
		failCount int
		from, to  time.Duration
	}{
		{failCount: 1, rtLeft: time.Hour, from: 2500 * time.Millisecond, to: 5 * time.Second},
		{failCount: 2, rtLeft: time.Hour, from: 5 * time.Second, to: 10 * time.Second},
		{failCount: 4, rtLeft: time.Hour, from: 20 * time.Second, to: 40 * time.Second},
		{failCount: 30, rtLeft: time.Hour, from: 30 * time.Second, to: time.Minute},
		{failCount: 30, rtLeft: 30 * time.Second, from: 10 * time.Second, to: 10 * time.Second},
		{failCount: 30, rtLeft: time.Second, from: time.Second, to: time.Second},
	} {
		t.Run(fmt.Sprint(tc.failCount, " failures, ", tc.rtLeft, " left"), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for i := range 50 {
				g := store.Grant{ID: fmt.Sprint("g", i), FailCount: tc.failCount, RefreshExpiry: t0.Add(tc.rtLeft)}
				d := p.backoff(g, t0)
				if d < tc.from || d > tc.to {
					t.Fatalf("backoff() = %v, want [%v, %v]", d, tc.from, tc.to)
				}
				seen[d] = true
			}
			if tc.from != tc.to && len(seen) < 10 {
				t.Errorf("backoff() took %d distinct values over 50 grants, want jitter", len(seen))
			}
		})
	}
}

// TestDecide: whether a caller's mode needs a refresh now, and what it gets
// when it does not.
func TestDecide(t *testing.T) {
	p := KeeperOptions{}.withDefaults().policy()
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	twoMin := store.Grant{ID: "g", RefreshToken: "rt", AccessToken: "at", State: store.StateOK, LastRefresh: t0,
		LastActive: t0, AccessExpiry: t0.Add(2 * time.Minute), RefreshExpiry: t0.Add(90 * time.Minute)}
	degraded := twoMin
	degraded.State, degraded.LastError, degraded.NextRefreshAt = store.StateDegraded, "unavailable", t0.Add(90*time.Second)
	rejected := degraded
	rejected.LastError = "rejected"
	ended := twoMin
	ended.State, ended.LastError = store.StateNeedsSignIn, "invalid_grant"
	for _, tc := range []struct {
		name     string
		g        store.Grant
		at       time.Duration
		m        mode
		rejected string
		do       bool
		err      error
	}{
		{"view, 90 s of a 2-minute token left: half its life remains", twoMin, 30 * time.Second, modeView, "", false, nil},
		{"view, 30 s of a 2-minute token left", twoMin, 90 * time.Second, modeView, "", true, nil},
		{"replace, the refused token is current", twoMin, 0, modeReplace, "at", true, nil},
		{"replace, the refused token was already replaced", twoMin, 0, modeReplace, "older", false, nil},
		{"background, not yet due", twoMin, 0, modeBackground, "", false, nil},
		{"background, due", twoMin, 61 * time.Second, modeBackground, "", true, nil},
		{"view of a degraded grant backing off", degraded, 65 * time.Second, modeView, "", false, ErrTransient},
		{"view of a grant failing by configuration", rejected, 65 * time.Second, modeView, "", false, ErrRejected},
		{"background retry of a degraded grant, before its time", degraded, 30 * time.Second, modeBackground, "", false, nil},
		{"background retry of a degraded grant, at its time", degraded, 90 * time.Second, modeBackground, "", true, nil},
		{"needs_sign_in", ended, 90 * time.Second, modeView, "", false, ErrNeedsSignIn},
		{"force, whatever the state", ended, 0, modeForce, "", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			do, err := p.decide(tc.g, t0.Add(tc.at), tc.m, tc.rejected)
			if do != tc.do || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("decide() = %v, %v; want %v, %v", do, err, tc.do, tc.err)
			}
		})
	}
}
