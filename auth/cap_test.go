package auth

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/store"
)

// TestGrantsPerUserCapped: each sign-in makes a grant, so a user signing in again and again would multiply what the
// refresher keeps alive. Beyond MaxGrantsPerUser the oldest are retired after each sign-in (detached from it, so the
// sign-in does not wait for the revocations): revoked at the IdP, deleted, and reported through OnEnded so their mail
// connections close.
func TestGrantsPerUserCapped(t *testing.T) {
	e := newKeeperEnv(t)
	var mu sync.Mutex
	var ended []string
	k := e.keeper(t, e.st, KeeperOptions{MaxGrantsPerUser: 2, OnEnded: func(id string) {
		mu.Lock()
		ended = append(ended, id)
		mu.Unlock()
	}})
	var ids []string
	for range 4 {
		ids = append(ids, e.start(t, k))
		settle(k) // each sign-in's retirement, before the next sign-in
	}
	for i, id := range ids {
		_, err := e.st.Grant(context.Background(), id)
		kept := i >= 2
		if kept != (err == nil) || (!kept && !errors.Is(err, store.ErrNotFound)) {
			t.Errorf("grant %d (of 4, cap 2): %v; want kept = %v", i, err, kept)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(ended, ids[:2]) {
		t.Errorf("OnEnded got %q, want the two oldest %q", ended, ids[:2])
	}
	if s := e.idp.Stats(); s.Revocations != 2 {
		t.Errorf("IdP revocations = %d, want 2 (the retired grants' refresh tokens)", s.Revocations)
	}
	if _, err := k.Token(t.Context(), ids[0]); !errors.Is(err, ErrNeedsSignIn) {
		t.Errorf("Token() of a retired grant = %v, want ErrNeedsSignIn", err)
	}
}

// TestCapRetirementDoesNotDelaySignIn: the revocation of a grant beyond the cap is a call to the IdP (client
// authentication and all); a sign-in must not wait for it. With the IdP frozen after the code exchange, Start returns
// at once, and the old grant is retired once the IdP answers.
func TestCapRetirementDoesNotDelaySignIn(t *testing.T) {
	e := newKeeperEnv(t)
	k := e.keeper(t, e.st, KeeperOptions{MaxGrantsPerUser: 1})
	old := e.start(t, k)
	settle(k)

	f, authURL := e.p.Begin("/")
	l := e.finish(t, f, authURL)
	const freeze = 2 * time.Second
	e.faults.mu.Lock()
	e.faults.frozenUntil = time.Now().Add(freeze)
	e.faults.mu.Unlock()
	t0 := time.Now()
	if _, err := k.Start(t.Context(), l); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	if d := time.Since(t0); d >= freeze/2 {
		t.Errorf("Start() took %v with the IdP frozen for %v; want it not to wait for the revocation", d, freeze)
	}
	settle(k)
	if _, err := e.st.Grant(context.Background(), old); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old grant after the IdP answered: %v, want it retired (ErrNotFound)", err)
	}
	if s := e.idp.Stats(); s.Revocations != 1 {
		t.Errorf("IdP revocations = %d, want 1", s.Revocations)
	}
}
