package devices

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// memo remembers successful verifications for a short while, because mail
// clients reconnect often and several at a time (Thunderbird opens up to five
// IMAP connections on start), and each would otherwise pay a full argon2id.
//
// It keeps neither the password nor a fast hash of it: an entry is keyed by
// HMAC-SHA256 under a random key that exists only in this process's memory,
// over the device id, the password and the stored hash. Without the key the
// map's keys say nothing about any password; with it (a full memory dump) the
// attacker still faces 148 random bits per password. Binding the stored hash
// means a device whose hash changed never matches an old entry. Revocation
// needs no purge: Verify reads the device row before it consults the memo.
type memo struct {
	key  [32]byte
	ttl  time.Duration
	size int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]time.Time // → expiry
}

func newMemo(ttl time.Duration, size int) *memo {
	m := &memo{ttl: ttl, size: size, entries: make(map[[sha256.Size]byte]time.Time)}
	rand.Read(m.key[:])
	return m
}

// mac is the memo key of a verification.
func (m *memo) mac(id, norm, phc string) [sha256.Size]byte {
	h := hmac.New(sha256.New, m.key[:])
	for _, s := range []string{id, norm, phc} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// has reports whether k was remembered and has not expired.
func (m *memo) has(k [sha256.Size]byte, now time.Time) bool {
	if m.ttl <= 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.entries[k]
	if ok && !now.Before(exp) {
		delete(m.entries, k)
		return false
	}
	return ok
}

// add remembers k until now + ttl. The map is bounded: when full, expired
// entries are swept, and if it is still full it is emptied (the cost is one
// argon2id per live device, once).
func (m *memo) add(k [sha256.Size]byte, now time.Time) {
	if m.ttl <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.entries) >= m.size {
		for e, exp := range m.entries {
			if !now.Before(exp) {
				delete(m.entries, e)
			}
		}
		if len(m.entries) >= m.size {
			clear(m.entries)
		}
	}
	m.entries[k] = now.Add(m.ttl)
}

// len is the number of entries, for tests.
func (m *memo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}
