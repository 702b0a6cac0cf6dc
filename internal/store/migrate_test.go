package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func TestMigrationsEmbedded(t *testing.T) {
	t.Parallel()
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].name != "0001_init" {
		t.Fatalf("migrations = %v, want 0001_init first", ms)
	}
}

func TestLoadMigrationsRejects(t *testing.T) {
	t.Parallel()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		wantErr string
	}{
		{"gap", fstest.MapFS{"migrations/0001_a.sql": file(""), "migrations/0003_c.sql": file("")}, "expected version 2"},
		{"duplicate", fstest.MapFS{"migrations/0001_a.sql": file(""), "migrations/0001_b.sql": file("")}, "expected version 2"},
		{"bad name", fstest.MapFS{"migrations/init.sql": file("")}, "NNNN_description"},
		{"zero", fstest.MapFS{"migrations/0000_a.sql": file("")}, "NNNN_description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadMigrations(tt.fsys)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("loadMigrations = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// appliedVersions lists schema_migrations in order.
func appliedVersions(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.Query("SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestMigrateIdempotentOnReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "postern.db")
	sealer := newSealer(t, "old")
	ms, _ := loadMigrations(migrationFS)

	s := openAt(t, path, sealer)
	g := sampleGrant("g1")
	if err := s.CreateGrant(context.Background(), &g); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for i := range 3 {
		s := openAt(t, path, sealer)
		if got := appliedVersions(t, s.db); len(got) != len(ms) || got[len(got)-1] != len(ms) {
			t.Fatalf("reopen %d: applied versions = %v, want 1..%d", i, got, len(ms))
		}
		if _, err := s.Grant(context.Background(), "g1"); err != nil {
			t.Fatalf("reopen %d: Grant = %v; data lost", i, err)
		}
		s.Close()
	}
}

func TestMigrateRefusesNewerDatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "postern.db")
	s := openAt(t, path, newSealer(t, "old"))
	if _, err := s.db.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future', 0)"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err := OpenSQLite(context.Background(), path, newSealer(t, "old"))
	if err == nil || !strings.Contains(err.Error(), "database schema version 999 is newer than this binary supports") {
		t.Fatalf("OpenSQLite on a newer database = %v, want a refusal naming version 999", err)
	}
}

func TestMigrateFailureRollsBack(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"migrations/0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER); CREATE TABLE a2 (y INTEGER);")},
		"migrations/0002_b.sql": {Data: []byte("CREATE TABLE b (x INTEGER); INSERT INTO nope VALUES (1);")},
	}
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db")+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	err = migrate(context.Background(), db, fsys)
	if err == nil || !strings.Contains(err.Error(), "migration 0002_b") {
		t.Fatalf("migrate = %v, want failure in 0002_b", err)
	}
	if got := appliedVersions(t, db); len(got) != 1 || got[0] != 1 {
		t.Errorf("applied versions = %v, want [1]", got)
	}
	tables := map[string]bool{}
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables[n] = true
	}
	rows.Close()
	// Both statements of 0001 ran (multi-statement migrations work); 0002's
	// first statement was rolled back with the failed second.
	for name, want := range map[string]bool{"a": true, "a2": true, "b": false} {
		if tables[name] != want {
			t.Errorf("table %s exists = %v, want %v", name, tables[name], want)
		}
	}
}

// TestMigrateConcurrentOpen starts several "processes" on one new file at
// once; each migration must be applied exactly once and every open succeed.
func TestMigrateConcurrentOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "postern.db")
	sealer := newSealer(t, "old")
	const n = 6
	errs := make(chan error, n)
	stores := make(chan *SQLite, n)
	for range n {
		go func() {
			s, err := OpenSQLite(context.Background(), path, sealer)
			errs <- err
			stores <- s
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent OpenSQLite = %v", err)
		}
	}
	var s *SQLite
	for range n {
		if st := <-stores; st != nil {
			s = st
			defer st.Close()
		}
	}
	if s == nil {
		t.FailNow()
	}
	ms, _ := loadMigrations(migrationFS)
	if got := appliedVersions(t, s.db); len(got) != len(ms) {
		t.Errorf("applied versions = %v, want each of 1..%d once", got, len(ms))
	}
}
