package auth

import (
	"sync"

	"github.com/postern/postern/internal/store"
)

// memo holds the two facts of the lifecycle that live in memory as well as
// (or instead of) the store. Both exist only when the store refused a write
// that the lifecycle needed, so persisting them would need the very store
// that just failed; each is keyed by the refresh token it is about, so it
// dies by itself once the grant moves on.
//
//   - spent: the IdP rotated a grant but the store would not take the new
//     tokens. The stored refresh token is spent; sending it again would make
//     the IdP revoke the whole grant. The next attempt stores the rotation
//     instead of calling the IdP. A restart of the process loses it (the
//     grant then needs a sign-in, never a re-use: see unknown).
//   - unknown: a refresh of this refresh token ended with an unknown outcome.
//     The store normally holds the same fact (state degraded, reason
//     outcome_unknown) and every process probes before re-sending; the memo
//     covers the write of that marker failing.
type memo struct {
	mu      sync.Mutex
	spent   map[string]pendingRotation // grant id → a rotation the IdP made that the store has not taken yet
	unknown map[string]string          // grant id → refresh token whose last refresh had an unknown outcome
}

// pendingRotation is a refresh the IdP committed whose result is not stored:
// base is the (now spent) refresh token it replaced, ts the new tokens.
type pendingRotation struct {
	base string
	ts   TokenSet
}

// keepRotation remembers a rotation of g the store did not take.
func (m *memo) keepRotation(g store.Grant, ts TokenSet) {
	if ts.RefreshToken == "" || ts.RefreshToken == g.RefreshToken {
		return
	}
	m.mu.Lock()
	m.spent[g.ID] = pendingRotation{base: g.RefreshToken, ts: ts}
	m.mu.Unlock()
}

// pendingFor returns the rotation held for g, if g still carries the refresh
// token it replaced.
func (m *memo) pendingFor(g store.Grant) (pendingRotation, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.spent[g.ID]
	if ok && p.base != g.RefreshToken {
		delete(m.spent, g.ID) // the grant moved on (signed in again, or another writer): the rotation is moot
		return pendingRotation{}, false
	}
	return p, ok
}

// markUnknown remembers that a refresh of g's refresh token had an unknown
// outcome.
func (m *memo) markUnknown(g store.Grant) {
	m.mu.Lock()
	m.unknown[g.ID] = g.RefreshToken
	m.mu.Unlock()
}

// isUnknown reports whether a refresh of g's current refresh token ended
// with an unknown outcome here, whether or not the store took the marker.
func (m *memo) isUnknown(g store.Grant) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	rt, ok := m.unknown[g.ID]
	if ok && rt != g.RefreshToken {
		delete(m.unknown, g.ID)
		return false
	}
	return ok
}

// forget drops both facts about a grant: it was stored fresh, or deleted.
func (m *memo) forget(id string) {
	m.mu.Lock()
	delete(m.spent, id)
	delete(m.unknown, id)
	m.mu.Unlock()
}
