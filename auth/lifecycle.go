package auth

import (
	"fmt"
	"slices"
	"time"

	"github.com/postern/postern/internal/store"
)

// State is where a grant is in its lifecycle (the diagram is in the package
// doc). The three live states are stored with the grant; StateDeleted is the
// absence of a row, before Start and after the end.
type State string

// Grant states.
const (
	// StateOK: the last refresh (or the sign-in) succeeded.
	StateOK State = "ok"
	// StateDegraded: the last refresh failed without losing the tokens; a
	// retry is scheduled with backoff.
	StateDegraded State = "degraded"
	// StateNeedsSignIn: the tokens are dead at the IdP and dropped; only an
	// interactive sign-in helps. Nothing refreshes such a grant.
	StateNeedsSignIn State = "needs_sign_in"
	// StateDeleted: no grant in the store.
	StateDeleted State = "deleted"
)

// States lists the stored states, in diagram order, for gauges that report
// every state even at 0.
func States() []State { return []State{StateOK, StateDegraded, StateNeedsSignIn} }

// stateOf is the lifecycle state of g as read from the store; a grant not
// yet created (no state) counts as deleted.
func stateOf(g store.Grant) State {
	if g.State == "" {
		return StateDeleted
	}
	return State(g.State)
}

// Reason is why a grant moved to its state. Each Reason leads to exactly one
// State (Reason.State). Reasons are classes, never a token or a raw IdP
// answer, so they are safe to log, to count and to show on the Session page;
// the grant's LastError holds the reason of its last failure.
type Reason string

// Reasons, grouped by the state they lead to.
const (
	// → ok
	ReasonSignedIn Reason = "signed_in" // Start stored a completed sign-in
	ReasonOK       Reason = "ok"        // the token endpoint rotated the grant
	// → degraded (tokens kept, retry after backoff)
	ReasonUnavailable    Reason = "unavailable"      // 503, 429, connection refused: nothing committed
	ReasonTimeout        Reason = "timeout"          // a deadline passed before the request was sent
	ReasonRejected       Reason = "rejected"         // another 4xx: a configuration problem
	ReasonOutcomeUnknown Reason = "outcome_unknown"  // sent, answer lost: the next attempt probes first
	ReasonUnsaved        Reason = "unsaved_rotation" // the IdP rotated, the store refused the result
	// → needs_sign_in (tokens dropped)
	ReasonInvalidGrant   Reason = "invalid_grant"    // the token endpoint says the grant is gone
	ReasonRefreshLost    Reason = "refresh_lost"     // userinfo: a lost answer had rotated the grant
	ReasonRefreshSpent   Reason = "refresh_spent"    // introspection: a lost answer had spent the refresh token
	ReasonNoRefreshToken Reason = "no_refresh_token" // offline access was never granted
	// → deleted
	ReasonSignedOut    Reason = "signed_out"    // the user signed out (the refresh token is revoked first)
	ReasonSessionEnded Reason = "session_ended" // IdleTimeout or Lifetime passed (revoked first)
	ReasonAbandoned    Reason = "abandoned"     // needs_sign_in and unused for IdleTimeout
)

// rule is one row of the lifecycle: the states a reason may leave and the
// state it leads to.
type rule struct {
	from []State
	to   State
}

// live are the states a refresh can start from.
var live = []State{StateOK, StateDegraded}

// rules is the lifecycle. transition enforces it; the table test spells out
// every (state, reason) pair.
var rules = map[Reason]rule{
	ReasonSignedIn:       {[]State{StateDeleted}, StateOK},
	ReasonOK:             {live, StateOK},
	ReasonUnavailable:    {live, StateDegraded},
	ReasonTimeout:        {live, StateDegraded},
	ReasonRejected:       {live, StateDegraded},
	ReasonOutcomeUnknown: {live, StateDegraded},
	ReasonUnsaved:        {live, StateDegraded},
	ReasonInvalidGrant:   {live, StateNeedsSignIn},
	ReasonRefreshLost:    {live, StateNeedsSignIn},
	ReasonRefreshSpent:   {live, StateNeedsSignIn},
	ReasonNoRefreshToken: {live, StateNeedsSignIn},
	ReasonSignedOut:      {States(), StateDeleted},
	ReasonSessionEnded:   {live, StateDeleted},
	ReasonAbandoned:      {[]State{StateNeedsSignIn}, StateDeleted},
}

// Reasons lists every Reason, in the order of the constants.
func Reasons() []Reason {
	return []Reason{ReasonSignedIn, ReasonOK,
		ReasonUnavailable, ReasonTimeout, ReasonRejected, ReasonOutcomeUnknown, ReasonUnsaved,
		ReasonInvalidGrant, ReasonRefreshLost, ReasonRefreshSpent, ReasonNoRefreshToken,
		ReasonSignedOut, ReasonSessionEnded, ReasonAbandoned}
}

// RefreshOutcomes lists the results of a token-endpoint refresh call, as
// counted in Metrics.RefreshOutcomes.
func RefreshOutcomes() []Reason {
	return []Reason{ReasonOK, ReasonInvalidGrant, ReasonUnavailable, ReasonTimeout, ReasonRejected, ReasonOutcomeUnknown}
}

// SignInReasons lists the reasons that move a grant to needs_sign_in, as
// counted in Metrics.SignInRequired.
func SignInReasons() []Reason {
	return []Reason{ReasonInvalidGrant, ReasonRefreshLost, ReasonRefreshSpent, ReasonNoRefreshToken}
}

// State is the state r leads to.
func (r Reason) State() State { return rules[r].to }

// Message is a sentence for the Session page saying what r means to the user.
func (r Reason) Message() string {
	switch r {
	case ReasonSignedIn, ReasonOK, "":
		return "Your session is current."
	case ReasonUnavailable, ReasonTimeout, ReasonOutcomeUnknown, ReasonUnsaved:
		return "The identity provider did not answer in time; Postern keeps your session and tries again."
	case ReasonRejected:
		return "The identity provider refused Postern's request; the administrator has to check the client configuration."
	case ReasonRefreshLost, ReasonRefreshSpent:
		return "The identity provider renewed your session but its answer was lost on the way, so you have to sign in again."
	case ReasonInvalidGrant:
		return "The identity provider ended your session (expired or revoked), so you have to sign in again."
	case ReasonNoRefreshToken:
		return "The identity provider did not grant offline access, so you have to sign in again."
	}
	return "Your session has ended."
}

// ProbeResult is what a probe after an unknown outcome (or a refused mail
// login) found out.
type ProbeResult string

// Probe results. Introspection (RFC 7662) of the refresh token is definitive;
// the userinfo probe of the access token is the fallback for providers
// without an introspection endpoint.
const (
	ProbeActive      ProbeResult = "active"      // introspection: the refresh token is unused, retrying is safe
	ProbeInactive    ProbeResult = "inactive"    // introspection: the refresh token is spent, the refresh committed
	ProbeAlive       ProbeResult = "alive"       // userinfo answered 200 to the old access token: not committed
	ProbeRevoked     ProbeResult = "revoked"     // 401/403 to an unexpired access token: committed
	ProbeExpired     ProbeResult = "expired"     // the old access token had expired, so userinfo could not tell
	ProbeUnreachable ProbeResult = "unreachable" // the probe itself failed; try again later
)

// ProbeResults lists every ProbeResult, as counted in Metrics.Probes.
func ProbeResults() []ProbeResult {
	return []ProbeResult{ProbeActive, ProbeInactive, ProbeAlive, ProbeRevoked, ProbeExpired, ProbeUnreachable}
}

// transition is the lifecycle as a pure function: the grant to store after g
// moves by r at now (ts are the new tokens for ReasonSignedIn and ReasonOK).
// What each target state keeps and schedules:
//
//   - ok: the new tokens (a provider that sends no new refresh or ID token
//     keeps the old), a refresh-token lifetime from now, no failure, and the
//     next refresh by the time policy (policy.schedule);
//   - degraded: every token, the reason, one more failure, and a retry after
//     the backoff for that many failures (policy.backoff);
//   - needs_sign_in: no token (they are dead at the IdP), the reason, one more
//     failure, and nothing scheduled;
//   - deleted: nothing (the zero Grant); the caller deletes the row.
//
// A pair the lifecycle does not allow is an error and changes nothing.
func transition(g store.Grant, r Reason, ts TokenSet, now time.Time, p policy) (store.Grant, error) {
	ru, ok := rules[r]
	if from := stateOf(g); !ok || !slices.Contains(ru.from, from) {
		return g, fmt.Errorf("auth: grant %s: no transition from %s by %s", g.ID, from, r)
	}
	n := g
	switch ru.to {
	case StateOK:
		if r == ReasonSignedIn {
			n.LastActive, n.CreatedAt, n.UpdatedAt = now, now, now
			n.RefreshToken, n.IDToken = "", ""
		}
		n.AccessToken = ts.AccessToken
		if ts.RefreshToken != "" {
			n.RefreshToken = ts.RefreshToken
		}
		if ts.IDToken != "" {
			n.IDToken = ts.IDToken
		}
		n.AccessExpiry = accessExpiry(ts.Expiry, now)
		n.RefreshExpiry = now.Add(p.refreshTokenLifetime)
		n.State, n.LastError, n.FailCount = store.StateOK, "", 0
		n.LastRefresh = now
		n.NextRefreshAt = p.schedule(n, now)
	case StateDegraded:
		n.State, n.LastError = store.StateDegraded, string(r)
		n.FailCount++
		n.NextRefreshAt = now.Add(p.backoff(n, now))
	case StateNeedsSignIn:
		n.State, n.LastError = store.StateNeedsSignIn, string(r)
		n.AccessToken, n.RefreshToken, n.IDToken = "", "", ""
		n.NextRefreshAt = time.Time{}
		n.FailCount++
	case StateDeleted:
		return store.Grant{}, nil
	}
	return n, nil
}

// accessExpiry is the expiry the IdP stated, or defaultAccessLifetime.
func accessExpiry(stated, now time.Time) time.Time {
	if stated.IsZero() {
		return now.Add(defaultAccessLifetime)
	}
	return stated
}

// defaultAccessLifetime stands in for an access-token lifetime the IdP did
// not state (no expires_in): Authelia's default.
const defaultAccessLifetime = time.Hour
