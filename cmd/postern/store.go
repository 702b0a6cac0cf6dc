package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/web"
)

// appStore is everything main hands out of the store: the keeper's grants and leases, web's sessions, the janitor's
// sweeps, metrics' counts and the health check. Both drivers satisfy it.
type appStore interface {
	auth.GrantStore
	web.SessionStore
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error)
	DeleteEndedGrants(ctx context.Context, before time.Time) (int, error)
	Ping(ctx context.Context) error
	Close() error
}

var (
	_ appStore = (*store.SQLite)(nil)
	_ appStore = (*store.Postgres)(nil)
)

// openStore opens the database storage.driver names.
func openStore(ctx context.Context, cfg config.StorageConfig, sealer *seal.Sealer) (appStore, error) {
	switch cfg.Driver {
	case "postgres":
		return store.OpenPostgres(ctx, cfg.DSN, sealer)
	default:
		if dir := dirOf(cfg.Path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("storage.path: %w", err)
			}
		}
		return store.OpenSQLite(ctx, cfg.Path, sealer)
	}
}
