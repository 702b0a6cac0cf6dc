package idp

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// jwtAccessStrategy issues RFC 9068 JWT access tokens, as Authelia 4.39 does for a client with
// access_token_signed_response_alg: RS256 (protocol-notes B.2, D), and keeps the opaque HMAC refresh tokens and
// authorization codes of autheliaStrategy. The token is still stored under its signature, so userinfo, introspection
// and revocation work as for opaque tokens; what changes is that a resource server can validate it offline against
// the JWKS, and then never learns of a revocation before exp.
type jwtAccessStrategy struct {
	autheliaStrategy
	p      *IdP
	signer *jwt.DefaultSigner
}

// accessTokenType is the JOSE typ of an RFC 9068 access token (§2.1), which a resource server checks so that an ID
// token cannot be replayed as an access token.
const accessTokenType = "at+jwt"

// AccessTokenSignature is the JWS signature, the part that identifies the stored grant.
func (s jwtAccessStrategy) AccessTokenSignature(_ context.Context, token string) string {
	if i := strings.LastIndexByte(token, '.'); i >= 0 && strings.Count(token, ".") == 2 {
		return token[i+1:]
	}
	return ""
}

// GenerateAccessToken signs the RFC 9068 §2.2 claims: iss, exp, aud (the granted audience, as requested with the
// `audience` parameter), sub, client_id, iat, jti, and the scopes in `scp` as Authelia writes them. The user's email,
// preferred_username and name are added as an Authelia claims policy with access_token claims would (docs/deploy.md):
// without them Stalwart 0.16 falls back to a userinfo call per login.
func (s jwtAccessStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	sess, ok := r.GetSession().(*openid.DefaultSession)
	if !ok {
		return "", "", errors.New("idp: access token for a session without OpenID Connect claims")
	}
	now := time.Now().UTC()
	exp := sess.GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() {
		exp = now.Add(s.p.accessLifespan)
	}
	claims := jwt.MapClaims{
		"iss":       s.p.issuer,
		"sub":       sess.Subject,
		"client_id": r.GetClient().GetID(),
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       exp.Unix(),
		"jti":       newRandomID(),
		"scp":       []string(r.GetGrantedScopes()),
	}
	if aud := r.GetGrantedAudience(); len(aud) > 0 {
		claims["aud"] = []string(aud)
	}
	if u, ok := s.p.users[sess.Username]; ok {
		scopes := r.GetGrantedScopes()
		if scopes.Has("email") && u.Email != "" {
			claims["email"] = u.Email
		}
		if scopes.Has("profile") {
			claims["preferred_username"] = u.Username
			if u.Name != "" {
				claims["name"] = u.Name
			}
		}
	}
	header := &jwt.Headers{Extra: map[string]interface{}{"kid": s.p.kid, "typ": accessTokenType}}
	return s.signer.Generate(ctx, claims, header)
}

// ValidateAccessToken checks the signature and exp; the caller has already found the stored grant by signature, so a
// revoked token fails here as an opaque one does.
func (s jwtAccessStrategy) ValidateAccessToken(ctx context.Context, _ fosite.Requester, token string) error {
	t, err := s.signer.Decode(ctx, token)
	if err != nil {
		return fosite.ErrTokenExpired.WithWrap(err).WithDebug("invalid or expired JWT access token")
	}
	if !t.Valid() {
		return fosite.ErrTokenSignatureMismatch
	}
	return nil
}
