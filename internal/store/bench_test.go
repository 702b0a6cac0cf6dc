package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// seedGrants inserts n grants in one transaction, a fraction due of them
// before at(0) and the rest spread over the following day, all tokens sealed
// as CreateGrant would.
func seedGrants(b *testing.B, s *SQLite, n int, due float64) {
	b.Helper()
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, insertGrantSQL)
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	states := []GrantState{StateOK, StateOK, StateOK, StateDegraded, StateNeedsSignIn}
	for i := range n {
		next := at(time.Duration(rng.Int64N(int64(24 * time.Hour))))
		if rng.Float64() < due {
			next = at(-time.Duration(rng.Int64N(int64(time.Hour))))
		}
		g := Grant{
			ID: newID(), Issuer: "https://auth.example.org", Subject: fmt.Sprint("user", i),
			Email:       fmt.Sprint("user", i, "@example.org"),
			AccessToken: "access-token-0123456789abcdef", RefreshToken: "refresh-token-0123456789abcdef",
			State: states[i%len(states)], NextRefreshAt: next,
		}
		args, err := s.insertGrantArgs(&g)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDueGrants measures one refresher poll against 100,000 grants,
// about 1% of them due.
func BenchmarkDueGrants(b *testing.B) {
	s, _ := openTemp(b)
	seedGrants(b, s, 100_000, 0.01)
	ctx := context.Background()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		ids, err := s.DueGrants(ctx, at(0), 256)
		if err != nil {
			b.Fatal(err)
		}
		n = len(ids)
	}
	if n != 256 {
		b.Fatalf("DueGrants returned %d ids, want 256", n)
	}
}

// BenchmarkUpdateGrant measures one versioned token write (three seals and a
// durable commit), the cost of every refresh.
func BenchmarkUpdateGrant(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	g := createGrant(b, s, "g1")
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if g, err = s.UpdateGrant(ctx, g); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGrant measures reading and opening one grant, the cost of a page
// view that needs a token.
func BenchmarkGrant(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	createGrant(b, s, "g1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Grant(ctx, "g1"); err != nil {
			b.Fatal(err)
		}
	}
}
