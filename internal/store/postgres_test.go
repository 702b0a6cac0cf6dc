package store

import (
	"bytes"
	"context"
	"io/fs"
	"strings"
	"sync"
	"testing"
)

// TestPostgresMigrateConcurrentOpen starts several instances on one fresh database at once, as a rolling
// deployment does: each migration must be applied exactly once and every instance must come up.
func TestPostgresMigrateConcurrentOpen(t *testing.T) {
	dsn := postgresSchema(t, postgresDSN(t))
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
	dsn := postgresSchema(t, postgresDSN(t))
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
	ts := openPostgresTest(t, postgresDSN(t))
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
