package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// ClaimDueGrants is DueGrants for several instances: it returns up to limit grants due at now whose refresh lease
// is free (or expired) and takes the lease for owner until until, in one statement. Grants owner already holds are
// not returned again: they are queued or being refreshed there. FOR UPDATE SKIP LOCKED
// makes instances running it at the same moment skip each other's rows instead of waiting for them, so each due
// grant goes to one instance and no two instances spend a rate-limit slot on the same grant. The lease is the same
// one ClaimLease takes; the refresh path of the owner takes it again (extending it) and releases it.
func (s *Postgres) ClaimDueGrants(ctx context.Context, owner string, now, until time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	if owner == "" {
		return nil, errors.New("store: claim due grants: empty owner")
	}
	return s.ids(ctx, "store: claim due grants: %w", `UPDATE grants SET lease_owner = $1, lease_until = $2
		WHERE id IN (
			SELECT id FROM grants
			WHERE next_refresh_at <= $3 AND state IN ('ok', 'degraded')
			  AND (lease_owner = '' OR lease_until <= $3)
			ORDER BY next_refresh_at
			LIMIT $4
			FOR UPDATE SKIP LOCKED)
		RETURNING id`, owner, toNanos(until), toNanos(now), limit)
}

// RateLimiter is a cap on calls shared by every instance using the database: Wait reserves the next free slot of
// the named limit with one upsert and sleeps until it. Slots are spaced 1/perSecond apart (a bucket of depth one,
// like the single-instance limiter). Instances' clocks should agree to within a fraction of the spacing, as NTP
// keeps them; a skewed clock shifts its own slots, it does not break the cap for the others.
type RateLimiter struct {
	s     *Postgres
	name  string
	every time.Duration
}

// RateLimiter returns the shared limiter called name allowing perSecond calls a second; perSecond <= 0 or +Inf
// means no cap.
func (s *Postgres) RateLimiter(name string, perSecond float64) *RateLimiter {
	l := &RateLimiter{s: s, name: name}
	if perSecond > 0 && !math.IsInf(perSecond, 1) {
		l.every = time.Duration(float64(time.Second) / perSecond)
	}
	return l
}

// Wait blocks until this caller's slot, or until ctx ends. A database error is returned (the caller skips the call
// rather than exceed the cap).
func (l *RateLimiter) Wait(ctx context.Context) error {
	if l.every <= 0 {
		return nil
	}
	now := time.Now()
	var slot int64
	err := l.s.pool.QueryRow(ctx, `INSERT INTO rate_slots (name, next_at) VALUES ($1, $2::bigint + $3::bigint)
		ON CONFLICT (name) DO UPDATE SET next_at = GREATEST(rate_slots.next_at, $2::bigint) + $3::bigint
		RETURNING next_at - $3::bigint`, l.name, toNanos(now), int64(l.every)).Scan(&slot)
	if err != nil {
		return fmt.Errorf("store: rate limit %s: %w", l.name, err)
	}
	return sleepCtx(ctx, fromNanos(slot).Sub(now))
}
