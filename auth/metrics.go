package auth

import (
	"maps"
	"sync"

	"github.com/postern/postern/internal/store"
)

// Metrics is a snapshot of the Keeper's counters and gauges. Counters only
// grow over the Keeper's life; GrantsByState is read from the store by Run
// about once a minute (a full count is not a per-tick cost). The keys of the
// maps come from RefreshOutcomes, ProbeResults, SignInReasons and States.
type Metrics struct {
	// RefreshAttempts counts calls to the token endpoint with a refresh token.
	RefreshAttempts int64
	// RefreshOutcomes counts those calls by result (RefreshOutcomes()).
	RefreshOutcomes map[Reason]int64
	// Probes counts probes after an unknown outcome or a refused mail login,
	// by result (ProbeResults()).
	Probes map[ProbeResult]int64
	// SignInRequired counts grants moved to needs_sign_in, by reason
	// (SignInReasons()).
	SignInRequired map[Reason]int64
	// Expired counts grants revoked and deleted by session policy (idle
	// timeout or absolute lifetime); Abandoned counts grants deleted after
	// needing a sign-in for IdleTimeout; SignOuts counts SignOut calls.
	Expired, Abandoned, SignOuts int64
	// Ticks counts scheduler passes; Due counts grants they handed to
	// workers.
	Ticks, Due int64
	// GrantsByState is the last count of grants per state (States()); nil
	// until Run has counted once.
	GrantsByState map[State]int
}

// metrics holds the live counters behind Metrics. One mutex is plenty: every
// increment sits next to a network call or a database write.
type metrics struct {
	mu sync.Mutex
	m  Metrics
}

// attempt counts one token-endpoint refresh call.
func (c *metrics) attempt() { c.add(&c.m.RefreshAttempts, 1) }

// add increments *field by n under the lock.
func (c *metrics) add(field *int64, n int64) {
	c.mu.Lock()
	*field += n
	c.mu.Unlock()
}

// count increments (*m)[key], creating the map on first use.
func count[K comparable](c *metrics, m *map[K]int64, key K) {
	c.mu.Lock()
	if *m == nil {
		*m = make(map[K]int64)
	}
	(*m)[key]++
	c.mu.Unlock()
}

// outcome counts one refresh result.
func (c *metrics) outcome(r Reason) { count(c, &c.m.RefreshOutcomes, r) }

// probe counts one probe result.
func (c *metrics) probe(r ProbeResult) { count(c, &c.m.Probes, r) }

// signIn counts one grant moved to needs_sign_in.
func (c *metrics) signIn(r Reason) { count(c, &c.m.SignInRequired, r) }

// setStates replaces the grants-by-state gauge.
func (c *metrics) setStates(counts map[store.GrantState]int) {
	g := make(map[State]int, len(counts))
	for s, n := range counts {
		g[State(s)] = n
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
