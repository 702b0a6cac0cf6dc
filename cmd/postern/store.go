package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/devices"
	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/web"
)

// appStore is everything main hands out of the store: the keeper's grants and leases, web's sessions, the janitor's
// sweeps, metrics' counts and the health check. Both drivers satisfy it.
type appStore interface {
	auth.GrantStore
	web.SessionStore
	web.SettingsStore
	devices.Store
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

// endedGrantWatcher is a store that hears of grants ended by any instance sharing it (PostgreSQL's LISTEN/NOTIFY).
type endedGrantWatcher interface {
	WatchEndedGrants(ctx context.Context, ended func(grantID string), gap func()) error
}

// watchEndedGrants closes this instance's pooled IMAP connections of every grant that ends anywhere: an IMAP
// connection stays authenticated after its token is revoked, so without this a sign-out on one instance would leave
// live sessions on the others. After a gap in the event stream (the database connection dropped), every idle
// connection is closed, since an event may have been missed; the next page view logs in again.
func (a *app) watchEndedGrants(ctx context.Context, w endedGrantWatcher) {
	err := w.WatchEndedGrants(ctx, func(id string) {
		a.pool.CloseKey(id)
		if a.bridge != nil {
			a.bridge.CloseGrant(id) // a device revoked on another instance
		}
	}, func() {
		a.log.Warn("events from other instances were interrupted; closing idle IMAP connections in case one ended")
		a.pool.Reap(time.Now().Add(100 * 365 * 24 * time.Hour))
	})
	if err != nil {
		a.log.Error("watch ended grants", slog.Any("err", err))
	}
}

// sharedLimiter is the refresher's rate cap shared by every instance on a PostgreSQL store: tokens.max_refreshes_per_second
// then bounds what the IdP sees from all of them together. With SQLite (one instance) it is nil, and the keeper
// caps its own calls.
func sharedLimiter(st appStore, perSecond float64) auth.Limiter {
	if pg, ok := st.(*store.Postgres); ok {
		return pg.RateLimiter("token_endpoint", perSecond)
	}
	return nil
}

// leaseOwner names this process in the refresh leases it holds: host, process id and a random part (a restarted
// process may get the same id). An operator reading the grants table, or a test killing a lease holder, can tell
// which instance holds a grant's lease.
func leaseOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
