package auth

import (
	"maps"
	"sync"

	"github.com/postern/postern/internal/store"
)

// Refresh outcome reasons, as counted in Metrics.RefreshOutcomes and stored in
// a grant's LastError. They are reason classes, never a token or a raw IdP
// response, so they are safe to log and to show on the Session page.
const (
	reasonOK             = "ok"              // the token endpoint rotated the grant
	reasonInvalidGrant   = "invalid_grant"   // the grant is gone at the IdP
	reasonUnavailable    = "unavailable"     // 503, 429, connection refused: nothing committed
	reasonTimeout        = "timeout"         // a deadline passed before the request was sent, or a probe cleared an unknown outcome
	reasonRejected       = "rejected"        // another 4xx: a configuration problem; tokens kept
	reasonOutcomeUnknown = "outcome_unknown" // sent, answer lost: the next attempt must probe first
	reasonRefreshLost    = "refresh_lost"    // the probe showed a lost answer had rotated the grant
	reasonNoRefreshToken = "no_refresh_token"
	reasonUnsaved        = "unsaved_rotation" // rotated tokens could not be stored; the old refresh token is spent
	reasonLeaseBusy      = "lease_busy"       // another process held the refresh lease for too long
)

// Probe results, as counted in Metrics.Probes.
const (
	probeAlive       = "alive"       // userinfo answered 200 to the old access token: the refresh did not commit
	probeRevoked     = "revoked"     // 401/403 to an unexpired access token: the refresh committed
	probeUnreachable = "unreachable" // the probe itself failed; try again later
	probeExpired     = "expired"     // the old access token had expired, so no probe could tell
)

// Metrics is a snapshot of the Keeper's counters and gauges. Counters only
// grow over the Keeper's life; GrantsByState is read from the store by Run
// about once a minute (a full count is not a per-tick cost).
type Metrics struct {
	// RefreshAttempts counts calls to the token endpoint with a refresh token.
	RefreshAttempts int64
	// RefreshOutcomes counts those calls by result: "ok", "invalid_grant",
	// "unavailable", "timeout", "rejected", "outcome_unknown".
	RefreshOutcomes map[string]int64
	// Probes counts userinfo probes after an unknown outcome or a refused
	// mail login, by result: "alive", "revoked", "unreachable", "expired".
	Probes map[string]int64
	// SignInRequired counts grants moved to needs_sign_in, by reason.
	SignInRequired map[string]int64
	// Expired counts grants revoked and deleted by session policy (idle
	// timeout or absolute lifetime); SignOuts counts SignOut calls.
	Expired, SignOuts int64
	// Ticks counts scheduler passes; Due counts grants they handed to
	// workers.
	Ticks, Due int64
	// GrantsByState is the last count of grants per state ("ok",
	// "degraded", "needs_sign_in"); nil until Run has counted once.
	GrantsByState map[string]int
}

// metrics holds the live counters behind Metrics. One mutex is plenty: every
// increment sits next to a network call or a database write.
type metrics struct {
	mu sync.Mutex
	m  Metrics
}

// attempt counts one token-endpoint refresh call.
func (c *metrics) attempt() {
	c.mu.Lock()
	c.m.RefreshAttempts++
	c.mu.Unlock()
}

// add increments *field by one under the lock.
func (c *metrics) add(field *int64, n int64) {
	c.mu.Lock()
	*field += n
	c.mu.Unlock()
}

// count increments (*m)[key], creating the map on first use.
func (c *metrics) count(m *map[string]int64, key string) {
	c.mu.Lock()
	if *m == nil {
		*m = make(map[string]int64)
	}
	(*m)[key]++
	c.mu.Unlock()
}

// outcome counts one refresh result by reason.
func (c *metrics) outcome(reason string) { c.count(&c.m.RefreshOutcomes, reason) }

// probe counts one probe result.
func (c *metrics) probe(result string) { c.count(&c.m.Probes, result) }

// signIn counts one grant moved to needs_sign_in.
func (c *metrics) signIn(reason string) { c.count(&c.m.SignInRequired, reason) }

// setStates replaces the grants-by-state gauge.
func (c *metrics) setStates(counts map[store.GrantState]int) {
	g := make(map[string]int, len(counts))
	for s, n := range counts {
		g[string(s)] = n
	}
	c.mu.Lock()
	c.m.GrantsByState = g
	c.mu.Unlock()
}

// snapshot copies the counters, maps included, so the caller may keep it.
func (c *metrics) snapshot() Metrics {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.m
	s.RefreshOutcomes = maps.Clone(c.m.RefreshOutcomes)
	s.Probes = maps.Clone(c.m.Probes)
	s.SignInRequired = maps.Clone(c.m.SignInRequired)
	s.GrantsByState = maps.Clone(c.m.GrantsByState)
	return s
}

// Metrics returns a snapshot of the refresh counters and the grants-by-state
// gauge.
func (k *Keeper) Metrics() Metrics { return k.metrics.snapshot() }
