package store

import (
	"context"
	"database/sql"
	"errors"
	"testing"
)

// TestPreparedReadsFollowTheDatabase: the page view's reads run through statements kept from one call to the next
// (SQLite.queryRow). They must see rows written since, report a missing row as before, keep working after another
// process changed the schema (a newer Postern migrating the shared file) and after a failed prepare.
func TestPreparedReadsFollowTheDatabase(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	want := createGrant(t, s, "g1")
	if _, err := s.Grant(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grant(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Grant(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Session(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Session(missing) = %v, want ErrNotFound", err)
	}

	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, `ALTER TABLE grants ADD COLUMN added_later TEXT`); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ExecContext(ctx, `UPDATE grants SET email = 'changed@example.org' WHERE id = 'g1'`); err != nil {
		t.Fatal(err)
	}
	g, err := s.Grant(ctx, "g1")
	if err != nil {
		t.Fatalf("Grant after another process altered the table: %v", err)
	}
	if g.Email != "changed@example.org" || g.Subject != want.Subject {
		t.Errorf("Grant after another process's write = %q, %q; want the new email and the same subject", g.Email, g.Subject)
	}

	if row := s.queryRow(ctx, "SELECT nonsense FROM nowhere"); row.Scan(new(string)) == nil {
		t.Error("a query that cannot be prepared succeeded")
	}
	if _, ok := s.stmts.Load("SELECT nonsense FROM nowhere"); ok {
		t.Error("a statement that failed to prepare was kept")
	}
	if _, err := s.Grant(ctx, "g1"); err != nil {
		t.Errorf("Grant after a failed prepare: %v", err)
	}
}
