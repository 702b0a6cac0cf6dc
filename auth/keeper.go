package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/internal/store"
)

// Keeper owns the token lifecycle of signed-in users: it stores a login's
// tokens as a grant, hands out access tokens, refreshes them (on demand and in
// the background) and revokes them at sign-out. The lifecycle is described in
// the package doc; refresh.go is the one path that sends a refresh token.
//
// A Keeper is safe for concurrent use. NewKeeper starts nothing; Run runs the
// background refresher.
type Keeper struct {
	idp     tokenClient
	st      GrantStore
	opts    KeeperOptions
	pol     policy
	log     *slog.Logger
	locks   grantLocks
	limit   Limiter
	calls   callScope
	memo    memo
	metrics metrics

	mu     sync.Mutex
	queued map[string]struct{} // grant ids handed to Run's workers
	wake   chan struct{}       // Run's scheduler wake-up; nil when Run is not running

	backlogSince, backlogWarned time.Time // scheduler saturation, for the backlog warning
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
	var limit Limiter = newLimiter(opts.MaxPerSecond)
	if opts.Limiter != nil {
		limit = opts.Limiter
	}
	return &Keeper{
		idp:    c,
		st:     st,
		opts:   opts,
		pol:    opts.policy(),
		log:    opts.Logger,
		limit:  limit,
		calls:  newCallScope(),
		memo:   memo{spent: make(map[string]pendingRotation), unknown: make(map[string]string)},
		queued: make(map[string]struct{}),
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
	// State is ok, degraded or needs_sign_in; LastError the reason class
	// of the last failure ("" after a success), Reason the same typed (its
	// Message is a sentence for the user).
	State         State
	LastError     string
	Reason        Reason
	AccessExpiry  time.Time // when the current access token expires
	RefreshExpiry time.Time // when the grant lapses unless refreshed
	LastRefresh   time.Time
	NextRefresh   time.Time
	LastActive    time.Time
	CreatedAt     time.Time
}

// touchEvery throttles activity writes: a page view records LastActive only
// when the stored value is at least this old (or the refresh schedule moves).
const touchEvery = time.Minute

// Start stores a completed sign-in as a new grant and returns its id, which
// web keeps in the session.
func (k *Keeper) Start(ctx context.Context, l *Login) (string, error) {
	return k.start(ctx, l, store.KindWeb)
}

// StartDevice stores a completed sign-in as a device grant: one mail
// client's own grant (its own refresh-token family at the IdP), refreshed
// like any other but ended only by SignOut on it (revoking the device), by
// the IdP, or after KeeperOptions.DeviceLifetime — never by a browser
// session's idle timeout, lifetime or sign-out.
func (k *Keeper) StartDevice(ctx context.Context, l *Login) (string, error) {
	return k.start(ctx, l, store.KindDevice)
}

func (k *Keeper) start(ctx context.Context, l *Login, kind store.GrantKind) (string, error) {
	if l == nil {
		return "", errors.New("auth: start: nil login")
	}
	id := l.Identity
	g, err := transition(store.Grant{Issuer: id.Issuer, Subject: id.Subject, Email: id.Email,
		Username: id.Username, Name: id.Name, Kind: kind}, ReasonSignedIn, l.Tokens, time.Now(), k.pol)
	if err != nil {
		return "", err
	}
	if err := k.st.CreateGrant(ctx, &g); err != nil {
		return "", fmt.Errorf("auth: start: %w", err)
	}
	k.nudge()
	if kind == store.KindWeb {
		// Retiring the user's oldest grants revokes each at the IdP: a call with client authentication (at Authelia a
		// PBKDF2-SHA512 digest of the client secret, checked on every call) that the new session does not depend on.
		// It runs after the sign-in rather than inside it, as one of the keeper's detached calls (cancelled and
		// waited for at shutdown; a grant left over then is retired by the user's next sign-in).
		k.calls.goDetached(func(ctx context.Context) { k.capGrants(ctx, g) })
	}
	return g.ID, nil
}

// capGrants retires the user's oldest grants beyond MaxGrantsPerUser, keeping
// keep (the one just made). It runs detached from the sign-in (start).
// Failures are logged: the sign-in stands, and the next sign-in tries again.
func (k *Keeper) capGrants(ctx context.Context, keep store.Grant) {
	if k.opts.MaxGrantsPerUser < 0 {
		return
	}
	all, err := k.st.GrantsBySubject(ctx, keep.Issuer, keep.Subject) // oldest first
	if err != nil {
		k.log.Warn("auth: list the user's grants", "err", err)
		return
	}
	// Browser grants only: each device holds a grant of its own, ended only by revoking the device.
	var ids []string
	for _, id := range all {
		if g, err := k.st.Grant(ctx, id); err == nil && g.Kind != store.KindDevice {
			ids = append(ids, id)
		}
	}
	for i := 0; len(ids)-i > k.opts.MaxGrantsPerUser; i++ {
		if ids[i] == keep.ID {
			continue
		}
		k.log.Info("auth: retiring the user's oldest grant beyond the cap", "grant", ids[i], "cap", k.opts.MaxGrantsPerUser)
		if err := k.end(ctx, ids[i], ReasonSessionEnded); err != nil {
			k.log.Warn("auth: retire grant beyond the cap", "grant", ids[i], "err", err)
		}
	}
}

// Token returns the grant's current access token and records the activity.
// When the token expires within half of RefreshBeforeExpiry a refresh runs;
// the view waits for it only if the current token is no longer usable, and
// then at most a quarter of LeaseTTL. It returns ErrNeedsSignIn when the grant
// is gone or was refused by the IdP. While the IdP is failing or slow, a
// still-valid access token is returned without an error; an expired one gives
// an error wrapping ErrTransient (or the failure class).
func (k *Keeper) Token(ctx context.Context, grantID string) (Token, error) {
	g, err := k.refresh(ctx, grantID, modeView, "")
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
	g, err := k.load(ctx, grantID)
	if err != nil {
		return Token{}, err
	}
	m := modeView
	if g.AccessToken == rejected && usable(g, time.Now()) {
		pctx, cancel := context.WithTimeout(ctx, k.shortCall())
		res, perr := k.probeAccess(pctx, g.AccessToken)
		cancel()
		switch res {
		case ProbeAlive:
			return Token{}, errors.New("auth: replace: the identity provider still accepts the refused access token")
		case ProbeUnreachable:
			return Token{}, fmt.Errorf("auth: replace: %w", perr)
		}
		m = modeReplace
	}
	g, err = k.refresh(ctx, grantID, m, rejected)
	return k.hand(ctx, g, err)
}

// hand turns the result of refresh into a Token for a page view: it prefers a
// usable access token over a transient error, and records activity.
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

// touch records a page view: LastActive, and an earlier NextRefreshAt if the
// grant just became active. Writes are throttled to one per touchEvery. A
// degraded grant keeps its backoff time.
func (k *Keeper) touch(ctx context.Context, g store.Grant, now time.Time) {
	next := g.NextRefreshAt
	if g.State == store.StateOK {
		a := g
		a.LastActive = now
		next = k.pol.schedule(a, now)
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
	g, err := k.load(ctx, grantID)
	if err != nil {
		return GrantInfo{}, err
	}
	return GrantInfo{
		Identity: Identity{Issuer: g.Issuer, Subject: g.Subject, Email: g.Email, Username: g.Username, Name: g.Name},
		State:    stateOf(g), LastError: g.LastError, Reason: Reason(g.LastError),
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
	return k.end(ctx, grantID, ReasonSignedOut)
}

// end retires a grant for r (ReasonSignedOut, ReasonSessionEnded) under its
// lock and, if it can be had, its lease.
func (k *Keeper) end(ctx context.Context, grantID string, r Reason) error {
	unlock, err := k.locks.lock(ctx, grantID)
	if err != nil {
		return err
	}
	defer unlock()
	// Wait for another process's refresh to land, so the token revoked is
	// the current one. Sign-out proceeds without the lease if it is stuck.
	leased, _, _ := k.claim(ctx, grantID, modeForce, "")
	if leased {
		defer k.release(grantID)
	}
	return k.retire(context.WithoutCancel(ctx), grantID, r)
}

// ended tells OnEnded that a grant ended.
func (k *Keeper) ended(grantID string) {
	if k.opts.OnEnded != nil {
		k.opts.OnEnded(grantID)
	}
}

// retire revokes and deletes a grant (ReasonSignedOut, ReasonSessionEnded);
// the caller holds the grant's lock.
func (k *Keeper) retire(ctx context.Context, grantID string, r Reason) error {
	g, err := k.st.Grant(ctx, grantID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth: %s: %w", r, err)
	}
	if _, err := transition(g, r, TokenSet{}, time.Now(), k.pol); err != nil {
		return err
	}
	var revokeErr error
	token, hint := g.RefreshToken, "refresh_token"
	if p, ok := k.memo.pendingFor(g); ok && p.ts.RefreshToken != "" {
		token = p.ts.RefreshToken // the stored one is spent; the live one is in memory
	}
	if token == "" {
		token, hint = g.AccessToken, "access_token"
	}
	if token != "" && k.idp != nil {
		rctx, cancel := context.WithTimeout(ctx, k.shortCall())
		revokeErr = k.idp.Revoke(rctx, token, hint)
		cancel()
	}
	k.memo.forget(grantID)
	if err := k.st.DeleteGrant(ctx, grantID); err != nil {
		return errors.Join(fmt.Errorf("auth: %s: %w", r, err), revokeErr)
	}
	k.ended(grantID)
	if revokeErr != nil {
		return fmt.Errorf("auth: %s: grant deleted, but %w", r, revokeErr)
	}
	return nil
}
