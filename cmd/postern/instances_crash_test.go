//go:build !nodemo

package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/internal/devstack/idp"
)

// TestInstancesKillLeaseHolder: the instance holding a grant's refresh lease is killed (SIGKILL) while its refresh
// is held at a frozen IdP. Either the IdP drops the orphaned request, or it processes it after the process died
// (the rotation commits and the answer is lost). The surviving instance takes over the lease once it expires,
// probes by introspection before it sends the refresh token, and so never re-uses it: in the first case the user
// goes on without noticing; in the second the refresh token is spent and only a new sign-in helps, which the
// survivor says rather than trying the spent token (and revoking the grant at the IdP).
func TestInstancesKillLeaseHolder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		freeze    idp.FreezeOptions
		committed bool
	}{
		{"IdP drops the orphaned refresh", idp.FreezeOptions{DropIfClientGone: true}, false},
		{"IdP commits the orphaned refresh", idp.FreezeOptions{UntilClientGone: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, p, us := startFleet(t, 2, 30*time.Second, 1, "  http_timeout: 5s\n  token_timeout: 10s\n")
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			b := signInAll(ctx, f, us)[0]
			for i := range f.addrs {
				if o, why := f.view(b, i); o != viewOK {
					t.Fatalf("view on instance %d = %d %s", i, o, why)
				}
			}
			p.IdP.Freeze(tc.freeze)
			defer p.IdP.Thaw()
			// The grant's refresh starts at half its access token's life, on whichever instance claims it.
			for p.IdP.Stats().HeldWhileFrozen == 0 {
				if ctx.Err() != nil {
					t.Fatal("no refresh reached the frozen IdP")
				}
				f.view(b, 0)
				f.view(b, 1)
				time.Sleep(500 * time.Millisecond)
			}
			holder := f.leaseHolder(t, ctx)
			survivor := 1 - holder
			f.stop(holder, syscall.SIGKILL)
			before := p.IdP.Stats()
			if tc.committed {
				p.IdP.Thaw() // held until the dead client's connection is gone, then processed: the rotation commits
				for p.IdP.Stats().Refreshes == before.Refreshes && ctx.Err() == nil {
					time.Sleep(50 * time.Millisecond)
				}
			} else {
				for p.IdP.Stats().DroppedWhileFrozen == 0 && ctx.Err() == nil {
					time.Sleep(50 * time.Millisecond)
				}
				p.IdP.Thaw()
			}

			// Views on the survivor until the grant settles: served (the lease expired and the refresh went
			// through) or sent to sign in (the probe found the refresh token spent).
			var last outcome
			counts := map[outcome]int{}
			for ctx.Err() == nil {
				o, _ := f.view(b, survivor)
				counts[o]++
				last = o
				if (o == viewOK && p.IdP.Stats().Refreshes > before.Refreshes+boolInt(tc.committed)) || o == viewSignedOut {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			s := p.IdP.Stats()
			t.Logf("views on the survivor: %d ok, %d unavailable (friendly 503 while no token was usable), %d signed out; "+
				"IdP: %d re-uses, %d family revocations, %d introspections",
				counts[viewOK], counts[viewUnavailable], counts[viewSignedOut], s.RefreshReuses, s.FamilyRevocations, s.Introspections)
			if s.RefreshReuses != 0 || s.FamilyRevocations != 0 {
				t.Errorf("refresh-token re-uses = %d, family revocations = %d; want 0 and 0", s.RefreshReuses, s.FamilyRevocations)
			}
			if counts[viewOther] != 0 || counts[viewRefused] != 0 {
				t.Errorf("unexpected views on the survivor: %v", counts)
			}
			want := viewOK
			if tc.committed {
				want = viewSignedOut
			}
			if last != want {
				t.Errorf("the survivor's last view = %d, want %d", last, want)
			}
		})
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// leaseHolder returns the index of the instance whose process holds the (only) grant's refresh lease, from the
// lease owner the keeper writes (host/pid/random).
func (f *fleet) leaseHolder(t *testing.T, ctx context.Context) int {
	t.Helper()
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for ctx.Err() == nil {
		var owner string
		if err := conn.QueryRow(ctx, "SELECT lease_owner FROM grants WHERE lease_owner <> '' LIMIT 1").Scan(&owner); err == nil {
			parts := strings.Split(owner, "/")
			if len(parts) == 3 {
				pid, _ := strconv.Atoi(parts[1])
				f.mu.Lock()
				for i, c := range f.procs {
					if c != nil && c.Process != nil && c.Process.Pid == pid {
						f.mu.Unlock()
						return i
					}
				}
				f.mu.Unlock()
				t.Fatalf("lease owner %q is no instance of this fleet", owner)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(fmt.Sprint("no lease holder: ", ctx.Err()))
	return -1
}
