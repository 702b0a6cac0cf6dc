package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/internal/store"
)

// GrantStore is the persistence a Keeper needs. *store.SQLite satisfies it;
// tokens are sealed by the store, so the Keeper only ever sees plaintext in
// memory.
type GrantStore interface {
	CreateGrant(ctx context.Context, g *store.Grant) error
	Grant(ctx context.Context, id string) (store.Grant, error)
	UpdateGrant(ctx context.Context, g store.Grant) (store.Grant, error)
	TouchGrant(ctx context.Context, id string, lastActive, nextRefreshAt time.Time) error
	DeleteGrant(ctx context.Context, id string) error
	ClaimLease(ctx context.Context, grantID, owner string, now, until time.Time) (bool, error)
	ReleaseLease(ctx context.Context, grantID, owner string) error
	DueGrants(ctx context.Context, before time.Time, limit int) ([]string, error)
	CountGrantsByState(ctx context.Context) (map[store.GrantState]int, error)
}

var _ GrantStore = (*store.SQLite)(nil)

// KeeperOptions tunes a Keeper. Zero fields take the defaults noted.
type KeeperOptions struct {
	// RefreshBeforeExpiry is how long before the access token expires the
	// background refresher replaces it for an active session (default 5m).
	// Page views refresh synchronously only within half of it.
	RefreshBeforeExpiry time.Duration
	// RefreshTokenLifetime is the IdP's sliding refresh-token lifetime
	// (default 90m, Authelia's). Idle grants are refreshed at about 0.8 of it.
	RefreshTokenLifetime time.Duration
	// ActiveWindow: a grant with a page view this recent keeps its access
	// token fresh in the background (default 15m).
	ActiveWindow time.Duration
	// IdleTimeout and Lifetime are the session policy (defaults 24h and
	// 720h): a grant unused for IdleTimeout, or older than Lifetime, is
	// revoked at the IdP and deleted by Run.
	IdleTimeout, Lifetime time.Duration
	// Concurrency bounds Run's parallel refreshes (default 4).
	Concurrency int
	// MaxPerSecond caps Run's calls to the IdP's token and revocation
	// endpoints (default 2; each refresh costs Authelia about 0.3 s of CPU).
	// A negative value means no cap. Page views are not capped.
	MaxPerSecond float64
	// LeaseTTL is how long a refresh lease in the store lasts (default 30s).
	// Each IdP call under a lease gets at most a quarter of it.
	LeaseTTL time.Duration
	// Owner names this process in leases; random when empty. Processes
	// sharing a store must use different owners.
	Owner string
	// Logger receives operational logs; nil discards them. Tokens are never
	// logged.
	Logger *slog.Logger
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
	def(&o.LeaseTTL, 30*time.Second)
	if o.Concurrency <= 0 {
		o.Concurrency = 4
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

// tokenClient is what the Keeper needs from a Provider; tests substitute a
// fault-injecting wrapper.
type tokenClient interface {
	Refresh(ctx context.Context, refreshToken string) (TokenSet, error)
	UserInfo(ctx context.Context, accessToken string) (Identity, error)
	Revoke(ctx context.Context, token, hint string) error
}

// Keeper owns the token lifecycle of signed-in users: it stores a login's
// tokens as a grant, hands out access tokens, refreshes them (on demand and in
// the background) and revokes them at sign-out.
//
// Authelia's refresh tokens are single-use: a refresh revokes every older
// token of the grant, and presenting a spent refresh token revokes the whole
// grant (docs/protocol-notes.md B.1). So every refresh of a grant goes
// through one path (refreshGrant) that is serialised per grant within the
// process and by a store lease across processes, commits the rotated tokens
// to the store before anyone uses them, and never re-sends a refresh token
// whose previous use had an unknown outcome without probing first.
//
// A Keeper is safe for concurrent use. NewKeeper starts nothing; Run runs the
// background refresher.
type Keeper struct {
	idp     tokenClient
	st      GrantStore
	opts    KeeperOptions
	log     *slog.Logger
	locks   grantLocks
	limit   *limiter
	metrics metrics

	mu     sync.Mutex
	queued map[string]struct{} // grant ids handed to Run's workers
	wake   chan struct{}       // Run's scheduler wake-up; nil when Run is not running

	backlogSince, backlogWarned time.Time                  // scheduler saturation, for the backlog warning
	spent                       map[string]pendingRotation // grant id → a rotation the IdP made that the store has not taken yet
	unknown                     map[string]string          // grant id → refresh token whose last refresh had an unknown outcome
}

// NewKeeper returns a Keeper refreshing through p and storing grants in st.
func NewKeeper(p *Provider, st GrantStore, opts KeeperOptions) *Keeper {
	var c tokenClient
	if p != nil {
		c = p
	}
	return newKeeper(c, st, opts)
}

func newKeeper(c tokenClient, st GrantStore, opts KeeperOptions) *Keeper {
	opts = opts.withDefaults()
	return &Keeper{
		idp:     c,
		st:      st,
		opts:    opts,
		log:     opts.Logger,
		limit:   newLimiter(opts.MaxPerSecond),
		queued:  make(map[string]struct{}),
		spent:   make(map[string]pendingRotation),
		unknown: make(map[string]string),
	}
}

// Token is an access token to present to the mail server, with the address
// it belongs to.
type Token struct {
	Access  string
	Address string
	Expiry  time.Time
}

// GrantInfo describes a grant for the Session page. It holds no token.
type GrantInfo struct {
	Identity Identity
	// State is "ok", "degraded" or "needs_sign_in"; LastError the reason
	// class of the last failure ("" after a success).
	State, LastError string
	AccessExpiry     time.Time // when the current access token expires
	RefreshExpiry    time.Time // when the grant lapses unless refreshed
	LastRefresh      time.Time
	NextRefresh      time.Time
	LastActive       time.Time
	CreatedAt        time.Time
}

// minUsable is the least remaining lifetime of an access token worth handing
// out: a mail login needs the token to survive the AUTHENTICATE round trip.
const minUsable = 10 * time.Second

// touchEvery throttles activity writes: a page view records LastActive only
// when the stored value is at least this old (or the refresh schedule moves).
const touchEvery = time.Minute

// defaultAccessLifetime stands in for an access-token lifetime the IdP did
// not state (no expires_in): Authelia's default.
const defaultAccessLifetime = time.Hour

// Start stores a completed sign-in as a new grant and returns its id, which
// web keeps in the session.
func (k *Keeper) Start(ctx context.Context, l *Login) (string, error) {
	if l == nil {
		return "", errors.New("auth: start: nil login")
	}
	now := time.Now()
	g := store.Grant{
		Issuer: l.Identity.Issuer, Subject: l.Identity.Subject,
		Email: l.Identity.Email, Username: l.Identity.Username, Name: l.Identity.Name,
		AccessToken: l.Tokens.AccessToken, RefreshToken: l.Tokens.RefreshToken, IDToken: l.Tokens.IDToken,
		AccessExpiry:  accessExpiry(l.Tokens.Expiry, now),
		RefreshExpiry: now.Add(k.opts.RefreshTokenLifetime),
		State:         store.StateOK,
		LastRefresh:   now, LastActive: now, CreatedAt: now, UpdatedAt: now,
	}
	g.NextRefreshAt = k.schedule(g, now)
	if err := k.st.CreateGrant(ctx, &g); err != nil {
		return "", fmt.Errorf("auth: start: %w", err)
	}
	k.nudge()
	return g.ID, nil
}

// accessExpiry is the expiry the IdP stated, or the default lifetime.
func accessExpiry(stated, now time.Time) time.Time {
	if stated.IsZero() {
		return now.Add(defaultAccessLifetime)
	}
	return stated
}

// Token returns the grant's current access token, refreshing it first when it
// expires within half of RefreshBeforeExpiry, and records the activity. It
// returns ErrNeedsSignIn when the grant is gone or was refused by the IdP.
// While the IdP is failing, a still-valid access token is returned without an
// error; an expired one gives an error wrapping the failure class.
func (k *Keeper) Token(ctx context.Context, grantID string) (Token, error) {
	g, err := k.refreshGrant(ctx, grantID, want{minValid: k.opts.RefreshBeforeExpiry / 2})
	return k.hand(ctx, g, err)
}

// Replace is called after the mail server refused rejected, an access token
// of this grant. If the grant has a newer token, Replace returns it; if
// rejected is still current, Replace asks userinfo whether the IdP still
// accepts it: if not, the grant is refreshed; if it does, the refusal was not
// about the token and Replace returns an error. The caller retries its login
// at most once with the returned token. ErrNeedsSignIn means the grant is
// gone.
func (k *Keeper) Replace(ctx context.Context, grantID, rejected string) (Token, error) {
	w := want{minValid: k.opts.RefreshBeforeExpiry / 2}
	g, err := k.load(ctx, grantID)
	if err != nil {
		return Token{}, err
	}
	if g.AccessToken == rejected && usable(g, time.Now()) {
		pctx, cancel := context.WithTimeout(ctx, k.callTimeout())
		res, perr := k.probe(pctx, g.AccessToken)
		cancel()
		switch res {
		case probeAlive:
			return Token{}, errors.New("auth: replace: the identity provider still accepts the refused access token")
		case probeUnreachable:
			return Token{}, fmt.Errorf("auth: replace: %w", perr)
		}
		w.stale = rejected
	}
	g, err = k.refreshGrant(ctx, grantID, w)
	return k.hand(ctx, g, err)
}

// hand turns the result of refreshGrant into a Token for a page view: it
// prefers a usable access token over a transient error, and records activity.
func (k *Keeper) hand(ctx context.Context, g store.Grant, err error) (Token, error) {
	now := time.Now()
	if errors.Is(err, ErrNeedsSignIn) || g.ID == "" {
		return Token{}, err
	}
	if !usable(g, now) {
		// With access tokens that live barely longer than minUsable, even a token fresh from the IdP may have less
		// than minUsable left by the time it is stored. When nothing failed it is the best token there is: hand it
		// out while it is still valid rather than fail the view.
		if err != nil || g.AccessToken == "" || !g.AccessExpiry.After(now.Add(time.Second)) {
			if err == nil {
				err = fmt.Errorf("auth: grant %s has no usable access token: %w", g.ID, ErrTransient)
			}
			return Token{}, err
		}
	}
	if err != nil {
		k.log.Debug("auth: serving the current access token while refresh fails",
			"grant", g.ID, "reason", g.LastError)
	}
	k.touch(ctx, g, now)
	return Token{Access: g.AccessToken, Address: strings.ToLower(g.Email), Expiry: g.AccessExpiry}, nil
}

// usable reports whether g's access token has life enough for a mail login.
func usable(g store.Grant, now time.Time) bool {
	return g.AccessToken != "" && g.AccessExpiry.Sub(now) >= minUsable
}

// touch records a page view: LastActive, and an earlier NextRefreshAt if the
// grant just became active. Writes are throttled to one per touchEvery. A
// degraded grant keeps its backoff time.
func (k *Keeper) touch(ctx context.Context, g store.Grant, now time.Time) {
	next := g.NextRefreshAt
	if g.State == store.StateOK {
		a := g
		a.LastActive = now
		next = k.schedule(a, now)
	}
	if now.Sub(g.LastActive) < touchEvery && !next.Before(g.NextRefreshAt) {
		return
	}
	if err := k.st.TouchGrant(ctx, g.ID, now, next); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			k.log.Warn("auth: record activity", "grant", g.ID, "err", err)
		}
		return
	}
	if next.Before(g.NextRefreshAt) {
		k.nudge()
	}
}

// Info describes a grant for the Session page, without tokens.
func (k *Keeper) Info(ctx context.Context, grantID string) (GrantInfo, error) {
	g, err := k.st.Grant(ctx, grantID)
	if errors.Is(err, store.ErrNotFound) {
		return GrantInfo{}, fmt.Errorf("auth: grant %s: %w", grantID, ErrNeedsSignIn)
	}
	if err != nil {
		return GrantInfo{}, fmt.Errorf("auth: info: %w", err)
	}
	return GrantInfo{
		Identity: Identity{Issuer: g.Issuer, Subject: g.Subject, Email: g.Email, Username: g.Username, Name: g.Name},
		State:    string(g.State), LastError: g.LastError,
		AccessExpiry: g.AccessExpiry, RefreshExpiry: g.RefreshExpiry,
		LastRefresh: g.LastRefresh, NextRefresh: g.NextRefreshAt,
		LastActive: g.LastActive, CreatedAt: g.CreatedAt,
	}, nil
}

// SignOut revokes the grant's refresh token at the IdP (RFC 7009; at
// Authelia that ends the access tokens too) and deletes the grant. The grant
// is deleted even when revocation fails, and the revocation error is returned
// for the caller to log: the user asked to leave, and the orphaned refresh
// token lapses on its own within its sliding lifetime.
func (k *Keeper) SignOut(ctx context.Context, grantID string) error {
	k.metrics.add(&k.metrics.m.SignOuts, 1)
	unlock, err := k.locks.lock(ctx, grantID)
	if err != nil {
		return err
	}
	defer unlock()
	// Wait for another process's refresh to land, so the token revoked is
	// the current one. Sign-out proceeds without the lease if it is stuck.
	leased, _, _ := k.claim(ctx, grantID, want{force: true})
	if leased {
		defer k.release(grantID)
	}
	return k.retire(context.WithoutCancel(ctx), grantID)
}

// retire revokes and deletes a grant; the caller holds the grant's lock.
func (k *Keeper) retire(ctx context.Context, grantID string) error {
	g, err := k.st.Grant(ctx, grantID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth: sign out: %w", err)
	}
	var revokeErr error
	token, hint := g.RefreshToken, "refresh_token"
	if p, ok := k.pendingFor(g); ok && p.ts.RefreshToken != "" {
		token = p.ts.RefreshToken // the stored one is spent; the live one is in memory
	}
	if token == "" {
		token, hint = g.AccessToken, "access_token"
	}
	if token != "" && k.idp != nil {
		rctx, cancel := context.WithTimeout(ctx, k.callTimeout())
		revokeErr = k.idp.Revoke(rctx, token, hint)
		cancel()
	}
	k.mu.Lock()
	delete(k.spent, grantID)
	delete(k.unknown, grantID)
	k.mu.Unlock()
	if err := k.st.DeleteGrant(ctx, grantID); err != nil {
		return errors.Join(fmt.Errorf("auth: sign out: %w", err), revokeErr)
	}
	if revokeErr != nil {
		return fmt.Errorf("auth: sign out: grant deleted, but %w", revokeErr)
	}
	return nil
}

// The one refresh path: page views (Token), mail retries (Replace) and the
// background scheduler (Run) all call refreshGrant. Below, its serialisation;
// in refresher.go, the call, its outcomes, and the scheduler.
//
// The order of operations is what keeps a single-use refresh token from being
// spent twice (docs/protocol-notes.md §0 items 3–4, B.1):
//
//  1. the grant's in-process lock, so concurrent callers share one call;
//  2. the grant's lease in the store, so other processes wait;
//  3. a re-read under the lease: if someone else already rotated, use theirs;
//  4. if the previous attempt's outcome is unknown, probe userinfo with the
//     old access token before sending the refresh token again;
//  5. the token-endpoint call, detached from the caller's context (a user
//     closing a tab must not turn a refresh into an unknown outcome);
//  6. the versioned write of the rotated tokens; only then are they used.

// want says what a caller of refreshGrant needs from the grant.
type want struct {
	minValid   time.Duration // a page view: the access token must live at least this long
	stale      string        // Replace: this access token was refused, so it must be replaced
	background bool          // the scheduler: refresh if the grant is due; never wait for another process
	force      bool          // take the lease whatever the grant's state (sign-out, expiry)
}

// refreshGrant returns grant id, refreshed first if w says it must be. It is
// the only code that sends a refresh token.
func (k *Keeper) refreshGrant(ctx context.Context, id string, w want) (store.Grant, error) {
	g, err := k.load(ctx, id)
	if err != nil {
		return store.Grant{}, err
	}
	if do, err := k.decide(g, time.Now(), w); !do {
		return g, err
	}
	if w.background {
		if err := k.limit.wait(ctx); err != nil {
			return g, err
		}
	}
	unlock, err := k.locks.lock(ctx, id)
	if err != nil {
		return g, err
	}
	defer unlock()
	// Whoever held the lock before us may have refreshed already: check
	// with a read before claiming the lease, which is a write.
	if g, err = k.load(ctx, id); err != nil {
		return store.Grant{}, err
	}
	if do, err := k.decide(g, time.Now(), w); !do {
		return g, err
	}
	leased, g, err := k.claim(ctx, id, w)
	if !leased {
		return g, err
	}
	defer k.release(id)
	return k.refreshLeased(context.WithoutCancel(ctx), g)
}

// load reads a grant; a missing grant means the user must sign in.
func (k *Keeper) load(ctx context.Context, id string) (store.Grant, error) {
	g, err := k.st.Grant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Grant{}, fmt.Errorf("auth: grant %s: %w", id, ErrNeedsSignIn)
	}
	if err != nil {
		return store.Grant{}, fmt.Errorf("auth: load grant: %w", err)
	}
	return g, nil
}

// decide says whether g must be refreshed now for w; when not, the error (if
// any) says why the caller cannot have a fresh token.
func (k *Keeper) decide(g store.Grant, now time.Time, w want) (bool, error) {
	switch {
	case w.force:
		return true, nil
	case g.State == store.StateNeedsSignIn:
		return false, fmt.Errorf("auth: grant %s (%s): %w", g.ID, g.LastError, ErrNeedsSignIn)
	case !k.needs(g, now, w):
		return false, nil
	case !w.background && g.State == store.StateDegraded && now.Before(g.NextRefreshAt):
		// Backing off: page views do not hammer a failing IdP; Run retries.
		class := ErrTransient
		if g.LastError == reasonRejected {
			class = ErrRejected
		}
		return false, fmt.Errorf("auth: grant %s: refresh failing (%s), retry scheduled: %w", g.ID, g.LastError, class)
	}
	return true, nil
}

// needs reports whether g must be refreshed now for w.
func (k *Keeper) needs(g store.Grant, now time.Time, w want) bool {
	switch {
	case w.force:
		return true
	case w.background && g.State == store.StateDegraded:
		return !now.Before(g.NextRefreshAt)
	case w.background:
		return !now.Before(k.refreshAt(g, now))
	case w.stale != "" && g.AccessToken == w.stale:
		return true
	}
	// Never demand more than half the token's life, or every view refreshes; but always refresh a token with less
	// than minUsable left, which usable() would refuse to hand out: with very short-lived access tokens (under
	// ~20 s) half the life is below minUsable, and the view would get neither a refresh nor a token.
	return g.AccessExpiry.Sub(now) < max(minUsable, min(w.minValid, g.AccessExpiry.Sub(g.LastRefresh)/2))
}

// claim takes the grant's store lease, waiting (page views, sign-out) or
// giving up (background) while another process holds it. It re-reads the
// grant after every attempt: under the lease, to see a rotation that landed
// before the claim; while waiting, to pick up the other process's result.
func (k *Keeper) claim(ctx context.Context, id string, w want) (bool, store.Grant, error) {
	deadline := time.Now().Add(k.opts.LeaseTTL + time.Second)
	delay := 20 * time.Millisecond
	for {
		now := time.Now()
		ok, err := k.st.ClaimLease(ctx, id, k.opts.Owner, now, now.Add(k.opts.LeaseTTL))
		if errors.Is(err, store.ErrNotFound) {
			return false, store.Grant{}, fmt.Errorf("auth: grant %s: %w", id, ErrNeedsSignIn)
		}
		if err != nil {
			return false, store.Grant{}, fmt.Errorf("auth: claim refresh lease: %w", err)
		}
		g, err := k.load(ctx, id)
		do := false
		if err == nil {
			do, err = k.decide(g, time.Now(), w)
		}
		if ok {
			if do {
				return true, g, nil
			}
			k.release(id)
			return false, g, err
		}
		// Another process holds the lease.
		if err != nil || !do || w.background {
			return false, g, err
		}
		if time.Now().After(deadline) {
			return false, g, fmt.Errorf("auth: grant %s: refresh held elsewhere (%s): %w", id, reasonLeaseBusy, ErrTransient)
		}
		if err := sleep(ctx, delay); err != nil {
			return false, g, err
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// extend renews our lease before an IdP call, so the call and the write after
// it both finish inside the lease. It fails if the lease was lost.
func (k *Keeper) extend(ctx context.Context, id string) error {
	now := time.Now()
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	ok, err := k.st.ClaimLease(sctx, id, k.opts.Owner, now, now.Add(k.opts.LeaseTTL))
	if err != nil {
		return fmt.Errorf("auth: renew refresh lease: %w", err)
	}
	if !ok {
		return fmt.Errorf("auth: grant %s: refresh lease lost: %w", id, ErrTransient)
	}
	return nil
}

// release gives the lease back so other processes need not wait it out.
func (k *Keeper) release(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := k.st.ReleaseLease(ctx, id, k.opts.Owner); err != nil {
		k.log.Warn("auth: release refresh lease", "grant", id, "err", err)
	}
}

// callTimeout bounds one IdP call made under a lease.
func (k *Keeper) callTimeout() time.Duration { return k.opts.LeaseTTL / 4 }

// grantLocks serialises work on one grant within the process. The lock is a
// one-slot channel so that waiting respects a context (and, in tests, counts
// as durably blocked inside a synctest bubble).
type grantLocks struct {
	mu sync.Mutex
	m  map[string]*grantLock
}

type grantLock struct {
	ch   chan struct{}
	refs int
}

// lock takes the grant's lock, or fails when ctx ends first.
func (l *grantLocks) lock(ctx context.Context, id string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*grantLock)
	}
	e := l.m[id]
	if e == nil {
		e = &grantLock{ch: make(chan struct{}, 1)}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.put(id, e) }, nil
	case <-ctx.Done():
		l.put(id, e)
		return nil, ctx.Err()
	}
}

// put drops a reference to e, forgetting it when unused.
func (l *grantLocks) put(id string, e *grantLock) {
	l.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(l.m, id)
	}
	l.mu.Unlock()
}
