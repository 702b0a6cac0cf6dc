package doctor

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/internal/store/pgtest"
)

// TestPostgresDoctorStorage: the doctor reads a PostgreSQL database without changing it, and says what the first
// start will do, what is current, and what to fix when it cannot connect.
func TestPostgresDoctorStorage(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	check := func(dsn string) Result {
		cfg := config.Default()
		cfg.Storage.Driver, cfg.Storage.DSN = "postgres", dsn
		d := &run{cfg: &cfg, opts: Options{Timeout: 5e9}}
		d.storage(ctx)
		return find(t, d.results, "storage")
	}
	if r := check(u.String()); r.Status != Pass || !contains(r.Detail, "schema version 0 of", "next start migrates") {
		t.Errorf("fresh database: %s %s", r.Status, r.Detail)
	}
	var tables int
	conn.QueryRow(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()").Scan(&tables)
	if tables != 0 {
		t.Errorf("the doctor created %d tables; it must change nothing", tables)
	}
	key := make([]byte, seal.KeySize)
	sealer, _ := seal.New(map[string][]byte{"1": key}, "1")
	st, err := store.OpenPostgres(ctx, u.String(), sealer)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if r := check(u.String()); r.Status != Pass || contains(r.Detail, "migrates") || !contains(r.Detail, "PostgreSQL 1") {
		t.Errorf("migrated database: %s %s", r.Status, r.Detail)
	}
	down := *u
	down.Host = "127.0.0.1:1"
	if r := check(down.String()); r.Status != Fail || r.Fix == "" {
		t.Errorf("unreachable server: %s %s / %s", r.Status, r.Detail, r.Fix)
	}
}

// contains reports whether s holds every one of subs.
func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
