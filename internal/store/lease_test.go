package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func contractClaimLease(t *testing.T, s *testStore) {
	ctx := context.Background()
	createGrant(t, s, "g1")
	// Steps run in order against one grant; each states who claims when.
	steps := []struct {
		name    string
		release bool
		owner   string
		now     time.Duration
		until   time.Duration
		want    bool
	}{
		{"free lease is taken", false, "a", 0, time.Minute, true},
		{"held by another", false, "b", 30 * time.Second, 2 * time.Minute, false},
		{"owner extends", false, "a", 40 * time.Second, 2 * time.Minute, true},
		{"still held at old expiry", false, "b", time.Minute, 3 * time.Minute, false},
		{"expired lease is taken over", false, "b", 2 * time.Minute, 3 * time.Minute, true},
		{"release by non-owner is ignored", true, "a", 0, 0, false},
		{"so a still cannot claim", false, "a", 150 * time.Second, 4 * time.Minute, false},
		{"release by owner", true, "b", 0, 0, false},
		{"released lease is free", false, "a", 150 * time.Second, 4 * time.Minute, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.release {
				if err := s.ReleaseLease(ctx, "g1", st.owner); err != nil {
					t.Fatalf("ReleaseLease = %v", err)
				}
				return
			}
			got, err := s.ClaimLease(ctx, "g1", st.owner, at(st.now), at(st.until))
			if err != nil || got != st.want {
				t.Fatalf("ClaimLease(%s, now+%v) = %v, %v; want %v", st.owner, st.now, got, err, st.want)
			}
		})
	}
	// Leases are not grant data: claiming bumps no version.
	if got, _ := s.Grant(ctx, "g1"); got.Version != 1 {
		t.Errorf("Version after leases = %d, want 1", got.Version)
	}
}

func contractClaimLeaseErrors(t *testing.T, s *testStore) {
	ctx := context.Background()
	createGrant(t, s, "g1")
	if ok, err := s.ClaimLease(ctx, "missing", "a", at(0), at(time.Minute)); ok || !errors.Is(err, ErrNotFound) {
		t.Errorf("ClaimLease(missing grant) = %v, %v; want false, ErrNotFound", ok, err)
	}
	if ok, err := s.ClaimLease(ctx, "g1", "", at(0), at(time.Minute)); ok || err == nil {
		t.Errorf("ClaimLease(empty owner) = %v, %v; want an error", ok, err)
	}
	if err := s.ReleaseLease(ctx, "missing", "a"); err != nil {
		t.Errorf("ReleaseLease(missing grant) = %v, want nil", err)
	}
}

// TestClaimLeaseExclusive has many goroutines, split across two handles on
// the same file (as two processes would be), race for one grant's lease.
func contractClaimLeaseExclusive(t *testing.T, s *testStore) {
	ctx := context.Background()
	a := s
	b := s.reopen(t)
	g := sampleGrant("g1")
	if err := a.CreateGrant(ctx, &g); err != nil {
		t.Fatal(err)
	}
	handles := []contractStore{a, b}
	const workers = 24

	t.Run("one claim, one winner", func(t *testing.T) {
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range workers {
			wg.Go(func() {
				<-start
				ok, err := handles[i%2].ClaimLease(ctx, "g1", fmt.Sprint("w", i), at(0), at(time.Hour))
				if err != nil {
					t.Errorf("ClaimLease = %v", err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if got := wins.Load(); got != 1 {
			t.Fatalf("%d workers racing: %d won, want exactly 1", workers, got)
		}
	})

	t.Run("claim, work, release: never two holders", func(t *testing.T) {
		var holders, maxHolders, wins atomic.Int32
		var wg sync.WaitGroup
		// Free the lease left by the previous subtest by taking it over.
		if ok, err := a.ClaimLease(ctx, "g1", "reset", at(2*time.Hour), at(2*time.Hour)); !ok || err != nil {
			t.Fatalf("reset claim = %v, %v", ok, err)
		}
		a.ReleaseLease(ctx, "g1", "reset")
		for i := range workers {
			wg.Go(func() {
				h, owner := handles[i%2], fmt.Sprint("w", i)
				for range 5 {
					ok, err := h.ClaimLease(ctx, "g1", owner, at(0), at(time.Hour))
					if err != nil {
						t.Errorf("ClaimLease = %v", err)
						return
					}
					if !ok {
						time.Sleep(100 * time.Microsecond)
						continue
					}
					n := holders.Add(1)
					for m := maxHolders.Load(); n > m && !maxHolders.CompareAndSwap(m, n); m = maxHolders.Load() {
					}
					wins.Add(1)
					time.Sleep(200 * time.Microsecond)
					holders.Add(-1)
					if err := h.ReleaseLease(ctx, "g1", owner); err != nil {
						t.Errorf("ReleaseLease = %v", err)
					}
				}
			})
		}
		wg.Wait()
		if m := maxHolders.Load(); m != 1 {
			t.Errorf("max simultaneous lease holders = %d, want 1", m)
		}
		if wins.Load() < 2 {
			t.Errorf("lease won %d times, want several (releases must free it)", wins.Load())
		}
	})
}
