package mailserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
)

// JWTOptions switch the server to Stalwart 0.16's OIDC directory (protocol-notes D): a JWT access token (RFC 9068)
// is validated offline against the identity provider's JWKS, and userinfo is called only when the token lacks the
// email claim. An opaque token still costs one userinfo call, as before.
type JWTOptions struct {
	// IssuerURL is Stalwart's issuerUrl: discovery is read from it, its issuer must equal it, and so must every
	// token's iss. Required.
	IssuerURL string
	// RequireAudience is requireAudience: the token's aud must contain it. Default "stalwart".
	RequireAudience string
	// ClaimUsername is claimUsername, the claim naming the account. Default "preferred_username".
	ClaimUsername string
	// Now is the clock for exp and nbf; default time.Now. Tests set it to see a token through its lifetime.
	Now func() time.Time
}

// jwtLeeway is the clock skew Stalwart 0.16 allows on exp and nbf.
const jwtLeeway = 60 * time.Second

// errNotJWT means the token is opaque and takes the userinfo path.
var errNotJWT = errors.New("mailserver: not a JWT")

// jwtValidator caches the JWKS, as Stalwart does (only the key set is cached, never a token's result).
type jwtValidator struct {
	opts JWTOptions
	http *http.Client

	mu      sync.Mutex
	jwksURI string
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

func newJWTValidator(o JWTOptions, c *http.Client) (*jwtValidator, error) {
	if o.IssuerURL == "" {
		return nil, errors.New("mailserver: JWT.IssuerURL is required")
	}
	if o.RequireAudience == "" {
		o.RequireAudience = "stalwart"
	}
	if o.ClaimUsername == "" {
		o.ClaimUsername = "preferred_username"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &jwtValidator{opts: o, http: c}, nil
}

// looksLikeJWT reports whether token is a compact JWS; an opaque Authelia token (authelia_at_….…) has one dot.
func looksLikeJWT(token string) bool { return strings.Count(token, ".") == 2 }

// validate returns the token's claims if it is a valid JWT access token for this server. A failure is authFailed
// unless the key set could not be fetched (authUnavailable).
func (v *jwtValidator) validate(ctx context.Context, token string, s *Server) (map[string]any, authResult) {
	jws, err := jose.ParseSigned(token)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, authFailed
	}
	h := jws.Signatures[0].Header
	// Symmetric algorithms would let anyone holding a client secret mint tokens; Stalwart refuses HS*.
	if strings.HasPrefix(h.Algorithm, "HS") || h.Algorithm == "none" || h.Algorithm == "" {
		return nil, authFailed
	}
	// RFC 9068 §4: the typ must be at+jwt (or application/at+jwt), so an ID token cannot pass as an access token.
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(strings.TrimPrefix(typ, "application/"), "at+jwt") {
		return nil, authFailed
	}
	key, res := v.key(ctx, h.KeyID, s)
	if res != authOK {
		return nil, res
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, authFailed
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, authFailed
	}
	now := v.opts.Now()
	if iss, _ := claims["iss"].(string); iss != v.opts.IssuerURL {
		return nil, authFailed
	}
	exp, ok := claims["exp"].(float64)
	if !ok || now.After(time.Unix(int64(exp), 0).Add(jwtLeeway)) {
		return nil, authFailed
	}
	if nbf, ok := claims["nbf"].(float64); ok && now.Add(jwtLeeway).Before(time.Unix(int64(nbf), 0)) {
		return nil, authFailed
	}
	if !audContains(claims["aud"], v.opts.RequireAudience) {
		return nil, authFailed
	}
	if u, _ := claims[v.opts.ClaimUsername].(string); u == "" {
		return nil, authFailed
	}
	return claims, authOK
}

// audContains reads aud as a string or an array of strings (RFC 7519 §4.1.3).
func audContains(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		return slices.ContainsFunc(a, func(x any) bool { s, _ := x.(string); return s == want })
	}
	return false
}

// key returns the verification key for kid, refetching the key set for an unknown kid at most every 300 s.
func (v *jwtValidator) key(ctx context.Context, kid string, s *Server) (*jose.JSONWebKey, authResult) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys != nil {
		if ks := v.keys.Key(kid); len(ks) > 0 {
			return &ks[0], authOK
		}
		if v.opts.Now().Sub(v.fetched) < 300*time.Second {
			return nil, authFailed
		}
	}
	if err := v.fetchLocked(ctx, s); err != nil {
		s.log.Info("mailserver: jwks unavailable", "err", err)
		return nil, authUnavailable
	}
	if ks := v.keys.Key(kid); len(ks) > 0 {
		return &ks[0], authOK
	}
	return nil, authFailed
}

func (v *jwtValidator) fetchLocked(ctx context.Context, s *Server) error {
	if v.jwksURI == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := v.getJSON(ctx, strings.TrimRight(v.opts.IssuerURL, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return err
		}
		if doc.Issuer != v.opts.IssuerURL {
			return fmt.Errorf("issuer %q in discovery, want %q", doc.Issuer, v.opts.IssuerURL)
		}
		v.jwksURI = doc.JWKSURI
	}
	var set jose.JSONWebKeySet
	if err := v.getJSON(ctx, v.jwksURI, &set); err != nil {
		return err
	}
	s.jwksFetches.Add(1)
	v.keys, v.fetched = &set, v.opts.Now()
	return nil
}

func (v *jwtValidator) getJSON(ctx context.Context, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(into)
}

// validateToken is the directory's check of a presented bearer token: the offline JWT path when configured and the
// token is a JWT, else one userinfo call (Stalwart 0.11–0.16's opaque path).
func (s *Server) validateToken(ctx context.Context, token string) (string, authResult) {
	if s.jwt == nil || !looksLikeJWT(token) {
		return s.userinfo(ctx, token)
	}
	claims, res := s.jwt.validate(ctx, token, s)
	if res != authOK {
		return "", res
	}
	s.jwtValidations.Add(1)
	email, _ := claims["email"].(string)
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" || !strings.Contains(email, "@") {
		// Stalwart 0.16 asks userinfo only for claims the token lacks.
		return s.userinfo(ctx, token)
	}
	return email, authOK
}
