package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postern/postern/internal/seal"
)

// Postgres is the store backed by a PostgreSQL database (pgx v5, pgxpool), for several Postern instances sharing
// state. It keeps the same contract as SQLite — the contract tests run against both — with the same tables and
// the same guards: versioned updates are one conditional UPDATE, and a refresh lease is claimed by one
// conditional UPDATE, which PostgreSQL serialises on the row lock, so two instances can never both hold it.
//
// Durability: PostgreSQL's default synchronous_commit=on makes a commit durable when it returns, which a rotated
// refresh token needs (the old one is spent); Postern never lowers it.
type Postgres struct {
	pool *pgxpool.Pool
	codec
}

//go:embed postgres/migrations/*.sql
var postgresMigrationFS embed.FS

// migrationLockID serialises schema migrations between instances starting at once
// (pg_advisory_xact_lock; the number is arbitrary but fixed: "postern" in ASCII).
const migrationLockID = 0x706f737465726e

// OpenPostgres connects to the database named by dsn (a libpq-style URL or key=value string) and brings its schema
// up to date. The sealer seals tokens and session data; it must hold every key that existing rows were sealed under.
func OpenPostgres(ctx context.Context, dsn string, sealer *seal.Sealer) (*Postgres, error) {
	if sealer == nil {
		return nil, errors.New("store: nil sealer")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN, password included: say only what kind of problem it is.
		return nil, errors.New("store: postgres: the DSN does not parse (see storage.dsn)")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	s := &Postgres{pool: pool, codec: codec{sealer: sealer, now: time.Now}}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	sub, err := fs.Sub(postgresMigrationFS, "postgres")
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: postgres migrations: %w", err)
	}
	if err := s.migrate(ctx, sub); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Ping reports whether the database answers a trivial query, for health checks.
func (s *Postgres) Ping(ctx context.Context) error {
	var one int
	if err := s.pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close closes every pooled connection.
func (s *Postgres) Close() error {
	s.pool.Close()
	return nil
}

// SchemaVersion returns the newest applied migration, for `postern doctor`.
func (s *Postgres) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.pool.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	return v, nil
}

// migrate applies pending migrations, each in its own transaction with its schema_migrations row (PostgreSQL DDL
// is transactional). Every transaction first takes a transaction-scoped advisory lock, so instances starting
// together apply each migration exactly once; a database newer than this binary is refused, as with SQLite.
func (s *Postgres) migrate(ctx context.Context, fsys fs.FS) error {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	for {
		done, err := s.migrateOne(ctx, ms)
		if err != nil || done {
			return err
		}
	}
}

func (s *Postgres) migrateOne(ctx context.Context, ms []migration) (done bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("store: migrate: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLockID)); err != nil {
		return false, fmt.Errorf("store: migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint NOT NULL PRIMARY KEY,
		name       text   NOT NULL,
		applied_at bigint NOT NULL
	)`); err != nil {
		return false, fmt.Errorf("store: create schema_migrations: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return false, fmt.Errorf("store: read schema version: %w", err)
	}
	latest := len(ms)
	if current > latest {
		return false, fmt.Errorf("store: database schema version %d is newer than this binary supports (%d); "+
			"run a newer postern or restore a matching backup", current, latest)
	}
	if current == latest {
		return true, tx.Commit(ctx)
	}
	m := ms[current]
	if _, err := tx.Exec(ctx, m.sql); err != nil {
		return false, fmt.Errorf("store: migration %s: %w", m.name, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
		m.version, m.name, toNanos(time.Now())); err != nil {
		return false, fmt.Errorf("store: migration %s: record: %w", m.name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("store: migration %s: commit: %w", m.name, err)
	}
	return false, nil
}

// dollar rewrites SQLite's ? placeholders as PostgreSQL's $1, $2, … so that statements that mean the same in both
// dialects are written once. The statements it is given hold no literal question marks.
func dollar(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// pgUniqueViolation reports whether err is PostgreSQL's unique_violation (SQLSTATE 23505).
func pgUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// pgNoRows reports whether a QueryRow found nothing.
func pgNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// PostgresInfo is what `postern doctor` reports about a PostgreSQL database, read without changing anything.
type PostgresInfo struct {
	// ServerVersion is the server's version string, ServerVersionNum its number (150004 for 15.4).
	ServerVersion    string
	ServerVersionNum int
	// SchemaVersion is the newest migration applied (0 for a database Postern never opened); LatestVersion the
	// newest this binary knows.
	SchemaVersion, LatestVersion int
	// CanCreate reports whether the user may create tables in the current schema, which the first start needs.
	CanCreate bool
}

// MinPostgresVersion is the oldest server the migrations are written for (EXECUTE FUNCTION in triggers: 11; the
// project tests on 15).
const MinPostgresVersion = 110000

// InspectPostgres connects to dsn and reads the server version and the schema version, creating and migrating
// nothing. Errors never quote the DSN.
func InspectPostgres(ctx context.Context, dsn string) (PostgresInfo, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return PostgresInfo{}, errors.New("store: postgres: the DSN does not parse (see storage.dsn)")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return PostgresInfo{}, fmt.Errorf("store: postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var info PostgresInfo
	var num string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('server_version_num'), "+
		"COALESCE(has_schema_privilege(current_schema(), 'CREATE'), false)").Scan(&info.ServerVersion, &num, &info.CanCreate); err != nil {
		return info, fmt.Errorf("store: postgres: %w", err)
	}
	info.ServerVersionNum, _ = strconv.Atoi(num)
	sub, _ := fs.Sub(postgresMigrationFS, "postgres")
	ms, err := loadMigrations(sub)
	if err != nil {
		return info, err
	}
	info.LatestVersion = len(ms)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return info, fmt.Errorf("store: postgres: %w", err)
	}
	if exists {
		if err := conn.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&info.SchemaVersion); err != nil {
			return info, fmt.Errorf("store: postgres: %w", err)
		}
	}
	return info, nil
}

// PoolStats is the connection pool of a PostgreSQL store, for the metrics.
type PoolStats struct {
	// Total, Idle and InUse are connections now; Max is the pool's bound.
	Total, Idle, InUse, Max int
	// Acquires counts connections taken from the pool; Waits those that had to wait for one, for WaitTime in all.
	Acquires, Waits int64
	WaitTime        time.Duration
}

// PoolStats reads the pool's counters (no I/O).
func (s *Postgres) PoolStats() PoolStats {
	st := s.pool.Stat()
	return PoolStats{
		Total: int(st.TotalConns()), Idle: int(st.IdleConns()), InUse: int(st.AcquiredConns()), Max: int(st.MaxConns()),
		Acquires: st.AcquireCount(), Waits: st.EmptyAcquireCount(), WaitTime: st.AcquireDuration(),
	}
}
