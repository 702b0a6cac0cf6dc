package auth

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/postern/postern/internal/store"
)

func TestKeeperStartTokenInfo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{})
		id := e.start(t, k)
		tok, err := k.Token(t.Context(), id)
		if err != nil {
			t.Fatalf("Token() = %v", err)
		}
		if tok.Address != "ann@example.org" || !e.idp.Active(tok.Access) || time.Until(tok.Expiry) < 59*time.Minute {
			t.Errorf("Token() = address %q, active %v, expires in %v; want ann@example.org, true, ~1h",
				tok.Address, e.idp.Active(tok.Access), time.Until(tok.Expiry))
		}
		if n := e.idp.Stats().TokenRequests; n != 1 {
			t.Errorf("token requests = %d, want 1 (the code exchange)", n)
		}
		info, err := k.Info(t.Context(), id)
		if err != nil {
			t.Fatalf("Info() = %v", err)
		}
		if info.State != "ok" || info.Identity.Email != "Ann@Example.org" || info.Identity.Issuer != keeperIssuer {
			t.Errorf("Info() = %+v", info)
		}
		if _, err := k.Token(t.Context(), "no-such-grant"); !errors.Is(err, ErrNeedsSignIn) {
			t.Errorf("Token(unknown grant) = %v, want ErrNeedsSignIn", err)
		}
	})
}

// TestConcurrentTokenAfterExpiry: 200 page views arriving together after the
// access token expired share one token-endpoint call.
func TestConcurrentTokenAfterExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{})
		id := e.start(t, k)
		time.Sleep(61 * time.Minute) // the access token has expired; the refresh token lives 90m
		before := e.idp.Stats().TokenRequests

		const callers = 200
		var wg sync.WaitGroup
		tokens := make([]string, callers)
		errs := make([]error, callers)
		for i := range callers {
			wg.Go(func() {
				tok, err := k.Token(t.Context(), id)
				tokens[i], errs[i] = tok.Access, err
			})
		}
		wg.Wait()
		for i := range callers {
			if errs[i] != nil || tokens[i] != tokens[0] {
				t.Fatalf("caller %d: Token() = %v (same token as caller 0: %v)", i, errs[i], tokens[i] == tokens[0])
			}
		}
		if n := e.idp.Stats().TokenRequests - before; n != 1 {
			t.Errorf("token-endpoint calls for %d concurrent Token() = %d, want 1", callers, n)
		}
		if !e.idp.Active(tokens[0]) {
			t.Error("the shared token is not active at the IdP")
		}
		if got := e.grant(t, id).AccessToken; got != tokens[0] {
			t.Error("the token handed out is not the stored one")
		}
		e.checkNoReuse(t)
	})
}

func TestInvalidGrantNeedsSignIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{})
		id := e.start(t, k)
		// Revoke the grant behind Postern's back (as an admin would).
		if err := e.p.Revoke(t.Context(), e.grant(t, id).RefreshToken, "refresh_token"); err != nil {
			t.Fatalf("Revoke() = %v", err)
		}
		time.Sleep(59 * time.Minute)
		k.Token(t.Context(), id) // the access token is still valid: the refresh runs behind the view
		settle(k)
		if _, err := k.Token(t.Context(), id); !errors.Is(err, ErrNeedsSignIn) {
			t.Fatalf("Token() after invalid_grant = %v, want ErrNeedsSignIn", err)
		}
		g := e.grant(t, id)
		if g.State != store.StateNeedsSignIn || Reason(g.LastError) != ReasonInvalidGrant ||
			g.AccessToken != "" || g.RefreshToken != "" || g.IDToken != "" {
			t.Errorf("grant = state %q, reason %q, tokens dropped %v; want needs_sign_in, invalid_grant, true",
				g.State, g.LastError, g.AccessToken+g.RefreshToken+g.IDToken == "")
		}
		before := e.idp.Stats().TokenRequests
		if _, err := k.Token(t.Context(), id); !errors.Is(err, ErrNeedsSignIn) {
			t.Errorf("second Token() = %v, want ErrNeedsSignIn", err)
		}
		if _, err := k.Replace(t.Context(), id, "whatever"); !errors.Is(err, ErrNeedsSignIn) {
			t.Errorf("Replace() = %v, want ErrNeedsSignIn", err)
		}
		if n := e.idp.Stats().TokenRequests - before; n != 0 {
			t.Errorf("token requests after needs_sign_in = %d, want 0", n)
		}
		if m := k.Metrics(); m.RefreshOutcomes[ReasonInvalidGrant] != 1 || m.SignInRequired[ReasonInvalidGrant] != 1 {
			t.Errorf("Metrics() = %+v", m)
		}
	})
}

// TestLostRefreshResponse: the IdP commits a rotation and the answer is
// lost. The probe shows it — introspection finds the refresh token spent, or
// userinfo finds the old access token revoked — so the grant needs a sign-in
// with the probe's reason, and the spent refresh token is never presented
// again.
func TestLostRefreshResponse(t *testing.T) {
	for _, tc := range []struct {
		probe  probeKind
		reason Reason
		result ProbeResult
	}{
		{byIntrospection, ReasonRefreshSpent, ProbeInactive},
		{byUserinfo, ReasonRefreshLost, ProbeRevoked},
	} {
		t.Run(string(tc.probe), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newKeeperEnv(t)
				k := e.keeperProbing(t, e.st, KeeperOptions{}, tc.probe)
				stop := runKeeper(t, k)
				id := e.start(t, k)
				old := e.grant(t, id)
				e.idp.LoseNextTokenResponse()
				sleepUntil(old.AccessExpiry.Add(-2 * time.Minute))
				// The access token is still valid: the view gets it at once, and the refresh runs behind it.
				if tok, err := k.Token(t.Context(), id); err != nil || tok.Access != old.AccessToken {
					t.Fatalf("Token() while the access token is valid = %v, want the current token", err)
				}
				settle(k)
				if _, err := k.Token(t.Context(), id); !errors.Is(err, ErrNeedsSignIn) {
					t.Fatalf("Token() after a lost refresh = %v, want ErrNeedsSignIn", err)
				}
				time.Sleep(3 * time.Hour) // the refresher must leave it alone
				stop()
				s := e.idp.Stats()
				if s.RefreshReuses != 0 || s.TokenRequests != 2 {
					t.Errorf("IdP: %d refresh reuses, %d token requests; want 0 and 2 (code exchange, lost refresh)",
						s.RefreshReuses, s.TokenRequests)
				}
				g := e.grant(t, id)
				if g.State != store.StateNeedsSignIn || Reason(g.LastError) != tc.reason {
					t.Errorf("grant = %q (%q), want needs_sign_in (%s)", g.State, g.LastError, tc.reason)
				}
				info, err := k.Info(t.Context(), id)
				if err != nil || info.Reason != tc.reason {
					t.Errorf("Info() = reason %q, %v; want %q for the Session page", info.Reason, err, tc.reason)
				}
				if m := k.Metrics(); m.Probes[tc.result] != 1 || m.RefreshOutcomes[ReasonOutcomeUnknown] != 1 ||
					m.SignInRequired[tc.reason] != 1 {
					t.Errorf("Metrics() = %+v", m)
				}
			})
		})
	}
}

// TestUnknownOutcomeNotCommitted: the refresh request dies after sending
// without reaching the IdP. The probe finds the old access token alive, the
// grant stays usable, and the retry after backoff probes once more (a slow
// IdP might have committed late) before it sends the refresh token and
// succeeds.
func TestUnknownOutcomeNotCommitted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		at    time.Duration // when, after sign-in, the failing refresh happens
		view  bool          // a page view triggers it (else the background refresher)
		probe probeKind
		want  ProbeResult // the result of both probes
	}{
		{"probe while access token valid", 58 * time.Minute, true, byUserinfo, ProbeAlive},
		{"idle grant, access token expired", 0, false, byUserinfo, ProbeExpired},
		{"introspection, access token valid", 58 * time.Minute, true, byIntrospection, ProbeActive},
		{"introspection, idle grant", 0, false, byIntrospection, ProbeActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newKeeperEnv(t)
				k := e.keeperProbing(t, e.st, KeeperOptions{}, tc.probe)
				id := e.start(t, k)
				e.faults.set(func(f *faults) { f.resetToken = 1 })
				stop := runKeeper(t, k)
				if tc.view {
					time.Sleep(tc.at)
					tok, err := k.Token(t.Context(), id)
					if err != nil || tok.Access != e.grant(t, id).AccessToken {
						t.Fatalf("Token() during an unknown outcome = %v, want the old, still valid token", err)
					}
					settle(k) // the view did not wait for the refresh it started
					if g := e.grant(t, id); g.State != store.StateDegraded || Reason(g.LastError) != ReasonOutcomeUnknown {
						t.Errorf("grant = %q (%q), want degraded (outcome_unknown) until a second probe", g.State, g.LastError)
					}
				}
				time.Sleep(3 * time.Hour)
				stop()
				g := e.grant(t, id)
				if g.State != store.StateOK || !e.idp.Active(g.RefreshToken) {
					t.Errorf("grant = %q (%q), refresh token active %v; want ok and active",
						g.State, g.LastError, e.idp.Active(g.RefreshToken))
				}
				e.checkNoReuse(t)
				m := k.Metrics()
				want := tc.want
				if m.Probes[want] != 2 || m.RefreshOutcomes[ReasonOutcomeUnknown] != 1 {
					t.Errorf("Metrics() = %+v, want two %q probes: after the failure and before the retry", m, want)
				}
			})
		})
	}
}

// TestOutage: the IdP answers 503, or cannot be reached, for 10 minutes
// while grants are due. No grant is lost; they are degraded during the
// outage and ok after it without any user action.
func TestOutage(t *testing.T) {
	for _, mode := range []string{"503", "unreachable"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newKeeperEnv(t)
				k := e.keeper(t, e.st, KeeperOptions{})
				const grants = 10
				ids := make([]string, grants)
				for i := range ids {
					ids[i] = e.start(t, k)
					time.Sleep(15 * time.Second)
				}
				stop := runKeeper(t, k)
				// Idle grants come due at 67.5–72 minutes; the outage covers that.
				time.Sleep(65 * time.Minute)
				down := func(on bool) {
					if mode == "503" {
						e.idp.SetDown(on)
					} else {
						e.faults.set(func(f *faults) { f.refuse = on })
					}
				}
				down(true)
				time.Sleep(10 * time.Minute)
				degraded := 0
				for _, id := range ids {
					if g := e.grant(t, id); g.State == store.StateDegraded {
						degraded++
					}
				}
				if gauge := k.Metrics().GrantsByState["degraded"]; degraded == 0 || gauge == 0 {
					t.Errorf("at the end of the outage %d grants are degraded (gauge %d), want some", degraded, gauge)
				}
				down(false)
				time.Sleep(5 * time.Minute)
				for _, id := range ids {
					g := e.grant(t, id)
					if g.State != store.StateOK || !e.idp.Active(g.RefreshToken) {
						t.Errorf("grant after the outage = %q (%q), want ok with an active refresh token", g.State, g.LastError)
					}
					if _, err := k.Token(t.Context(), id); err != nil {
						t.Errorf("Token() after the outage = %v", err)
					}
				}
				time.Sleep(2 * time.Minute)
				if gauge := k.Metrics().GrantsByState; gauge["ok"] != grants {
					t.Errorf("gauge after the outage = %v, want %d ok", gauge, grants)
				}
				stop()
				e.checkNoReuse(t)
				m := k.Metrics()
				t.Logf("outage %s: %d grants, %d degraded at its end, refresh outcomes %v", mode, grants, degraded, m.RefreshOutcomes)
			})
		})
	}
}

// TestReplace: the mail server refused an access token.
func TestReplace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{})
		id := e.start(t, k)
		first := e.grant(t, id).AccessToken

		// The IdP still accepts it: not a token problem, and no refresh.
		if _, err := k.Replace(t.Context(), id, first); err == nil || errors.Is(err, ErrNeedsSignIn) {
			t.Errorf("Replace(valid token) = %v, want a plain error", err)
		}
		// The IdP revoked the access token: Replace refreshes.
		if err := e.p.Revoke(t.Context(), first, "access_token"); err != nil {
			t.Fatal(err)
		}
		tok, err := k.Replace(t.Context(), id, first)
		if err != nil || tok.Access == first || !e.idp.Active(tok.Access) {
			t.Fatalf("Replace(revoked token) = %v, new token %v", err, tok.Access != first)
		}
		// A token the grant has since replaced: the current one, no call.
		before := e.idp.Stats().TokenRequests
		again, err := k.Replace(t.Context(), id, first)
		if err != nil || again.Access != tok.Access {
			t.Errorf("Replace(stale token) = %v, same current token %v", err, again.Access == tok.Access)
		}
		if n := e.idp.Stats().TokenRequests - before; n != 0 {
			t.Errorf("Replace(stale token) made %d token requests, want 0", n)
		}
		e.checkNoReuse(t)
	})
}

func TestSignOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{})
		id := e.start(t, k)
		g := e.grant(t, id)
		if err := k.SignOut(t.Context(), id); err != nil {
			t.Fatalf("SignOut() = %v", err)
		}
		if e.idp.Active(g.RefreshToken) || e.idp.Active(g.AccessToken) {
			t.Error("tokens still active at the IdP after SignOut")
		}
		if _, err := e.st.Grant(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("store Grant() after SignOut = %v, want ErrNotFound", err)
		}
		if _, err := k.Token(t.Context(), id); !errors.Is(err, ErrNeedsSignIn) {
			t.Errorf("Token() after SignOut = %v, want ErrNeedsSignIn", err)
		}
		if err := k.SignOut(t.Context(), id); err != nil {
			t.Errorf("second SignOut() = %v, want nil", err)
		}
	})
}

// TestSessionPolicy: Run revokes and deletes grants past IdleTimeout or
// Lifetime, and keeps the others alive until then.
func TestSessionPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{IdleTimeout: 3 * time.Hour, Lifetime: 5 * time.Hour})
		idle := e.start(t, k)
		busy := e.start(t, k)
		stop := runKeeper(t, k)
		var lastRT string
		for range 4 * 60 / 10 { // page views on busy every 10 minutes for 4h
			time.Sleep(10 * time.Minute)
			if _, err := k.Token(t.Context(), busy); err != nil {
				t.Fatalf("Token(busy) = %v", err)
			}
		}
		if _, err := e.st.Grant(t.Context(), idle); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("idle grant after 4h (idle timeout 3h) = %v, want deleted", err)
		}
		lastRT = e.grant(t, busy).RefreshToken
		time.Sleep(70 * time.Minute) // past the 5h lifetime
		if _, err := e.st.Grant(t.Context(), busy); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("busy grant after 5h10m (lifetime 5h) = %v, want deleted", err)
		}
		if e.idp.Active(lastRT) {
			t.Error("refresh token of the expired grant is still active at the IdP")
		}
		stop()
		if m := k.Metrics(); m.Expired != 2 {
			t.Errorf("Metrics().Expired = %d, want 2", m.Expired)
		}
		e.checkNoReuse(t)
	})
}

// TestShortLivedAccessTokens: with access tokens shorter than ~20 s (seen with a 12 s Hydra client in the
// end-to-end suite), half the token's life is below the minimum Token hands out, so a view must refresh rather than
// get neither a refresh nor a token.
func TestShortLivedAccessTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnvTTL(t, 12*time.Second)
		k := e.keeper(t, e.st, KeeperOptions{})
		id := e.start(t, k)
		for i := range 40 { // a view every 3 s for 2 minutes: about ten rotations
			tok, err := k.Token(t.Context(), id)
			if err != nil {
				t.Fatalf("view %d: Token() = %v", i, err)
			}
			if left := time.Until(tok.Expiry); left < minUsable {
				t.Fatalf("view %d: token with %v left, want at least %v", i, left, minUsable)
			}
			if !e.idp.Active(tok.Access) {
				t.Fatalf("view %d: the token handed out is not active at the IdP", i)
			}
			time.Sleep(3 * time.Second)
		}
		if n := e.idp.Stats().Refreshes; n < 5 {
			t.Errorf("refreshes over 2 minutes of 12 s tokens = %d, want several", n)
		}
		e.checkNoReuse(t)
	})
}
