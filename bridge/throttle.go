package bridge

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// throttle slows password guessing: every refused device password is answered only after a delay that doubles with
// the failures counted against the client's address and against the account (whichever is higher), from the base
// delay up to 32 times it. An attacker spreading guesses over addresses still pays the account's count, and one
// guessing many accounts from one address pays the address's. Counts are forgotten after window without a failure.
//
// Memory is bounded: at most maxEntries keys. When the table is full of live entries a new key is treated as having
// the highest count, so that flooding the table cannot buy an attacker fast answers.
type throttle struct {
	base       time.Duration
	window     time.Duration
	maxEntries int
	now        func() time.Time

	mu      sync.Mutex
	entries map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

// maxShift caps the doubling: base << 5 = 32 × base.
const maxShift = 5

func newThrottle(base time.Duration) *throttle {
	return &throttle{base: base, window: 15 * time.Minute, maxEntries: 10000, now: time.Now, entries: map[string]*failures{}}
}

// ipKey groups IPv6 addresses by /64, which one host usually has whole.
func ipKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + ip.String()
}

// accountKey is the account's entry; a typed username longer than any address (RFC 5321 section 4.5.3.1.3: 254
// octets) is cut, so that a key costs bounded memory.
func accountKey(user string) string {
	user = strings.ToLower(strings.TrimSpace(user))
	if len(user) > 256 {
		user = user[:256]
	}
	return "acct:" + user
}

// fail records a refused password from ip for user and returns how long to wait before answering.
func (t *throttle) fail(ip netip.Addr, user string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	n := 0
	for _, k := range []string{ipKey(ip), accountKey(user)} {
		e := t.entries[k]
		if e != nil && now.Sub(e.last) > t.window {
			e.n = 0
		}
		if e == nil {
			if len(t.entries) >= t.maxEntries {
				t.pruneLocked(now)
			}
			if len(t.entries) >= t.maxEntries {
				n = maxShift
				continue
			}
			e = &failures{}
			t.entries[k] = e
		}
		n = max(n, e.n)
		e.n++
		e.last = now
	}
	return t.base << min(n, maxShift)
}

// succeed forgets the account's failures: its owner got the password right. The address's count stays, since a
// guesser may own an account of its own.
func (t *throttle) succeed(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, accountKey(user))
}

func (t *throttle) pruneLocked(now time.Time) {
	for k, e := range t.entries {
		if now.Sub(e.last) > t.window {
			delete(t.entries, k)
		}
	}
}
