package idp

import (
	"context"
	"sync"
	"time"

	"github.com/ory/fosite"
)

// store is the fosite storage of the IdP. fosite's own storage.MemoryStore keeps only the newest token signature per
// request id, so "revoke the grant" would miss older tokens of a family and its revocation methods race on its maps;
// this store keeps every token with its request id behind one mutex, which makes the family operations that Authelia
// performs (rotation, reuse detection, code-reuse revocation) exact.
type store struct {
	mu      sync.Mutex
	clients map[string]fosite.Client
	codes   map[string]codeEntry        // authorization code signature → request
	oidc    map[string]fosite.Requester // authorization code → OpenID Connect request
	pkce    map[string]fosite.Requester // authorization code signature → PKCE request
	access  map[string]fosite.Requester // access token signature → request; revoked tokens are deleted
	refresh map[string]refreshEntry     // refresh token signature → request; revoked tokens stay, inactive
}

type codeEntry struct {
	active bool
	req    fosite.Requester
}

type refreshEntry struct {
	active bool
	used   bool // deactivated by its own rotation, as opposed to revoked with its grant
	req    fosite.Requester
}

// refreshTrace travels in the context of a token request so the store can tell the token handler that the refresh
// handler took its reuse path (fosite reports it only as a generic invalid_grant).
type refreshTrace struct {
	reuse         bool // a refresh token that was already used (rotated) was presented
	familyRevoked bool // the store then revoked tokens of the grant that were still live
}

type refreshTraceKey struct{}

func traceFrom(ctx context.Context) *refreshTrace {
	t, _ := ctx.Value(refreshTraceKey{}).(*refreshTrace)
	return t
}

func newStore() *store {
	return &store{
		clients: map[string]fosite.Client{},
		codes:   map[string]codeEntry{},
		oidc:    map[string]fosite.Requester{},
		pkce:    map[string]fosite.Requester{},
		access:  map[string]fosite.Requester{},
		refresh: map[string]refreshEntry{},
	}
}

// GetClient implements fosite.ClientManager.
func (s *store) GetClient(_ context.Context, id string) (fosite.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	return c, nil
}

// ClientAssertionJWTValid implements fosite.ClientManager; private_key_jwt is not offered, so no JTI is ever known.
func (s *store) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT implements fosite.ClientManager.
func (s *store) SetClientAssertionJWT(context.Context, string, time.Time) error { return nil }

func (s *store) CreateAuthorizeCodeSession(_ context.Context, sig string, req fosite.Requester) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[sig] = codeEntry{active: true, req: req}
	return nil
}

// GetAuthorizeCodeSession returns the request together with ErrInvalidatedAuthorizeCode for a used code, as fosite
// needs the request id to revoke the tokens minted from it (RFC 6749 §4.1.2).
func (s *store) GetAuthorizeCodeSession(_ context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.codes[sig]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	if !e.active {
		return e.req, fosite.ErrInvalidatedAuthorizeCode
	}
	return e.req, nil
}

func (s *store) InvalidateAuthorizeCodeSession(_ context.Context, sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.codes[sig]
	if !ok {
		return fosite.ErrNotFound
	}
	e.active = false
	s.codes[sig] = e
	return nil
}

func (s *store) CreateOpenIDConnectSession(_ context.Context, code string, req fosite.Requester) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oidc[code] = req
	return nil
}

func (s *store) GetOpenIDConnectSession(_ context.Context, code string, _ fosite.Requester) (fosite.Requester, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.oidc[code]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	return r, nil
}

func (s *store) DeleteOpenIDConnectSession(_ context.Context, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.oidc, code)
	return nil
}

func (s *store) CreatePKCERequestSession(_ context.Context, sig string, req fosite.Requester) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkce[sig] = req
	return nil
}

func (s *store) GetPKCERequestSession(_ context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.pkce[sig]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	return r, nil
}

func (s *store) DeletePKCERequestSession(_ context.Context, sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pkce, sig)
	return nil
}

func (s *store) CreateAccessTokenSession(_ context.Context, sig string, req fosite.Requester) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access[sig] = req
	return nil
}

func (s *store) GetAccessTokenSession(_ context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.access[sig]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	return r, nil
}

func (s *store) DeleteAccessTokenSession(_ context.Context, sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.access, sig)
	return nil
}

func (s *store) CreateRefreshTokenSession(_ context.Context, sig, _ string, req fosite.Requester) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh[sig] = refreshEntry{active: true, req: req}
	return nil
}

// GetRefreshTokenSession returns the request together with fosite.ErrInactiveToken for a rotated or revoked token:
// that is what sends fosite's refresh handler down its reuse path, which revokes the whole family (Authelia 4.39,
// protocol-notes B.1).
func (s *store) GetRefreshTokenSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.refresh[sig]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	if !e.active {
		if t := traceFrom(ctx); t != nil && e.used {
			t.reuse = true
		}
		return e.req, fosite.ErrInactiveToken
	}
	return e.req, nil
}

// DeleteRefreshTokenSession is called by fosite only on the reuse path, for the presented token. Authelia revokes
// that token rather than deleting it, so presenting it yet again is detected as reuse again; the same here.
func (s *store) DeleteRefreshTokenSession(_ context.Context, sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.refresh[sig]; ok {
		e.active = false
		s.refresh[sig] = e
	}
	return nil
}

// RotateRefreshToken deactivates every refresh token of the grant and revokes every access token of it, in one step,
// like Authelia's rotation (no grace period).
func (s *store) RotateRefreshToken(_ context.Context, requestID, sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.refresh[sig]; ok {
		e.used = true
		s.refresh[sig] = e
	}
	s.revokeRefreshLocked(requestID)
	s.revokeAccessLocked(requestID)
	return nil
}

// RevokeRefreshToken deactivates every refresh token of the grant (the whole family, including the newest).
func (s *store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revokeRefreshLocked(requestID) > 0 {
		if t := traceFrom(ctx); t != nil && t.reuse {
			t.familyRevoked = true
		}
	}
	return nil
}

// RevokeAccessToken revokes every access token of the grant.
func (s *store) RevokeAccessToken(ctx context.Context, requestID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revokeAccessLocked(requestID) > 0 {
		if t := traceFrom(ctx); t != nil && t.reuse {
			t.familyRevoked = true
		}
	}
	return nil
}

func (s *store) revokeRefreshLocked(requestID string) (n int) {
	for sig, e := range s.refresh {
		if e.req.GetID() == requestID && e.active {
			e.active = false
			s.refresh[sig] = e
			n++
		}
	}
	return n
}

func (s *store) revokeAccessLocked(requestID string) (n int) {
	for sig, r := range s.access {
		if r.GetID() == requestID {
			delete(s.access, sig)
			n++
		}
	}
	return n
}

// sweep drops entries that can no longer matter, so a long-running demo does not grow without bound. Inactive refresh
// tokens are kept for a day past their expiry, because their presence is what detects reuse and tells "expired"
// from "unknown".
func (s *store) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sig, r := range s.access {
		if exp := r.GetSession().GetExpiresAt(fosite.AccessToken); !exp.IsZero() && exp.Before(now) {
			delete(s.access, sig)
		}
	}
	for sig, e := range s.refresh {
		if exp := e.req.GetSession().GetExpiresAt(fosite.RefreshToken); !exp.IsZero() && exp.Add(24*time.Hour).Before(now) {
			delete(s.refresh, sig)
		}
	}
	for sig, e := range s.codes {
		if exp := e.req.GetSession().GetExpiresAt(fosite.AuthorizeCode); !exp.IsZero() && exp.Add(time.Hour).Before(now) {
			delete(s.codes, sig)
			delete(s.pkce, sig)
		}
	}
}
