package auth

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"
)

// TokenKind is what an access token is to the mail server: an opaque handle it must ask the provider about (one
// userinfo call per mail login at Stalwart), or a self-contained JWT it can validate offline against the provider's
// JWKS (RFC 9068; Stalwart 0.16, Dovecot's oauth2 local validation).
type TokenKind int

const (
	// TokenOpaque is Authelia's default (access_token_signed_response_alg: none) and anything that is not a JWT
	// of the expected type.
	TokenOpaque TokenKind = iota
	// TokenJWT is an RFC 9068 JWT access token: its exp is when the mail server stops accepting it, whatever
	// happens at the provider, revocation included.
	TokenJWT
)

// String returns "opaque" or "jwt".
func (k TokenKind) String() string {
	if k == TokenJWT {
		return "jwt"
	}
	return "opaque"
}

// DefaultAccessTokenType is the JOSE typ header of an RFC 9068 access token (§2.1).
const DefaultAccessTokenType = "at+jwt"

// AccessTokenInfo is what Postern reads from an access token WITHOUT verifying it. It is used for timing and for
// diagnostics only: the claims of an unverified token are never trusted for identity, which comes from userinfo at
// sign-in (OIDC Core §5.3.2).
type AccessTokenInfo struct {
	Kind TokenKind
	// Type is the JOSE typ header, Algorithm the alg, both empty for an opaque token.
	Type, Algorithm string
	// Issuer, Audience, Expiry and IssuedAt are the iss, aud, exp and iat claims of a JWT; zero for an opaque token.
	Issuer           string
	Audience         []string
	Expiry, IssuedAt time.Time
	// Scopes are the scp (Authelia) or scope (RFC 9068 §2.2.3) claim.
	Scopes []string
	// Claims names every claim the JWT carries, sorted, so a diagnosis can tell whether a resource server will find
	// what it needs (Stalwart 0.16 calls userinfo for a missing email).
	Claims []string
}

// InspectAccessToken decodes token's JOSE header and claims without checking the signature. The token is a JWT if
// it is a three-part compact JWS whose typ equals wantType (case-insensitive, with or without "application/", RFC
// 9068 §2.1; empty means DefaultAccessTokenType) and whose claims carry an exp; anything else is opaque. Some
// providers (Ory Hydra) mark their JWT access tokens typ "JWT"; wantType lets a deployment accept that.
func InspectAccessToken(token, wantType string) AccessTokenInfo {
	if wantType == "" {
		wantType = DefaultAccessTokenType
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return AccessTokenInfo{}
	}
	var h struct {
		Typ string `json:"typ"`
		Alg string `json:"alg"`
	}
	var c struct {
		Iss   string          `json:"iss"`
		Aud   json.RawMessage `json:"aud"`
		Exp   json.Number     `json:"exp"`
		Iat   json.Number     `json:"iat"`
		Scp   json.RawMessage `json:"scp"`
		Scope string          `json:"scope"`
	}
	if !decodeSegment(parts[0], &h) || !decodeSegment(parts[1], &c) {
		return AccessTokenInfo{}
	}
	if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(h.Typ), "application/"), strings.TrimPrefix(strings.ToLower(wantType), "application/")) {
		return AccessTokenInfo{}
	}
	exp, err := c.Exp.Float64()
	if err != nil || exp <= 0 {
		return AccessTokenInfo{}
	}
	info := AccessTokenInfo{
		Kind: TokenJWT, Type: h.Typ, Algorithm: h.Alg, Issuer: c.Iss,
		Audience: stringOrList(c.Aud),
		Expiry:   time.Unix(int64(exp), 0),
		Scopes:   stringOrList(c.Scp),
	}
	if info.Scopes == nil && c.Scope != "" {
		info.Scopes = strings.Fields(c.Scope)
	}
	if iat, err := c.Iat.Float64(); err == nil && iat > 0 {
		info.IssuedAt = time.Unix(int64(iat), 0)
	}
	var all map[string]json.RawMessage
	if decodeSegment(parts[1], &all) {
		info.Claims = slices.Sorted(maps.Keys(all))
	}
	return info
}

// HasAudience reports whether aud is among the token's audiences.
func (i AccessTokenInfo) HasAudience(aud string) bool { return slices.Contains(i.Audience, aud) }

// HasClaim reports whether the JWT carries the named claim.
func (i AccessTokenInfo) HasClaim(name string) bool { return slices.Contains(i.Claims, name) }

func decodeSegment(seg string, into any) bool {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return false
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	return d.Decode(into) == nil
}

// stringOrList reads a claim that is a string or an array of strings (RFC 7519 §4.1.3 for aud; scp in either form).
func stringOrList(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil
		}
		return []string{one}
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	return nil
}

// withTokenKind classifies ts's access token and, for a JWT, lets its exp cap ts.Expiry: the mail server stops
// accepting the token at exp whatever expires_in said, so the keeper (which times refreshes from the stored expiry)
// must refresh before it. An expires_in shorter than exp is kept: refreshing early is harmless.
func withTokenKind(ts TokenSet, wantType string) TokenSet {
	info := InspectAccessToken(ts.AccessToken, wantType)
	ts.Kind = info.Kind
	if info.Kind == TokenJWT && (ts.Expiry.IsZero() || info.Expiry.Before(ts.Expiry)) {
		ts.Expiry = info.Expiry
	}
	return ts
}
