package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"
)

// KeeperOptions tunes a Keeper. Zero fields take the defaults noted.
type KeeperOptions struct {
	// RefreshBeforeExpiry is how long before the access token expires the
	// background refresher replaces it for an active session (default 5m).
	// Page views refresh only within half of it.
	RefreshBeforeExpiry time.Duration
	// RefreshTokenLifetime is the IdP's sliding refresh-token lifetime
	// (default 90m, Authelia's). Idle grants are refreshed at about 0.8 of it.
	RefreshTokenLifetime time.Duration
	// ActiveWindow: a grant with a page view this recent keeps its access
	// token fresh in the background (default 15m).
	ActiveWindow time.Duration
	// IdleTimeout and Lifetime are the session policy (defaults 24h and
	// 720h): a grant unused for IdleTimeout, or older than Lifetime, is
	// revoked at the IdP and deleted by Run; a grant that needs a new
	// sign-in is deleted once unused for IdleTimeout.
	IdleTimeout, Lifetime time.Duration
	// DeviceLifetime ends a device grant (one mail client's, store.KindDevice)
	// this long after it was created (default 8760h, a year). Device grants
	// have no idle timeout: a phone that is off for a week must still
	// connect. Otherwise they end only by revocation (the device's Revoke
	// calls SignOut) or at the IdP.
	DeviceLifetime time.Duration
	// Concurrency bounds Run's parallel refreshes (default 4).
	Concurrency int
	// MaxPerSecond caps Run's calls to the IdP's token and revocation
	// endpoints (default 2; each refresh costs Authelia about 0.3 s of CPU).
	// A negative value means no cap. Page views are not capped.
	MaxPerSecond float64
	// Limiter, when set, replaces MaxPerSecond's cap, which holds within one
	// process only: instances sharing a database pass one they all draw from
	// ((*store.Postgres).RateLimiter), so that the IdP sees one cap however
	// many instances run.
	Limiter Limiter
	// TokenCallTimeout is how long a refresh, once sent, waits for the
	// token endpoint's answer (default 2m, at most 1h). Giving up early is
	// what loses grants: an IdP that is merely slow commits the rotation
	// later and answers a closed connection. Only shutdown cuts the wait
	// shorter. Page views never wait this long (see LeaseTTL).
	TokenCallTimeout time.Duration
	// LeaseTTL (default 30s) is the budget of one refresh besides the token
	// call: its store writes, and the short IdP calls (probes, revocation)
	// at a quarter of it each. A page view without a usable token waits a
	// quarter of it for a refresh, then gets ErrTransient. A refresh lease
	// in the store lasts LeaseTTL + TokenCallTimeout, so it covers the
	// longest token call without being renewed during it.
	LeaseTTL time.Duration
	// MaxGrantsPerUser caps the grants one user (issuer and subject) holds
	// (default 10; negative: no cap). Every browser sign-in makes a grant of
	// its own, so without a cap one user signing in again and again — a
	// script, or many browsers — would multiply the grants the refresher
	// keeps alive at the IdP and the connections the pool lets them hold.
	// Start retires the oldest beyond the cap (revoked at the IdP).
	MaxGrantsPerUser int
	// OnEnded, when set, is told the id of every grant this keeper ends
	// (signed out, retired, expired, or moved to needs_sign_in), after the
	// store has it, so that the caller closes what it holds for the grant
	// (pooled and bridged mail connections, which stay authenticated after
	// their token is revoked). It must not block.
	OnEnded func(grantID string)
	// Owner names this process in leases; random when empty. Processes
	// sharing a store must use different owners.
	Owner string
	// Logger receives operational logs; nil discards them. Tokens are never
	// logged.
	Logger *slog.Logger
}

// Limiter spaces Run's calls to the IdP; *rate.Limiter satisfies it.
type Limiter interface {
	Wait(ctx context.Context) error
}

// withDefaults fills in zero fields.
func (o KeeperOptions) withDefaults() KeeperOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RefreshBeforeExpiry, 5*time.Minute)
	def(&o.RefreshTokenLifetime, 90*time.Minute)
	def(&o.ActiveWindow, 15*time.Minute)
	def(&o.IdleTimeout, 24*time.Hour)
	def(&o.Lifetime, 720*time.Hour)
	def(&o.DeviceLifetime, 8760*time.Hour)
	def(&o.LeaseTTL, 30*time.Second)
	def(&o.TokenCallTimeout, 2*time.Minute)
	o.TokenCallTimeout = min(o.TokenCallTimeout, time.Hour)
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MaxGrantsPerUser == 0 {
		o.MaxGrantsPerUser = 10
	}
	if o.MaxPerSecond == 0 {
		o.MaxPerSecond = 2
	}
	if o.Owner == "" {
		var b [8]byte
		rand.Read(b[:])
		o.Owner = "postern-" + hex.EncodeToString(b[:])
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
