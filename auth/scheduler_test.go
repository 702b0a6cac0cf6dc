package auth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
)

// TestBackgroundKeepsGrantAlive: with no browser traffic for 6 hours the
// background refresher keeps the grant usable at one call per ~70 minutes
// (0.75–0.8 of Authelia's 90-minute sliding refresh lifetime); with a page
// view every minute it keeps the access token fresh at one call per ~55
// minutes (access-token lifetime less RefreshBeforeExpiry), and page views
// never wait for a refresh.
func TestBackgroundKeepsGrantAlive(t *testing.T) {
	for _, tc := range []struct {
		name     string
		view     time.Duration // page-view interval; 0 = none
		min, max int64         // token-endpoint calls in 6h
	}{
		{"idle", 0, 5, 5},
		{"active", time.Minute, 6, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newKeeperEnv(t)
				k := e.keeper(t, e.st, KeeperOptions{})
				id := e.start(t, k)
				stop := runKeeper(t, k)
				end := time.Now().Add(6 * time.Hour)
				for time.Now().Before(end) {
					if tc.view == 0 {
						sleepUntil(end)
						break
					}
					time.Sleep(tc.view)
					tok, err := k.Token(t.Context(), id)
					if err != nil {
						t.Fatalf("Token() = %v", err)
					}
					if left := time.Until(tok.Expiry); left < 5*time.Minute/2 {
						t.Fatalf("page view got a token with %v left: the background refresh fell behind", left)
					}
				}
				stop()
				calls := e.refreshes()
				t.Logf("%s for 6h: %d token-endpoint calls", tc.name, calls)
				if calls < tc.min || calls > tc.max {
					t.Errorf("token-endpoint calls in 6h = %d, want %d–%d", calls, tc.min, tc.max)
				}
				g := e.grant(t, id)
				if g.State != store.StateOK || !e.idp.Active(g.RefreshToken) {
					t.Errorf("grant after 6h = %q, refresh token active %v; want ok and active", g.State, e.idp.Active(g.RefreshToken))
				}
				if _, err := k.Token(t.Context(), id); err != nil {
					t.Errorf("Token() after 6h = %v", err)
				}
				e.checkNoReuse(t)
			})
		})
	}
}

// TestTwoKeepersHammer: two processes (two store handles on one file, two
// lease owners), both running the background refresher, and bursts of page
// views and mail retries of random size on both, over 1,000 rotations of one
// grant. The IdP must never see a spent refresh token.
func TestTwoKeepersHammer(t *testing.T) {
	rotations := int64(1000)
	if testing.Short() {
		rotations = 100
	}
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		opts := KeeperOptions{IdleTimeout: 1 << 62, Lifetime: 1 << 62}
		opts.Owner = "process-a"
		a := e.keeper(t, e.st, opts)
		opts.Owner = "process-b"
		b := e.keeper(t, e.openStore(t), opts)
		id := e.start(t, a)
		runKeeper(t, a)
		runKeeper(t, b)

		rng := rand.New(rand.NewPCG(1, 2))
		var mu sync.Mutex
		seen := []string{e.grant(t, id).AccessToken}
		calls, bursts := 0, 0
		for e.refreshes() < rotations {
			g := e.grant(t, id)
			// Land anywhere in the access token's last 8 minutes, racing the
			// background refreshers (5–6 minutes before expiry).
			at := g.AccessExpiry.Add(-time.Duration(rng.Int64N(int64(8 * time.Minute))))
			sleepUntil(later(at, time.Now().Add(time.Second)))
			n := 1 + rng.IntN(10)
			var wg sync.WaitGroup
			for range n {
				k := a
				if rng.IntN(2) == 1 {
					k = b
				}
				delay := time.Duration(rng.Int64N(int64(3 * time.Second)))
				replace := rng.IntN(4) == 0
				mu.Lock()
				stale := seen[rng.IntN(len(seen))]
				mu.Unlock()
				calls++
				wg.Go(func() {
					time.Sleep(delay)
					var tok Token
					var err error
					if replace && stale != e.grant(t, id).AccessToken {
						tok, err = k.Replace(t.Context(), id, stale)
					} else {
						tok, err = k.Token(t.Context(), id)
					}
					if err != nil {
						t.Errorf("Token/Replace() = %v", err)
						return
					}
					mu.Lock()
					if seen[len(seen)-1] != tok.Access {
						seen = append(seen, tok.Access)
					}
					mu.Unlock()
				})
			}
			wg.Wait()
			bursts++
			if t.Failed() {
				break
			}
		}
		s := e.idp.Stats()
		t.Logf("%d rotations, %d bursts, %d calls: IdP refresh reuses %d, family revocations %d, refresh failures %d",
			s.Refreshes, bursts, calls, s.RefreshReuses, s.FamilyRevocations, s.RefreshFailures)
		e.checkNoReuse(t)
		if s.RefreshFailures != 0 {
			t.Errorf("IdP refresh failures = %d, want 0", s.RefreshFailures)
		}
		if g := e.grant(t, id); g.State != store.StateOK || !e.idp.Active(g.RefreshToken) {
			t.Errorf("grant = %q, refresh token active %v; want ok, true", g.State, e.idp.Active(g.RefreshToken))
		}
	})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestRunLimits: a crowd of grants due at once is refreshed at no more than
// MaxPerSecond calls a second and Concurrency at a time.
func TestRunLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{MaxPerSecond: 2, Concurrency: 3, MaxGrantsPerUser: -1}) // one user, many grants
		const grants = 24
		for range grants {
			e.start(t, k)
		}
		e.faults.set(func(f *faults) { f.tokenDelay = 4 * time.Second; f.tokenTimes = nil })
		time.Sleep(73 * time.Minute) // every grant is due (idle: 67.5–72 minutes)
		runKeeper(t, k)
		time.Sleep(5 * time.Minute)
		if got := e.refreshes(); got != grants {
			t.Fatalf("refreshes = %d, want %d", got, grants)
		}
		e.faults.mu.Lock()
		times, most := e.faults.tokenTimes, e.faults.maxInflight
		e.faults.mu.Unlock()
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap < 500*time.Millisecond {
				t.Errorf("token requests %d and %d are %v apart, want ≥ 500ms (2/s)", i-1, i, gap)
			}
		}
		if most > 3 {
			t.Errorf("%d token requests in flight at once, want ≤ 3", most)
		}
		t.Logf("%d refreshes over %v, at most %d in flight", len(times), times[len(times)-1].Sub(times[0]), most)
	})
}

// TestRunShutdownPersists: cancelling Run while a refresh is in flight
// waits for it, and its rotated tokens are in the store when Run returns.
func TestRunShutdownPersists(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{LeaseTTL: 2 * time.Minute})
		id := e.start(t, k)
		before := e.grant(t, id)
		e.faults.set(func(f *faults) { f.tokenDelay = 20 * time.Second })
		stop := runKeeper(t, k)
		due := k.pol.refreshAt(before, before.LastRefresh.Add(time.Hour)) // idle by then
		sleepUntil(due.Add(tickInterval + time.Second))
		e.faults.mu.Lock()
		inflight := e.faults.inflight
		e.faults.mu.Unlock()
		if inflight != 1 {
			t.Fatalf("%d token requests in flight at shutdown, want 1", inflight)
		}
		stop()
		after := e.grant(t, id)
		if after.Version == before.Version || after.RefreshToken == before.RefreshToken || !e.idp.Active(after.RefreshToken) {
			t.Errorf("after Run returned the grant holds the rotated tokens: %v, want true", after.RefreshToken != before.RefreshToken)
		}
		e.checkNoReuse(t)
	})
}

// BenchmarkSchedulerTick measures one scheduler pass (the due-grant index
// query and the hand-off to workers) with 1,000 and 100,000 grants in a
// SQLite store whose refresh times are spread over the next 72 minutes, as in
// steady state. "none due" is a pass that finds nothing and looks up when the
// next grant is due; "5s due" finds one tick's worth (about 116 of 100,000)
// and "all due" finds every grant overdue: both read at most one queue's
// worth of ids (queueCap, 18 by default). heap-MiB is the live heap after the
// passes: the Keeper keeps no per-grant state.
func BenchmarkSchedulerTick(b *testing.B) {
	for _, grants := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(grants, " grants"), func(b *testing.B) { benchmarkTick(b, grants) })
	}
}

func benchmarkTick(b *testing.B, grants int) {
	dir := b.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		// synchronous=FULL fsyncs every insert; tmpfs keeps setup to seconds.
		d, err := os.MkdirTemp("/dev/shm", "postern-bench-")
		if err == nil {
			dir = d
			b.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	ctx := context.Background()
	sealer, err := seal.New(map[string][]byte{"k1": make([]byte, seal.KeySize)}, "k1")
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "bench.db"), sealer)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	for i := range grants {
		g := store.Grant{Issuer: keeperIssuer, Subject: fmt.Sprint("user-", i), Email: "u@example.org",
			AccessToken: fmt.Sprint("authelia_at_", i), RefreshToken: fmt.Sprint("authelia_rt_", i),
			AccessExpiry: now.Add(time.Hour), RefreshExpiry: now.Add(90 * time.Minute),
			LastRefresh: now, LastActive: now, CreatedAt: now,
			NextRefreshAt: now.Add(time.Duration(i) * 72 * time.Minute / time.Duration(grants))}
		if err := st.CreateGrant(ctx, &g); err != nil {
			b.Fatal(err)
		}
	}
	k := newKeeper(nil, st, KeeperOptions{})
	queue := make(chan string, k.queueCap())
	drain := func() {
		for {
			select {
			case id := <-queue:
				delete(k.queued, id)
			default:
				return
			}
		}
	}
	for _, bc := range []struct {
		name string
		at   time.Time
	}{
		{"none due", now.Add(-time.Minute)},
		{"5s due", now.Add(tickInterval)},
		{"all due", now.Add(2 * time.Hour)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				k.tick(ctx, bc.at, queue)
				drain()
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
		})
	}
}

// TestAbandonedGrantDeleted: Run deletes a grant that needs a sign-in once
// nobody has used it for IdleTimeout (needs_sign_in → deleted, abandoned),
// and not before.
func TestAbandonedGrantDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{IdleTimeout: 3 * time.Hour})
		id := e.start(t, k)
		if err := e.p.Revoke(t.Context(), e.grant(t, id).RefreshToken, "refresh_token"); err != nil {
			t.Fatal(err)
		}
		stop := runKeeper(t, k)
		time.Sleep(2 * time.Hour) // the background refresh met invalid_grant
		if g := e.grant(t, id); g.State != store.StateNeedsSignIn {
			t.Fatalf("grant = %s (%s), want needs_sign_in", g.State, g.LastError)
		}
		time.Sleep(50 * time.Minute) // 2h50m after the last use
		e.grant(t, id)
		time.Sleep(12 * time.Minute) // past 3h
		if _, err := e.st.Grant(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("grant unused for IdleTimeout in needs_sign_in: %v, want deleted", err)
		}
		stop()
		if m := k.Metrics(); m.Abandoned != 1 {
			t.Errorf("Metrics().Abandoned = %d, want 1", m.Abandoned)
		}
	})
}
