package doctor

import (
	"fmt"
	"strings"
	"time"

	"github.com/postern/postern/auth"
)

// maxJWTLifetime is the longest JWT access-token lifetime the doctor accepts without a warning: a revoked JWT stays
// valid at Stalwart 0.16 until it expires (docs/deploy.md recommends 5 minutes).
const maxJWTLifetime = 15 * time.Minute

// tokenKind reports whether Options.Token is opaque or an RFC 9068 JWT and, for a JWT, whether Stalwart 0.16 will
// accept it offline: issuer, audience, algorithm, the email claim (else Stalwart asks userinfo anyway) and a short
// lifetime. The token is decoded without verification, for diagnosis only.
func (d *run) tokenKind() {
	const name = "token_kind"
	info := auth.InspectAccessToken(d.opts.Token, d.cfg.OIDC.AccessTokenType)
	if info.Kind == auth.TokenOpaque {
		d.pass(name, "opaque access token: every IMAP or SMTP login costs Stalwart one userinfo call to Authelia, and "+
			"revoking it at Authelia takes effect at once (JWT access tokens trade that for logins that cost Authelia "+
			"nothing: docs/deploy.md)")
		return
	}
	issuer := strings.TrimRight(d.cfg.OIDC.Issuer, "/")
	aud := "stalwart" // Stalwart 0.16's default requireAudience
	if len(d.cfg.OIDC.Audience) > 0 {
		aud = d.cfg.OIDC.Audience[0]
	}
	lifetime := time.Duration(0)
	if !info.IssuedAt.IsZero() {
		lifetime = info.Expiry.Sub(info.IssuedAt)
	}
	detail := fmt.Sprintf("JWT access token (typ %q, alg %s, aud %q, lifetime %s)", info.Type, info.Algorithm, info.Audience, lifetime.Round(time.Minute))
	fix := d.jwtFix(issuer, aud)
	switch {
	case info.Issuer != issuer:
		d.fail(name, detail+fmt.Sprintf(": iss %q is not oidc.issuer, so Stalwart 0.16 (issuerUrl) refuses it", info.Issuer), fix)
	case strings.HasPrefix(info.Algorithm, "HS"):
		d.fail(name, detail+": signed with a shared secret, which Stalwart 0.16 refuses", fix)
	case len(d.cfg.OIDC.Audience) == 0:
		d.warn(name, detail+": oidc.audience is empty, so Postern requests no audience; Stalwart 0.16 requires "+
			"requireAudience (default \"stalwart\") in aud", fix)
	case !info.HasAudience(aud):
		d.fail(name, detail+fmt.Sprintf(": aud lacks %q, which Stalwart 0.16's requireAudience must equal", aud), fix)
	case !info.HasClaim("email") || !info.HasClaim("preferred_username"):
		d.warn(name, detail+": no email or preferred_username claim, so Stalwart 0.16 calls userinfo on every login anyway", fix)
	case lifetime > maxJWTLifetime:
		d.warn(name, detail+fmt.Sprintf(": a revoked token stays valid at Stalwart until it expires; keep it at most %s", maxJWTLifetime), fix)
	default:
		d.pass(name, "%s: Stalwart 0.16 with requireAudience %q validates it offline, so mail logins cost Authelia nothing; "+
			"a revoked token stays valid there until it expires", detail, aud)
	}
}

// jwtFix is the Authelia client and Stalwart 0.16 directory settings for JWT access tokens (docs/deploy.md).
func (d *run) jwtFix(issuer, aud string) string {
	return fmt.Sprintf(`In Authelia (configuration.yml), the client '%[1]s' and a claims policy:
  identity_providers:
    oidc:
      claims_policies:
        stalwart:
          access_token: ['email', 'preferred_username', 'name']
      clients:
        - client_id: '%[1]s'
          access_token_signed_response_alg: 'RS256'
          audience: ['%[2]s']
          claims_policy: 'stalwart'
          lifespan: 'postern'   # with identity_providers.oidc.lifespans.custom.postern.access_token: '5m'
In Postern: oidc.audience: [%[2]s]
In Stalwart 0.16's OIDC directory: issuerUrl = "%[3]s", requireAudience = "%[2]s", requireScopes = [] (Authelia
writes scopes into scp), claimUsername = "preferred_username".`, d.cfg.OIDC.ClientID, aud, issuer)
}
