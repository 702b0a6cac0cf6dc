package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/internal/store/pgtest"
)

// seedPostgresGrants inserts n grants with COPY, a fraction due of them before at(0), like seedGrants for SQLite.
func seedPostgresGrants(b *testing.B, s *Postgres, n int, due float64) {
	b.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	states := []GrantState{StateOK, StateOK, StateOK, StateDegraded, StateNeedsSignIn}
	cols := strings.Split(strings.Join(strings.Fields(grantColumns), ""), ",")
	rows := make([][]any, 0, n)
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
		rows = append(rows, args)
	}
	if _, err := s.pool.CopyFrom(ctx, pgx.Identifier{"grants"}, cols, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE grants"); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPostgresDueGrants is BenchmarkDueGrants on PostgreSQL: one refresher poll against 100,000 grants, about
// 1% due.
func BenchmarkPostgresDueGrants(b *testing.B) {
	s := openPostgresAt(b, pgtest.DSN(b), newSealer(b, "old"))
	seedPostgresGrants(b, s, 100_000, 0.01)
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

// BenchmarkPostgresClaimDueGrants is the scheduler's pass with several instances: claiming up to 256 due grants of
// 100,000 (FOR UPDATE SKIP LOCKED and one UPDATE). The claims expire at once, so every pass claims afresh.
func BenchmarkPostgresClaimDueGrants(b *testing.B) {
	s := openPostgresAt(b, pgtest.DSN(b), newSealer(b, "old"))
	seedPostgresGrants(b, s, 100_000, 0.01)
	ctx := context.Background()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		ids, err := s.ClaimDueGrants(ctx, "bench", at(0), at(0), 256)
		if err != nil {
			b.Fatal(err)
		}
		n = len(ids)
	}
	if n != 256 {
		b.Fatalf("ClaimDueGrants returned %d ids, want 256", n)
	}
}
