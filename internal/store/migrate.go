package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migrationFS holds the schema history, one file per version:
// migrations/NNNN_description.sql, numbered from 0001 without gaps. Files are
// append-only: once released, a migration is never edited, only followed.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one parsed schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads and orders the migrations in fsys, rejecting gaps and
// duplicates so that a mis-numbered file fails every test rather than
// silently skipping a step in production.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("store: list migrations: %w", err)
	}
	var ms []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("store: migration %s: name must be NNNN_description.sql", base)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("store: read migration %s: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: strings.TrimSuffix(base, ".sql"), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migration %s: expected version %d (no gaps or duplicates)", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate brings the schema of db up to the newest migration in fsys. Each
// migration runs in its own transaction together with its schema_migrations
// row, so a failed migration leaves the database at the previous version
// (SQLite DDL is transactional). The version is re-read inside every
// transaction, and transactions take the write lock up front, so two
// processes starting at once apply each migration exactly once.
//
// A database whose version is newer than this binary knows is refused:
// running old code against a newer schema could silently drop or misread
// columns it does not know about.
func migrate(ctx context.Context, db *sql.DB, fsys fs.FS) error {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	latest := len(ms)
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("store: create schema_migrations: %w", err)
	}
	for {
		done, err := migrateOne(ctx, db, ms, latest)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next pending migration, if any, and reports whether
// the schema is now current.
func migrateOne(ctx context.Context, db *sql.DB, ms []migration, latest int) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("store: migrate: begin: %w", err)
	}
	defer tx.Rollback() // no-op after Commit

	current, err := schemaVersion(ctx, tx)
	if err != nil {
		return false, err
	}
	if current > latest {
		return false, fmt.Errorf("store: database schema version %d is newer than this binary supports (%d); "+
			"run a newer postern or restore a matching backup", current, latest)
	}
	if current == latest {
		return true, tx.Commit()
	}
	m := ms[current] // versions are 1..latest without gaps, so index = version-1
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("store: migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
		m.version, m.name, toNanos(time.Now())); err != nil {
		return false, fmt.Errorf("store: migration %s: record: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("store: migration %s: commit: %w", m.name, err)
	}
	return false, nil
}

// schemaVersion returns the highest applied migration, 0 for a new database.
func schemaVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v sql.NullInt64
	err := q.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	return int(v.Int64), nil
}
