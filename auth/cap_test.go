package auth

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/postern/postern/internal/store"
)

// TestGrantsPerUserCapped: each sign-in makes a grant, so a user signing in again and again would multiply what the
// refresher keeps alive. Beyond MaxGrantsPerUser the oldest are retired at sign-in: revoked at the IdP, deleted,
// and reported through OnEnded so their mail connections close.
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
