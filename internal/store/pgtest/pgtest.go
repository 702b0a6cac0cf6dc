// Package pgtest gives tests a PostgreSQL database of their own: a fresh schema of the server named by
// POSTERN_TEST_POSTGRES_DSN, dropped when the test ends, so that tests (and parallel test binaries) sharing one
// server never see each other's rows. Only tests import it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Env names the PostgreSQL server tests may use (.ci/run sets it).
const Env = "POSTERN_TEST_POSTGRES_DSN"

// BaseDSN returns the server's DSN, or skips the test, saying how to run it, when none is configured.
func BaseDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(Env)
	if dsn == "" {
		t.Skipf("PostgreSQL tests skipped: set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", Env)
	}
	return dsn
}

// DSN is BaseDSN in a schema of the test's own (see Schema).
func DSN(t testing.TB) string {
	t.Helper()
	return Schema(t, BaseDSN(t))
}

// Schema creates a schema for this test in dsn's database, drops it (with everything in it) when the test ends,
// and returns dsn with search_path set to it (pgx passes unknown URL parameters on as run-time parameters).
func Schema(t testing.TB, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL", Env)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	exec := func(sql string) error {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(context.Background(), sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
