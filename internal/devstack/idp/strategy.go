package idp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
)

// autheliaStrategy is fosite's HMAC token strategy with Authelia's token prefixes (authelia_at_, authelia_rt_,
// authelia_ac_; protocol-notes B.2), so tokens have the shape and length a real deployment produces.
type autheliaStrategy struct {
	*oauth2.HMACSHAStrategyUnPrefixed
}

var _ oauth2.CoreStrategy = autheliaStrategy{}

func prefix(part string) string { return "authelia_" + part + "_" }

func withPrefix(token, part string) string {
	if token == "" {
		return ""
	}
	return prefix(part) + token
}

// GenerateAccessToken mints an opaque HMAC access token.
func (s autheliaStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	t, sig, err := s.HMACSHAStrategyUnPrefixed.GenerateAccessToken(ctx, r)
	return withPrefix(t, "at"), sig, err
}

// ValidateAccessToken checks expiry and the HMAC.
func (s autheliaStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	return s.HMACSHAStrategyUnPrefixed.ValidateAccessToken(ctx, r, strings.TrimPrefix(token, prefix("at")))
}

// GenerateRefreshToken mints an opaque HMAC refresh token.
func (s autheliaStrategy) GenerateRefreshToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	t, sig, err := s.HMACSHAStrategyUnPrefixed.GenerateRefreshToken(ctx, r)
	return withPrefix(t, "rt"), sig, err
}

// ValidateRefreshToken checks expiry and the HMAC.
func (s autheliaStrategy) ValidateRefreshToken(ctx context.Context, r fosite.Requester, token string) error {
	return s.HMACSHAStrategyUnPrefixed.ValidateRefreshToken(ctx, r, strings.TrimPrefix(token, prefix("rt")))
}

// GenerateAuthorizeCode mints an opaque HMAC authorization code.
func (s autheliaStrategy) GenerateAuthorizeCode(ctx context.Context, r fosite.Requester) (string, string, error) {
	t, sig, err := s.HMACSHAStrategyUnPrefixed.GenerateAuthorizeCode(ctx, r)
	return withPrefix(t, "ac"), sig, err
}

// ValidateAuthorizeCode checks expiry and the HMAC.
func (s autheliaStrategy) ValidateAuthorizeCode(ctx context.Context, r fosite.Requester, token string) error {
	return s.HMACSHAStrategyUnPrefixed.ValidateAuthorizeCode(ctx, r, strings.TrimPrefix(token, prefix("ac")))
}

// sha256Hasher replaces fosite's default bcrypt (cost 12, ~250 ms per token request), which would dominate the test
// run time of every package using the IdP. Client secrets here are demo values, not user passwords.
type sha256Hasher struct{}

var errSecretMismatch = errors.New("idp: client secret mismatch")

func (sha256Hasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	h := sha256.Sum256(data)
	return h[:], nil
}

func (sha256Hasher) Compare(_ context.Context, hash, data []byte) error {
	h := sha256.Sum256(data)
	if subtle.ConstantTimeCompare(hash, h[:]) != 1 {
		return errSecretMismatch
	}
	return nil
}
