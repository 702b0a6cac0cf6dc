package auth

import (
	"testing"
	"time"

	"github.com/postern/postern/internal/store"
)

// What a transition does with the tokens, and what it schedules next.
type (
	tokenRule int
	nextRule  int
)

const (
	newTokens  tokenRule = iota + 1 // the rotation's tokens
	keepTokens                      // the grant's tokens, untouched
	noTokens                        // none: they are dead at the IdP
	noGrant                         // the grant is deleted
)

const (
	nextBySchedule nextRule = iota + 1 // policy.schedule: refresh time or session end
	nextByBackoff                      // now + policy.backoff for the new failure count
	nextNever                          // nothing is scheduled
)

// refused marks a pair the lifecycle does not allow.
const refused State = ""

// lifecycleSpec is the lifecycle, every (state, reason) pair: the state it
// leads to (or refused), what the grant keeps, and what is scheduled next.
// The package doc's diagram draws the same table.
var lifecycleSpec = []struct {
	from   State
	reason Reason
	to     State
	tokens tokenRule
	next   nextRule
}{
	// from Deleted
	{StateDeleted, ReasonSignedIn, StateOK, newTokens, nextBySchedule},
	{StateDeleted, ReasonOK, refused, 0, 0},
	{StateDeleted, ReasonUnavailable, refused, 0, 0},
	{StateDeleted, ReasonTimeout, refused, 0, 0},
	{StateDeleted, ReasonRejected, refused, 0, 0},
	{StateDeleted, ReasonOutcomeUnknown, refused, 0, 0},
	{StateDeleted, ReasonUnsaved, refused, 0, 0},
	{StateDeleted, ReasonInvalidGrant, refused, 0, 0},
	{StateDeleted, ReasonRefreshLost, refused, 0, 0},
	{StateDeleted, ReasonRefreshSpent, refused, 0, 0},
	{StateDeleted, ReasonNoRefreshToken, refused, 0, 0},
	{StateDeleted, ReasonSignedOut, refused, 0, 0},
	{StateDeleted, ReasonSessionEnded, refused, 0, 0},
	{StateDeleted, ReasonAbandoned, refused, 0, 0},
	// from OK
	{StateOK, ReasonSignedIn, refused, 0, 0},
	{StateOK, ReasonOK, StateOK, newTokens, nextBySchedule},
	{StateOK, ReasonUnavailable, StateDegraded, keepTokens, nextByBackoff},
	{StateOK, ReasonTimeout, StateDegraded, keepTokens, nextByBackoff},
	{StateOK, ReasonRejected, StateDegraded, keepTokens, nextByBackoff},
	{StateOK, ReasonOutcomeUnknown, StateDegraded, keepTokens, nextByBackoff},
	{StateOK, ReasonUnsaved, StateDegraded, keepTokens, nextByBackoff},
	{StateOK, ReasonInvalidGrant, StateNeedsSignIn, noTokens, nextNever},
	{StateOK, ReasonRefreshLost, StateNeedsSignIn, noTokens, nextNever},
	{StateOK, ReasonRefreshSpent, StateNeedsSignIn, noTokens, nextNever},
	{StateOK, ReasonNoRefreshToken, StateNeedsSignIn, noTokens, nextNever},
	{StateOK, ReasonSignedOut, StateDeleted, noGrant, nextNever},
	{StateOK, ReasonSessionEnded, StateDeleted, noGrant, nextNever},
	{StateOK, ReasonAbandoned, refused, 0, 0},
	// from Degraded
	{StateDegraded, ReasonSignedIn, refused, 0, 0},
	{StateDegraded, ReasonOK, StateOK, newTokens, nextBySchedule},
	{StateDegraded, ReasonUnavailable, StateDegraded, keepTokens, nextByBackoff},
	{StateDegraded, ReasonTimeout, StateDegraded, keepTokens, nextByBackoff},
	{StateDegraded, ReasonRejected, StateDegraded, keepTokens, nextByBackoff},
	{StateDegraded, ReasonOutcomeUnknown, StateDegraded, keepTokens, nextByBackoff},
	{StateDegraded, ReasonUnsaved, StateDegraded, keepTokens, nextByBackoff},
	{StateDegraded, ReasonInvalidGrant, StateNeedsSignIn, noTokens, nextNever},
	{StateDegraded, ReasonRefreshLost, StateNeedsSignIn, noTokens, nextNever},
	{StateDegraded, ReasonRefreshSpent, StateNeedsSignIn, noTokens, nextNever},
	{StateDegraded, ReasonNoRefreshToken, StateNeedsSignIn, noTokens, nextNever},
	{StateDegraded, ReasonSignedOut, StateDeleted, noGrant, nextNever},
	{StateDegraded, ReasonSessionEnded, StateDeleted, noGrant, nextNever},
	{StateDegraded, ReasonAbandoned, refused, 0, 0},
	// from NeedsSignIn
	{StateNeedsSignIn, ReasonSignedIn, refused, 0, 0},
	{StateNeedsSignIn, ReasonOK, refused, 0, 0},
	{StateNeedsSignIn, ReasonUnavailable, refused, 0, 0},
	{StateNeedsSignIn, ReasonTimeout, refused, 0, 0},
	{StateNeedsSignIn, ReasonRejected, refused, 0, 0},
	{StateNeedsSignIn, ReasonOutcomeUnknown, refused, 0, 0},
	{StateNeedsSignIn, ReasonUnsaved, refused, 0, 0},
	{StateNeedsSignIn, ReasonInvalidGrant, refused, 0, 0},
	{StateNeedsSignIn, ReasonRefreshLost, refused, 0, 0},
	{StateNeedsSignIn, ReasonRefreshSpent, refused, 0, 0},
	{StateNeedsSignIn, ReasonNoRefreshToken, refused, 0, 0},
	{StateNeedsSignIn, ReasonSignedOut, StateDeleted, noGrant, nextNever},
	{StateNeedsSignIn, ReasonSessionEnded, refused, 0, 0},
	{StateNeedsSignIn, ReasonAbandoned, StateDeleted, noGrant, nextNever},
}

func TestLifecycleSpecCoversEveryPair(t *testing.T) {
	seen := map[State]map[Reason]int{}
	for _, row := range lifecycleSpec {
		if seen[row.from] == nil {
			seen[row.from] = map[Reason]int{}
		}
		seen[row.from][row.reason]++
	}
	for _, s := range append(States(), StateDeleted) {
		for _, r := range Reasons() {
			if n := seen[s][r]; n != 1 {
				t.Errorf("lifecycleSpec has %d rows for (%s, %s), want 1", n, s, r)
			}
		}
	}
	if want := (len(States()) + 1) * len(Reasons()); len(lifecycleSpec) != want {
		t.Errorf("lifecycleSpec has %d rows, want %d", len(lifecycleSpec), want)
	}
}

func TestTransition(t *testing.T) {
	p := KeeperOptions{}.withDefaults().policy()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	ts := TokenSet{AccessToken: "at1", RefreshToken: "rt1", IDToken: "id1", Expiry: now.Add(time.Hour)}
	for _, kind := range []store.GrantKind{store.KindWeb, store.KindDevice} {
		for _, row := range lifecycleSpec {
			t.Run(string(kind)+"/"+string(row.from)+"/"+string(row.reason), func(t *testing.T) {
				// Device grants move through the same lifecycle as browser ones; only the time policy
				// (policy.end) tells them apart, so every row holds for both kinds and keeps the kind.
				g := store.Grant{ID: "g", Issuer: "i", Subject: "s", Version: 3, Kind: kind}
				if row.from != StateDeleted {
					g.State = store.GrantState(row.from)
					g.AccessToken, g.RefreshToken, g.IDToken = "at0", "rt0", "id0"
					g.AccessExpiry, g.RefreshExpiry = now.Add(time.Minute), now.Add(time.Hour)
					g.LastRefresh, g.LastActive, g.CreatedAt = now.Add(-time.Hour), now.Add(-time.Minute), now.Add(-2*time.Hour)
					g.FailCount, g.LastError, g.NextRefreshAt = 2, "timeout", now.Add(time.Second)
				}
				got, err := transition(g, row.reason, ts, now, p)
				if row.to == refused {
					if err == nil || got != g {
						t.Fatalf("transition() = %v, changed %v; want an error and no change", err, got != g)
					}
					return
				}
				if err != nil {
					t.Fatalf("transition() = %v", err)
				}
				if row.reason.State() != row.to {
					t.Errorf("%s.State() = %s, want %s", row.reason, row.reason.State(), row.to)
				}
				if row.to == StateDeleted {
					if got != (store.Grant{}) {
						t.Errorf("transition() to deleted = %+v, want the zero grant", got)
					}
					return
				}
				if stateOf(got) != row.to {
					t.Errorf("state = %s, want %s", stateOf(got), row.to)
				}
				wantErr, wantFails := string(row.reason), g.FailCount+1
				if row.to == StateOK {
					wantErr, wantFails = "", 0
				}
				if got.LastError != wantErr || got.FailCount != wantFails {
					t.Errorf("last error %q, failures %d; want %q, %d", got.LastError, got.FailCount, wantErr, wantFails)
				}
				tokens := [3]string{got.AccessToken, got.RefreshToken, got.IDToken}
				want := map[tokenRule][3]string{newTokens: {"at1", "rt1", "id1"}, keepTokens: {"at0", "rt0", "id0"}, noTokens: {}}[row.tokens]
				if tokens != want {
					t.Errorf("tokens = %q, want %q", tokens, want)
				}
				switch row.next {
				case nextBySchedule:
					if got.NextRefreshAt != p.schedule(got, now) || !got.NextRefreshAt.After(now) || got.LastRefresh != now {
						t.Errorf("next refresh at %v, last refresh %v; want policy.schedule (%v), now", got.NextRefreshAt, got.LastRefresh, p.schedule(got, now))
					}
					if got.AccessExpiry != ts.Expiry || got.RefreshExpiry != now.Add(p.refreshTokenLifetime) {
						t.Errorf("expiries %v, %v; want the rotation's and a fresh refresh-token lifetime", got.AccessExpiry, got.RefreshExpiry)
					}
				case nextByBackoff:
					if d := got.NextRefreshAt.Sub(now); d != p.backoff(got, now) || d <= 0 || d > backoffMax {
						t.Errorf("next refresh in %v, want policy.backoff (%v), within (0, %v]", d, p.backoff(got, now), backoffMax)
					}
				case nextNever:
					if !got.NextRefreshAt.IsZero() {
						t.Errorf("next refresh at %v, want none", got.NextRefreshAt)
					}
				}
				if got.ID != g.ID || got.Version != g.Version {
					t.Errorf("id %q version %d, want %q %d (the store's CAS needs the version read)", got.ID, got.Version, g.ID, g.Version)
				}
				if got.Kind != kind {
					t.Errorf("kind = %q, want %q (fixed at creation)", got.Kind, kind)
				}
			})
		}
	}
}

// TestReasonLists: the exported lists name reasons of the right states, so
// the metrics that read them stay truthful.
func TestReasonLists(t *testing.T) {
	for _, r := range SignInReasons() {
		if r.State() != StateNeedsSignIn {
			t.Errorf("SignInReasons() has %s, which leads to %s", r, r.State())
		}
	}
	for _, r := range RefreshOutcomes() {
		if s := r.State(); s != StateOK && s != StateDegraded && s != StateNeedsSignIn {
			t.Errorf("RefreshOutcomes() has %s, which leads to %s", r, s)
		}
	}
	for _, r := range Reasons() {
		if r.State() == "" || r.Message() == "" {
			t.Errorf("reason %s has no state or no message", r)
		}
	}
	if len(ProbeResults()) != 6 {
		t.Errorf("ProbeResults() = %v", ProbeResults())
	}
}
