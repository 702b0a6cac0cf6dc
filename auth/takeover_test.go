package auth

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestLeaseTakenOverFromADeadProcess: another process claimed the grant's lease, sent the refresh token and died
// (kill -9) before storing the answer, so the store says nothing of it; its lease runs out. The next refresh here
// takes over the lease, and because it was never released, probes before sending the refresh token: if the dead
// process's refresh committed, the grant needs a sign-in and the spent token is never sent (no re-use at the IdP);
// if it never reached the IdP, the refresh goes ahead and the user notices nothing.
func TestLeaseTakenOverFromADeadProcess(t *testing.T) {
	for _, tc := range []struct {
		name      string
		committed bool
	}{
		{"refresh committed before the crash", true},
		{"crashed before the IdP had it", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newKeeperEnv(t)
				k := e.keeper(t, e.st, KeeperOptions{})
				id := e.start(t, k)
				g := e.grant(t, id)
				now := time.Now()
				if ok, err := e.st.ClaimLease(context.Background(), id, "dead-process", now, now.Add(time.Minute)); !ok || err != nil {
					t.Fatalf("ClaimLease(dead-process) = %v, %v", ok, err)
				}
				if tc.committed {
					// The dead process's refresh: the IdP rotates the grant; the answer goes nowhere.
					if _, err := e.p.Refresh(context.Background(), g.RefreshToken); err != nil {
						t.Fatalf("Refresh() = %v", err)
					}
				}
				// Past the dead lease and the access token's life: the next view must refresh.
				sleepUntil(g.AccessExpiry.Add(time.Second))
				tok, err := k.Token(t.Context(), id)
				settle(k)
				s := e.idp.Stats()
				if s.RefreshReuses != 0 || s.FamilyRevocations != 0 {
					t.Errorf("IdP: %d refresh-token re-uses, %d family revocations; want 0 (the spent token must not be sent)",
						s.RefreshReuses, s.FamilyRevocations)
				}
				after := e.grant(t, id)
				if tc.committed {
					if !errors.Is(err, ErrNeedsSignIn) || Reason(after.LastError) != ReasonRefreshSpent {
						t.Errorf("Token() = %v, grant %s (%s); want ErrNeedsSignIn, refresh_spent", err, after.State, after.LastError)
					}
					return
				}
				if err != nil || tok.Access == g.AccessToken || after.RefreshToken == g.RefreshToken {
					t.Errorf("Token() = %v (new token: %v); want a refreshed grant", err, tok.Access != g.AccessToken)
				}
				if m := k.Metrics(); m.Probes[ProbeActive] != 1 {
					t.Errorf("probes = %v, want one introspection that found the refresh token unused", m.Probes)
				}
			})
		})
	}
}
