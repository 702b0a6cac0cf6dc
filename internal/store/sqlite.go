package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/postern/postern/internal/seal"
)

// SQLite is the store backed by a single SQLite file (modernc.org/sqlite, pure
// Go). Several processes may open the same file: leases and versioned updates
// are single statements, which SQLite serialises across processes. It is safe
// for concurrent use.
type SQLite struct {
	db *sql.DB
	codec
	// stmts holds the statements of the reads every page view makes (session, grant, settings), prepared once:
	// parsing and planning a one-row SELECT cost SQLite about as much as running it (issue 14). Query text →
	// *sql.Stmt, which database/sql prepares once on each pooled connection it runs on.
	stmts sync.Map
}

// busyTimeout is how long a statement waits for another connection's write
// lock before failing with SQLITE_BUSY. Writes here are single short
// statements, so contention clears in milliseconds; 5 s only matters when
// another process is stuck, and then failing is the right answer.
const busyTimeout = 5 * time.Second

// OpenSQLite opens (creating if needed) the database at path and brings its
// schema up to date. The sealer seals tokens and session data; it must hold
// every key that existing rows were sealed under.
//
// Connection settings, applied to every pooled connection:
//   - journal_mode=WAL: readers do not block the writer, which page views
//     (reads) and the refresher (writes) need.
//   - synchronous=FULL: a commit is on disk when it returns. A rotated refresh
//     token lost to a power cut cannot be recovered (the old one is spent and
//     re-using it revokes the grant), so the cheaper NORMAL is not enough.
//   - busy_timeout: wait for, rather than fail on, another writer.
//   - foreign_keys=ON: enforce references added by later migrations.
//   - BEGIN IMMEDIATE for transactions: take the write lock up front, so a
//     transaction never fails mid-way upgrading a read lock (which busy_timeout
//     cannot retry in WAL mode).
func OpenSQLite(ctx context.Context, path string, sealer *seal.Sealer) (*SQLite, error) {
	if sealer == nil {
		return nil, errors.New("store: nil sealer")
	}
	if path == "" || strings.ContainsRune(path, '?') || strings.HasPrefix(path, "file:") {
		// The driver reads everything after '?' as its own parameters, and a
		// "file:" prefix would switch it to URI parsing: refuse rather than
		// open a different file than the one configured.
		return nil, fmt.Errorf("store: unsupported database path %q", path)
	}
	if err := restrictFiles(path); err != nil {
		return nil, err
	}
	dsn := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)"+
		"&_pragma=synchronous(FULL)&_pragma=foreign_keys(ON)&_txlock=immediate",
		path, busyTimeout.Milliseconds())
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// Pooled connections are cheap to keep and re-running the pragmas on
	// every new one is not; keep a few idle.
	db.SetMaxIdleConns(4)
	s := &SQLite{db: db, codec: codec{sealer: sealer, now: time.Now}}
	if err := pingRetry(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := migrate(ctx, db, migrationFS); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// restrictFiles makes the database readable by its owner only: the file and its -wal and -shm companions 0600 (SQLite
// creates those with the main file's mode), created so if new, and the directory 0700 whether it is new or not. The
// tokens inside are sealed, but session rows, grant metadata and addresses are not, and nobody else on the host has
// reason to read them. A directory that is not ours, is shared and sticky (/tmp), or is the user's home keeps its
// mode: changing it would break other users of it, and the file modes still apply.
func restrictFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: restrict %s: %w", p, err)
		}
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	home, _ := os.UserHomeDir()
	if fi.Mode().Perm() == 0o700 || fi.Mode()&fs.ModeSticky != 0 || dir == "/" || dir == home {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil && !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("store: restrict %s: %w", dir, err)
	}
	return nil
}

// Ping reports whether the database answers a trivial query, for health
// checks.
func (s *SQLite) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close closes the database. On the last connection SQLite checkpoints the
// WAL into the main file.
func (s *SQLite) Close() error {
	s.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	return s.db.Close()
}

// queryRow is db.QueryRowContext through a statement prepared on first use and kept (SQLite.stmts), for the reads
// of every page view. A statement that cannot be prepared is not kept: the query then runs unprepared, and reports
// the same error if it has one. SQLite re-prepares a kept statement by itself after a schema change (another
// process migrating), as sqlite3_prepare_v2 statements do.
func (s *SQLite) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt).QueryRowContext(ctx, args...)
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return s.db.QueryRowContext(ctx, query, args...)
	}
	if kept, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close() // another request prepared it first
		st = kept.(*sql.Stmt)
	}
	return st.QueryRowContext(ctx, args...)
}

// isUniqueViolation reports whether err is a primary-key or unique constraint
// failure.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code()
	return code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || code == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// pingRetry opens the first connection. Switching a new database file to WAL needs an exclusive lock, and SQLite
// answers SQLITE_BUSY at once, without consulting busy_timeout, when another process is doing the same at that moment
// (several instances starting together on a fresh shared file): retry for up to busyTimeout.
func pingRetry(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := db.PingContext(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(10+rand.IntN(40)) * time.Millisecond):
		}
	}
}

// isBusy reports whether err is SQLite's "database is locked".
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}
