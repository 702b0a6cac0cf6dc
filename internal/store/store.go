// Package store persists Postern's server-side state: login sessions, OAuth
// grants (the tokens of a signed-in user) and the refresh leases that keep two
// processes from refreshing the same grant.
//
// Authelia refresh tokens are single-use, and presenting a used one revokes the
// whole grant. The store therefore offers two guards: every UpdateGrant is a
// compare-and-swap on a version number, so a writer holding an older copy
// cannot overwrite a newer token, and ClaimLease is a single atomic UPDATE, so
// only one refresher at a time (across processes sharing the database) may
// spend a refresh token.
//
// Tokens and session data are sealed with internal/seal on write and opened on
// read; callers only ever see plaintext, the database file never holds it.
package store

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"math"
	"time"

	"github.com/postern/postern/internal/seal"
)

// ErrNotFound is returned when the requested grant or session does not exist
// (or, for sessions, has expired).
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned by UpdateGrant when the stored version is newer than
// the caller's copy: someone else wrote the grant first. The caller must
// re-read and decide again rather than overwrite a possibly newer token.
// CreateGrant returns it when the id is already taken.
var ErrConflict = errors.New("store: version conflict")

// GrantState is the health of a grant as seen by the background refresher.
type GrantState string

// Grant states. Only StateOK and StateDegraded grants are offered by DueGrants.
const (
	// StateOK is a grant whose last refresh (or sign-in) succeeded.
	StateOK GrantState = "ok"
	// StateDegraded is a grant whose refreshes are failing transiently
	// (timeouts, IdP unavailable); it is retried with backoff.
	StateDegraded GrantState = "degraded"
	// StateNeedsSignIn is a grant the IdP rejected (invalid_grant); only an
	// interactive sign-in can replace it, so the refresher ignores it.
	StateNeedsSignIn GrantState = "needs_sign_in"
)

// valid reports whether s is one of the known states. The check lives in Go
// rather than in a SQL CHECK constraint so that adding a state later does not
// need a table rebuild in SQLite.
func (s GrantState) valid() bool {
	switch s {
	case StateOK, StateDegraded, StateNeedsSignIn:
		return true
	}
	return false
}

// GrantKind says which policy ends a grant; it is fixed at creation.
type GrantKind string

// Grant kinds.
const (
	// KindWeb is a browser session's grant (the default): ended by sign-out,
	// the session's idle timeout or its lifetime.
	KindWeb GrantKind = "web"
	// KindDevice is one mail client's grant: ended only by revoking the
	// device, by the IdP, or after the long device lifetime.
	KindDevice GrantKind = "device"
)

// Grant is one user's OAuth grant at one issuer: identity, tokens and the
// refresher's bookkeeping. Tokens are plaintext here and sealed at rest.
type Grant struct {
	// ID is an opaque random identifier; CreateGrant fills it in when empty.
	ID string
	// Issuer and Subject identify the user (OIDC Core §2: iss + sub is the
	// only stable identity). They are fixed at creation.
	Issuer, Subject string
	// Kind is KindWeb or KindDevice; empty means KindWeb on create. It is
	// fixed at creation.
	Kind GrantKind
	// Email, Username and Name are display and addressing claims from the
	// last sign-in or userinfo call.
	Email, Username, Name string

	// AccessToken, RefreshToken and IDToken are the current tokens. An empty
	// string is stored as empty, not sealed.
	AccessToken, RefreshToken, IDToken string
	// AccessExpiry is when AccessToken expires. RefreshExpiry is the last
	// rotation plus the refresh-token lifetime (it slides on every refresh).
	AccessExpiry, RefreshExpiry time.Time

	// State is the refresher's view of the grant; empty means StateOK on
	// create.
	State GrantState
	// LastError is a reason class such as "invalid_grant" or "timeout",
	// never a token or a raw IdP response.
	LastError string
	// FailCount counts consecutive failed refreshes, for backoff.
	FailCount int

	// Version is set to 1 by CreateGrant and bumped by every UpdateGrant; an
	// update carrying an older version fails with ErrConflict.
	Version int64

	// LastRefresh is the last successful refresh; LastActive the last time
	// the user used Postern; NextRefreshAt when the refresher should next
	// look at the grant (the zero time means "now").
	LastRefresh, LastActive, NextRefreshAt time.Time
	// CreatedAt and UpdatedAt are maintained by the store.
	CreatedAt, UpdatedAt time.Time
}

// Session is a server-side web session. Data is opaque to the store (the web
// package's encoded session values) and sealed at rest.
type Session struct {
	// ID is the session id carried, signed, in the cookie.
	ID string
	// Data is the encoded session payload.
	Data []byte
	// CreatedAt is kept from the first save; LastSeen and ExpiresAt are
	// overwritten by every save. ExpiresAt is required.
	CreatedAt, LastSeen, ExpiresAt time.Time
}

// codec is what both drivers share around their SQL: sealing and opening the sealed columns, and the clock for
// the values a store stamps itself.
type codec struct {
	sealer *seal.Sealer
	// now is the clock for values the store stamps itself (CreatedAt,
	// UpdatedAt, session expiry on read); tests in this package replace it.
	now func() time.Time
}

// newID returns a 128-bit random identifier, URL-safe and unpadded, so it can
// travel in cookies and URLs unescaped.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// maxNanosTime is the last instant representable as int64 unix nanoseconds
// (in the year 2262); later times are clamped to it.
var maxNanosTime = time.Unix(0, math.MaxInt64)

// minNanosTime is the first such instant (in the year 1677).
var minNanosTime = time.Unix(0, math.MinInt64+1)

// toNanos converts t to the stored form: unix nanoseconds, with the zero time
// as 0. t.UnixNano is undefined outside ±292 years of 1970 (and the zero time
// is outside), hence the clamp.
func toNanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.After(maxNanosTime):
		return math.MaxInt64
	case t.Before(minNanosTime):
		return math.MinInt64 + 1
	}
	return t.UnixNano()
}

// fromNanos is the inverse of toNanos, returning UTC times.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
