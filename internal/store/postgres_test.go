package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/store/pgtest"
)

// TestPostgresMigrateConcurrentOpen starts several instances on one fresh database at once, as a rolling
// deployment does: each migration must be applied exactly once and every instance must come up.
func TestPostgresMigrateConcurrentOpen(t *testing.T) {
	dsn := pgtest.DSN(t)
	const instances = 6
	var wg sync.WaitGroup
	errs := make(chan error, instances)
	for range instances {
		wg.Go(func() {
			s, err := OpenPostgres(context.Background(), dsn, newSealer(t, "old"))
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("OpenPostgres = %v", err)
		}
	}
	s := openPostgresAt(t, dsn, newSealer(t, "old"))
	var applied int
	if err := s.pool.QueryRow(context.Background(), "SELECT COUNT(*) FROM schema_migrations").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	ms, _ := loadMigrations(mustSub(t))
	if applied != len(ms) {
		t.Errorf("schema_migrations rows = %d, want %d (each migration once)", applied, len(ms))
	}
	if v, err := s.SchemaVersion(context.Background()); err != nil || v != len(ms) {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, len(ms))
	}
}

// TestPostgresRefusesNewerDatabase: a binary must not run against a schema it does not know.
func TestPostgresRefusesNewerDatabase(t *testing.T) {
	dsn := pgtest.DSN(t)
	s := openPostgresAt(t, dsn, newSealer(t, "old"))
	if _, err := s.pool.Exec(context.Background(),
		"INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future', 0)"); err != nil {
		t.Fatal(err)
	}
	_, err := OpenPostgres(context.Background(), dsn, newSealer(t, "old"))
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("OpenPostgres on a newer schema = %v, want a refusal", err)
	}
}

// TestPostgresTokensSealedAtRest reads every grant and session column as the database holds it: no token or
// session data may appear in clear, only the display claims.
func TestPostgresTokensSealedAtRest(t *testing.T) {
	ts := openPostgresTest(t, pgtest.BaseDSN(t))
	ctx := context.Background()
	g := sampleGrant("g1")
	if err := ts.CreateGrant(ctx, &g); err != nil {
		t.Fatal(err)
	}
	if err := ts.SaveSession(ctx, Session{ID: "s1", Data: []byte("session-secret"), ExpiresAt: at(0).Add(1 << 40)}); err != nil {
		t.Fatal(err)
	}
	s := ts.contractStore.(*Postgres)
	var dump bytes.Buffer
	for _, q := range []string{"SELECT g::text FROM grants g", "SELECT s::text FROM sessions s"} {
		rows, err := s.pool.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			dump.WriteString(line)
		}
		rows.Close()
	}
	if !strings.Contains(dump.String(), g.Email) {
		t.Fatalf("the dump lacks the email %q: the check below would prove nothing", g.Email)
	}
	for _, secret := range []string{g.AccessToken, g.RefreshToken, g.IDToken, "session-secret"} {
		if strings.Contains(dump.String(), secret) {
			t.Errorf("database holds %q in clear", secret)
		}
	}
}

// TestPostgresBadDSNKeepsPassword: a DSN that does not parse is reported without echoing it (it may hold a
// password).
func TestPostgresBadDSNKeepsPassword(t *testing.T) {
	_, err := OpenPostgres(context.Background(), "postgres://u:hunter2@127.0.0.1:5432/db?sslmode=bogus", newSealer(t, "old"))
	if err == nil {
		t.Fatal("OpenPostgres with a bad DSN succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q echoes the password", err)
	}
}

func mustSub(t testing.TB) fs.FS {
	t.Helper()
	sub, err := fs.Sub(postgresMigrationFS, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestPostgresGrantEndedEvents: a second instance hears, through the database, of every grant deleted or moved to
// needs_sign_in on the first, and of nothing else.
func TestPostgresGrantEndedEvents(t *testing.T) {
	ts := openPostgresTest(t, pgtest.BaseDSN(t))
	a := ts.contractStore
	b := ts.reopen(t).(*Postgres)
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan string, 16)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.WatchEndedGrants(ctx, func(id string) { events <- id }, nil)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchEndedGrants = %v", err)
		}
	}()
	// The watcher's LISTEN is in place once a marker notification comes through.
	go func() {
		for {
			if _, err := b.pool.Exec(ctx, "SELECT pg_notify($1, 'marker')", grantEndedChannel); err != nil {
				return
			}
			select {
			case <-ready:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case id := <-events:
			return id
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10 s")
			return ""
		}
	}
	for next() != "marker" {
	}
	close(ready)

	// Other tests in this database (other schemas) notify on the same channel: use ids of this test's own.
	var r [4]byte
	rand.Read(r[:])
	suffix := "-" + hex.EncodeToString(r[:])
	mine := map[string]bool{}
	for _, id := range []string{"degrades", "ends", "deleted"} {
		id += suffix
		mine[id] = true
		g := sampleGrant(id)
		g.State = StateOK
		if err := a.CreateGrant(ctx, &g); err != nil {
			t.Fatal(err)
		}
	}
	update := func(id string, st GrantState) {
		g, err := a.Grant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		g.State = st
		if _, err := a.UpdateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	update("degrades"+suffix, StateDegraded)
	update("ends"+suffix, StateNeedsSignIn)
	update("ends"+suffix, StateNeedsSignIn) // already ended: no second event
	if err := a.DeleteGrant(ctx, "deleted"+suffix); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 2 {
		if id := next(); mine[id] {
			got = append(got, id)
		}
	}
	if got[0] != "ends"+suffix || got[1] != "deleted"+suffix {
		t.Errorf("events = %q, want [ends deleted] (no event for a degraded grant)", got)
	}
}

// TestPostgresClaimDueGrantsSplits: two instances claiming due grants at the same moment each get their own, never
// the same grant; a grant leased elsewhere is not handed out.
func TestPostgresClaimDueGrantsSplits(t *testing.T) {
	ts := openPostgresTest(t, pgtest.BaseDSN(t))
	a := ts.contractStore.(*Postgres)
	b := ts.reopen(t).(*Postgres)
	ctx := context.Background()
	const n = 40
	for i := range n {
		g := sampleGrant(fmt.Sprintf("g%02d", i))
		g.State, g.NextRefreshAt = StateOK, at(time.Duration(i)*time.Second)
		if err := a.CreateGrant(ctx, &g); err != nil {
			t.Fatal(err)
		}
	}
	held := sampleGrant("held")
	held.State, held.NextRefreshAt = StateOK, at(-time.Hour)
	if err := a.CreateGrant(ctx, &held); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.ClaimLease(ctx, "held", "someone-else", at(0), at(3*time.Hour)); !ok || err != nil {
		t.Fatalf("ClaimLease = %v, %v", ok, err)
	}
	now, until := at(time.Hour), at(2*time.Hour)
	got := make([][]string, 2)
	var wg sync.WaitGroup
	for i, s := range []*Postgres{a, b} {
		wg.Go(func() {
			for range 5 { // several passes each, interleaved with the other instance's; the last finds nothing
				ids, err := s.ClaimDueGrants(ctx, fmt.Sprint("instance-", i), now, until, n/8)
				if err != nil {
					t.Error(err)
					return
				}
				got[i] = append(got[i], ids...)
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for i := range got {
		for _, id := range got[i] {
			seen[id]++
		}
	}
	if len(seen) != n || seen["held"] != 0 {
		t.Errorf("claimed %d distinct grants (held: %d), want %d and 0", len(seen), seen["held"], n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("grant %s claimed %d times", id, c)
		}
	}
	// A claim is the refresh lease: the other instance cannot take it until it is released or expires.
	id := got[0][0]
	if ok, _ := b.ClaimLease(ctx, id, "instance-1", now, until); ok {
		t.Errorf("instance-1 took the lease of %s, which instance-0 claimed", id)
	}
	if err := a.ReleaseLease(ctx, id, "instance-0"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.ClaimLease(ctx, id, "instance-1", now, until); !ok {
		t.Errorf("instance-1 could not take the lease of %s after its release", id)
	}
}

// TestPostgresRateLimiterIsShared: waits on two instances' limiters of the same name draw from one sequence of
// slots, so k waits in all move the next free slot k spacings on, whichever instance made them.
func TestPostgresRateLimiterIsShared(t *testing.T) {
	ts := openPostgresTest(t, pgtest.BaseDSN(t))
	a := ts.contractStore.(*Postgres)
	b := ts.reopen(t).(*Postgres)
	ctx := context.Background()
	const perSecond, waits = 200.0, 30
	every := time.Duration(float64(time.Second) / perSecond)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range waits {
		l := []*Postgres{a, b}[i%2].RateLimiter("token_endpoint", perSecond)
		wg.Go(func() {
			if err := l.Wait(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var next int64
	if err := a.pool.QueryRow(ctx, "SELECT next_at FROM rate_slots WHERE name = 'token_endpoint'").Scan(&next); err != nil {
		t.Fatal(err)
	}
	if got := fromNanos(next).Sub(start); got < waits*every {
		t.Errorf("next free slot %v after the first wait, want at least %d × %v: the instances did not share the cap", got, waits, every)
	}
	if err := a.RateLimiter("other", -1).Wait(ctx); err != nil {
		t.Errorf("an uncapped limiter = %v", err)
	}
}
