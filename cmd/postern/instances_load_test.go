//go:build !nodemo

package main

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
)

// rotationsWanted is how many refresh-token rotations each fleet run must see.
const rotationsWanted = 1000

// signInAll signs every peer user in through instance 0, a few at a time.
func signInAll(ctx context.Context, f *fleet, us []idp.User) []*browser {
	users := make([]*browser, len(us))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, u := range us {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			users[i] = f.signIn(ctx, u)
		})
	}
	wg.Wait()
	return users
}

// TestInstancesShareRotations: two and then three processes share one PostgreSQL database while a load generator
// alternates the same signed-in users between them at random concurrency, with access tokens so short that the
// grants rotate about once a second. Across 1,000 rotations the IdP must see no refresh-token re-use and no family
// revocation, and every view must succeed.
func TestInstancesShareRotations(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			f, p, us := startFleet(t, n, 11*time.Second, 16)
			ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
			defer cancel()
			users := signInAll(ctx, f, us)
			start := p.IdP.Stats()
			began := time.Now()
			counts := f.load(ctx, users, func() bool { return p.IdP.Stats().Refreshes-start.Refreshes >= rotationsWanted }, nil)
			s := p.IdP.Stats()
			total := 0
			for _, c := range counts {
				total += c
			}
			t.Logf("%d instances: %d rotations, %d views in %s (%d ok); re-uses %d, family revocations %d, refresh failures %d",
				n, s.Refreshes-start.Refreshes, total, time.Since(began).Round(time.Second), counts[viewOK],
				s.RefreshReuses, s.FamilyRevocations, s.RefreshFailures-start.RefreshFailures)
			if ctx.Err() != nil {
				t.Fatalf("only %d rotations before the time limit", s.Refreshes-start.Refreshes)
			}
			if s.RefreshReuses != 0 || s.FamilyRevocations != 0 {
				t.Errorf("refresh-token re-uses = %d, family revocations = %d; want 0 and 0", s.RefreshReuses, s.FamilyRevocations)
			}
			if counts[viewOK] != total {
				t.Errorf("views: %d of %d ok; signed out %d, unavailable %d, refused %d, other %d", counts[viewOK], total,
					counts[viewSignedOut], counts[viewUnavailable], counts[viewRefused], counts[viewOther])
			}
		})
	}
}

// TestInstancesRollingRestart restarts each of three instances in turn (SIGTERM, drain, start) while the load
// goes on: no view may fail except on the instance being restarted while it is down, and nobody is signed out.
func TestInstancesRollingRestart(t *testing.T) {
	f, p, us := startFleet(t, 3, 11*time.Second, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	users := signInAll(ctx, f, us)
	start := p.IdP.Stats()
	var mu sync.Mutex
	down := -1
	done := make(chan map[outcome]int)
	var stopped bool
	go func() {
		done <- f.load(ctx, users, func() bool { mu.Lock(); defer mu.Unlock(); return stopped },
			func(i int) bool { mu.Lock(); defer mu.Unlock(); return i == down })
	}()
	for i := range f.addrs {
		time.Sleep(2 * time.Second)
		// The load balancer takes the instance out first (skip), then it drains and restarts.
		mu.Lock()
		down = i
		mu.Unlock()
		f.takeOut(i)
		f.stop(i, syscall.SIGTERM)
		f.start(i)
		mu.Lock()
		down = -1
		mu.Unlock()
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	stopped = true
	mu.Unlock()
	counts := <-done
	s := p.IdP.Stats()
	total := 0
	for _, c := range counts {
		total += c
	}
	t.Logf("rolling restart of 3 instances: %d views, %d ok, %d rotations; re-uses %d, family revocations %d",
		total, counts[viewOK], s.Refreshes-start.Refreshes, s.RefreshReuses, s.FamilyRevocations)
	if counts[viewOK] != total {
		t.Errorf("views: %d of %d ok; signed out %d, unavailable %d, refused %d, other %d", counts[viewOK], total,
			counts[viewSignedOut], counts[viewUnavailable], counts[viewRefused], counts[viewOther])
	}
	if s.RefreshReuses != 0 || s.FamilyRevocations != 0 {
		t.Errorf("refresh-token re-uses = %d, family revocations = %d; want 0 and 0", s.RefreshReuses, s.FamilyRevocations)
	}
}

// TestInstancesThroughput measures page views per second through one instance and through two, in one run, with
// the same users, the same concurrency (8 clients) and 1-hour tokens (no refreshes in the window): the figures go to
// docs/benchmarks.md. It asserts only that every view succeeded; the ratio is logged, not asserted (a shared
// 2-core machine runs the IdP, the mail server, PostgreSQL and the instances).
func TestInstancesThroughput(t *testing.T) {
	rates := map[int]float64{}
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			f, _, us := startFleet(t, n, time.Hour, 16)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			users := signInAll(ctx, f, us)
			for i := range f.addrs { // warm every instance's pool
				for _, b := range users {
					f.view(b, i)
				}
			}
			var mu sync.Mutex
			ok, failed := 0, 0
			const window = 10 * time.Second
			end := time.Now().Add(window)
			var wg sync.WaitGroup
			for c := range 8 {
				wg.Go(func() {
					for i := 0; time.Now().Before(end); i++ {
						o, _ := f.view(users[(c+i)%len(users)], (c+i)%n)
						mu.Lock()
						if o == viewOK {
							ok++
						} else {
							failed++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			rates[n] = float64(ok) / window.Seconds()
			t.Logf("%d instance(s): %d views in %s = %.0f views/s, %d failed", n, ok, window, rates[n], failed)
			if failed != 0 {
				t.Errorf("%d views failed", failed)
			}
		})
	}
	if rates[1] > 0 {
		t.Logf("two instances / one: %.2f×", rates[2]/rates[1])
	}
}
