//go:build e2e

package e2e

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"golang.org/x/oauth2"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// hydraAccessTokenType is the JOSE typ of Hydra's JWT access tokens: Hydra writes "JWT", not RFC 9068's "at+jwt",
// so Postern runs with oidc.access_token_type: JWT here.
const hydraAccessTokenType = "JWT"

func (tb *testbed) jwtClient() client {
	return client{tb.JWTClientID, tb.JWTSecret, tb.JWTRedirectURL}
}

// installDovecotKeys writes the RSA public keys of Hydra's JWKS as PEM into Dovecot's local_validation_key_dict,
// where Dovecot 2.3 looks up shared/<azp or "default">/<alg>/<kid>; the fs dict drops "shared/" from the path
// (lib-dict/dict-fs.c), and Hydra's access tokens carry no azp, so the file is <dir>/default/RS256/<kid>.
// Dovecot reads the dict on every lookup until it has cached a key, so writing them while Dovecot runs is enough.
// kid, if not empty, must be among them: the key that signed the token under test.
func (tb *testbed) installDovecotKeys(t *testing.T, kid string) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := getJSON(context.Background(), tb.Issuer+"/.well-known/jwks.json", &set); err != nil {
		t.Fatalf("hydra jwks: %v", err)
	}
	n, found := 0, kid == ""
	for _, k := range set.Keys {
		pub, ok := k.Key.(*rsa.PublicKey)
		if !ok || k.KeyID == "" || strings.ContainsAny(k.KeyID, "/%") {
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		p := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		d := filepath.Join(tb.DovecotKeys, "default", "RS256")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		// Readable by Dovecot's unprivileged auth process; these are public keys.
		if err := os.WriteFile(filepath.Join(d, k.KeyID), p, 0o644); err != nil {
			t.Fatal(err)
		}
		n++
		found = found || k.KeyID == kid
	}
	if n == 0 || !found {
		t.Fatalf("hydra's JWKS has %d RSA keys with a kid, none of them %q", n, kid)
	}
}

// jwtLogin signs alice in directly with the JWT client, asking for the audience Dovecot (like Stalwart 0.16)
// requires, and checks that the access token is a JWT for it.
func (tb *testbed) jwtLogin(t *testing.T, user, password string) (tokens, auth.AccessTokenInfo) {
	t.Helper()
	tok := tb.directLogin(t, tb.jwtClient(), user, password, oauth2.SetAuthURLParam("audience", tb.JWTAudience))
	info := auth.InspectAccessToken(tok.Access, hydraAccessTokenType)
	if info.Kind != auth.TokenJWT || !info.HasAudience(tb.JWTAudience) || info.Issuer != tb.Issuer {
		t.Fatalf("access token of %s: kind %v, aud %v, iss %q; want a JWT for %q from %s",
			tb.JWTClientID, info.Kind, info.Audience, info.Issuer, tb.JWTAudience, tb.Issuer)
	}
	return tok, info
}

// keyID is the kid in the JOSE header of a compact JWS.
func keyID(t *testing.T, token string) string {
	t.Helper()
	jws, err := jose.ParseSigned(token)
	if err != nil || len(jws.Signatures) != 1 {
		t.Fatalf("access token is not a compact JWS: %v", err)
	}
	return jws.Signatures[0].Header.KeyID
}

// TestJWTDovecotLocalValidation proves the offline path against independent code: Hydra issues a JWT access token,
// Dovecot 2.3's oauth2 passdb validates it locally against Hydra's public key, and, once the grant is revoked at
// Hydra, still accepts it, which the userinfo path would not: the revocation trade-off of docs/deploy.md 4.1.
func TestJWTDovecotLocalValidation(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, info := tb.jwtLogin(t, "alice", "alice-password")
	// After the first JWT: Hydra may create its access-token key set only then.
	tb.installDovecotKeys(t, keyID(t, tok.Access))
	if life := time.Until(info.Expiry); life > 6*time.Minute {
		t.Errorf("JWT lives %s more, want the client's 5 minutes", life)
	}
	srv := tb.mailServer(tb.IMAPPort, mail.TLSImplicit, mail.MechOAuthBearer)
	creds := mail.Credentials{Address: alice, Token: tok.Access}
	if _, err := dial(ctx, srv, creds); err != nil {
		t.Fatalf("IMAP login with the JWT = %v, want success", err)
	}

	tb.revoke(t, tb.jwtClient(), tok.Refresh)
	if in := tb.introspect(t, tok.Access); in.Active {
		t.Fatalf("access token still active at Hydra after revoking the grant")
	}
	// Hydra's userinfo refuses it now, so only local validation can accept it.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tb.discovery(t).UserInfo, nil)
	req.Header.Set("Authorization", "Bearer "+tok.Access)
	if resp, err := httpClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("hydra userinfo with the revoked JWT = %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, err := dial(ctx, srv, creds); err != nil {
		t.Fatalf("IMAP login with the revoked JWT before exp = %v, want success (local validation)", err)
	}
	// An opaque token of the same user, revoked, is refused at once (the tokeninfo passdb asks Hydra).
	op := tb.directLogin(t, tb.postern(), "alice", "alice-password")
	tb.revoke(t, tb.postern(), op.Refresh)
	if _, err := dial(ctx, srv, mail.Credentials{Address: alice, Token: op.Access}); !errors.Is(err, mail.ErrAuthFailed) {
		t.Errorf("IMAP login with a revoked opaque token = %v, want mail.ErrAuthFailed", err)
	}
	resetPenalty(t, tb, creds)
}

// TestJWTWebmail runs `postern serve` with JWT access tokens: sign-in requests the audience, the inbox opens through
// Dovecot's local validation, the stored access token is a JWT whose exp caps the stored expiry, and sign-out
// revokes the grant at Hydra and shows the sentence about access tokens that stay valid until they expire.
func TestJWTWebmail(t *testing.T) {
	tb := peers(t)
	tok, _ := tb.jwtLogin(t, "bob", "bob-password")
	tb.installDovecotKeys(t, keyID(t, tok.Access))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startPostern(t, tb, posternOptions{Listen: "127.0.0.1:18083", Client: tb.jwtClient(),
		RefreshBeforeExpiry: time.Minute, Audience: []string{tb.JWTAudience}, AccessTokenType: hydraAccessTokenType})
	b := newBrowser(t)
	resp, page := b.signInForm(ctx, t, p.URL+"/mail/INBOX", "alice", "alice-password")
	if got := resp.Request.URL.String(); got != p.URL+"/mail/INBOX" || resp.StatusCode != http.StatusOK {
		t.Fatalf("after sign-in: at %s with status %d, want the inbox; page: %.300s", got, resp.StatusCode, visibleText(page))
	}
	p.inbox(ctx, t, b)

	st := p.openStore(t)
	g := p.grantOf(t, st, "alice")
	info := auth.InspectAccessToken(g.AccessToken, hydraAccessTokenType)
	if info.Kind != auth.TokenJWT || !info.HasAudience(tb.JWTAudience) {
		t.Fatalf("stored access token: kind %v, aud %v; want a JWT for %q", info.Kind, info.Audience, tb.JWTAudience)
	}
	if g.AccessExpiry.After(info.Expiry) {
		t.Errorf("stored access expiry %v is after the JWT's exp %v", g.AccessExpiry, info.Expiry)
	}

	resp, page = b.post(ctx, t, p.URL+"/logout", nil)
	if got := resp.Request.URL.Path; got != "/signed-out" || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /logout ended at %s with status %d, want /signed-out", resp.Request.URL, resp.StatusCode)
	}
	if !strings.Contains(visibleText(page), "stays valid there until it expires") {
		t.Errorf("signed-out page does not say that a JWT stays valid until it expires: %.400s", visibleText(page))
	}
	if in := tb.introspect(t, g.RefreshToken); in.Active {
		t.Errorf("refresh token still active at Hydra after sign-out")
	}
	assertNoSecrets(t, "postern's log", p.Log(), g.AccessToken, g.RefreshToken, g.IDToken)
}
