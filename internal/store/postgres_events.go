package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// grantEndedChannel is the NOTIFY channel of migration 0002's trigger.
const grantEndedChannel = "postern_grant_ended"

// WatchEndedGrants calls ended with the id of every grant that is deleted or enters needs_sign_in, on any instance
// sharing the database (this one included), until ctx ends. It holds one dedicated connection (LISTEN needs a
// session of its own, outside the pool) and reconnects with backoff when it drops. Notifications sent while no
// connection listened are lost, so after every reconnection but the first it calls gap, for the caller to check
// what it holds against the database. ended and gap run on the watcher's goroutine and must not block for long.
// It returns nil when ctx ends.
func (s *Postgres) WatchEndedGrants(ctx context.Context, ended func(grantID string), gap func()) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	delay := 100 * time.Millisecond
	for first := true; ; first = false {
		err := s.listen(ctx, cfg, ended, func() {
			delay = 100 * time.Millisecond // a good connection resets the backoff
			if !first && gap != nil {
				gap()
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		// Lost the connection (database restarted, network): try again. The error never holds the DSN.
		_ = err
		if err := sleepCtx(ctx, delay); err != nil {
			return nil
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// listen runs one LISTEN session until it fails or ctx ends; ready runs once the LISTEN is in place.
func (s *Postgres) listen(ctx context.Context, cfg *pgx.ConnConfig, ended func(string), ready func()) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("store: listen: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+grantEndedChannel); err != nil {
		return fmt.Errorf("store: listen: %w", err)
	}
	ready()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("store: listen: %w", err)
		}
		if n.Channel == grantEndedChannel && n.Payload != "" {
			ended(n.Payload)
		}
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
