//go:build !nodemo

package main

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/store"
)

// TestLogsHoldNoSecrets runs the demo's flow (sign-in, page views, a refresh, a new IMAP login with the refreshed
// token, a mail login failing while the IdP is down, sign-out) with Postern, the dev IdP and the dev mail server all logging at debug level into one buffer, and
// fails if any token, authorization code, state, nonce, client or session secret, encryption key, cookie value or SASL
// payload appears in it.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	ta := startApp(t, &logs)
	ctx, a, d, cfg, jar, hc, base := ta.ctx, ta.app, ta.dev, ta.cfg, ta.jar, ta.hc, ta.base
	do := func(method, path string) *http.Response {
		t.Helper()
		return ta.do(method, path, nil)
	}
	secrets := map[string]string{
		"client secret":  d.ClientSecret,
		"session secret": cfg.Session.Secret,
		"encryption key": cfg.Storage.EncryptionKey,
	}

	// Sign in; the code and state come from the callback URL.
	authURL, err := url.Parse(do(http.MethodGet, "/login").Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	secrets["nonce"] = authURL.Query().Get("nonce")
	cb, err := idp.SignIn(ctx, hc, authURL.String(), "alice", "alice-password", true)
	if err != nil {
		t.Fatal(err)
	}
	secrets["authorization code"] = cb.Query().Get("code")
	secrets["state"] = cb.Query().Get("state")
	if resp := do(http.MethodGet, cb.RequestURI()); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback = %s", resp.Status)
	}
	for _, u := range []string{base, d.IdP.Issuer()} {
		pu, _ := url.Parse(u)
		for _, c := range jar.Cookies(pu) {
			secrets["cookie "+c.Name] = c.Value
		}
	}

	// Page views.
	for _, path := range []string{"/mail/INBOX", "/session", "/mail/INBOX"} {
		if resp := do(http.MethodGet, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %s", path, resp.Status)
		}
	}
	g := ta.onlyGrant()
	addTokens(secrets, "first", g)

	// A refresh: the access token has all but expired (too little left for a view, which then waits for the
	// refresh instead of starting it in the background), so the next page view rotates the grant; then a new IMAP
	// login presents the new token.
	ta.expireSoon(g)
	if resp := do(http.MethodGet, "/mail/INBOX"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mail/INBOX after expiry = %s", resp.Status)
	}
	g2, err := a.store.Grant(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if g2.RefreshToken == g.RefreshToken {
		t.Fatal("the grant was not refreshed")
	}
	addTokens(secrets, "refreshed", g2)
	a.pool.CloseKey(g.ID)
	if resp := do(http.MethodGet, "/mail/INBOX"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mail/INBOX with a new login = %s", resp.Status)
	}

	// An error path: the IdP is down, so the mail server cannot check the token of a new IMAP login and the page
	// fails; errors carry server replies, which is where tokens tend to leak.
	d.IdP.SetDown(true)
	a.pool.CloseKey(g.ID)
	if resp := do(http.MethodGet, "/mail/INBOX"); resp.StatusCode < 500 {
		t.Fatalf("GET /mail/INBOX with the IdP down = %s", resp.Status)
	}
	d.IdP.SetDown(false)

	// Sign out (revokes at the IdP), then stop.
	if resp := do(http.MethodPost, "/logout"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout = %s", resp.Status)
	}
	ta.Stop()

	out := logs.String()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "component=dev-idp") || !strings.Contains(out, "signed in") {
		t.Fatalf("the log does not look like a debug log of the whole flow:\n%s", out)
	}
	checked := 0
	for what, s := range secrets {
		for _, needle := range needles(s) {
			checked++
			if i := strings.Index(out, needle); i >= 0 {
				line := out[strings.LastIndexByte(out[:i], '\n')+1:]
				if j := strings.IndexByte(line, '\n'); j >= 0 {
					line = line[:j]
				}
				t.Errorf("the log contains the %s (or part of it): %s", what, strings.ReplaceAll(line, needle, "[…]"))
			}
		}
	}
	t.Logf("%d log lines scanned for %d secret strings", strings.Count(out, "\n"), checked)
}

// addTokens adds a grant's tokens and the SASL payloads that carry its access token.
func addTokens(secrets map[string]string, which string, g store.Grant) {
	secrets[which+" access token"] = g.AccessToken
	secrets[which+" refresh token"] = g.RefreshToken
	secrets[which+" ID token"] = g.IDToken
	for mech, payload := range map[string]string{
		"OAUTHBEARER": "n,a=" + g.Email + ",\x01auth=Bearer " + g.AccessToken + "\x01\x01",
		"XOAUTH2":     "user=" + g.Email + "\x01auth=Bearer " + g.AccessToken + "\x01\x01",
	} {
		secrets[which+" SASL "+mech+" payload (base64)"] = base64.StdEncoding.EncodeToString([]byte(payload))
	}
}

// needles are the strings that must not appear for secret s: s itself and each long part of it, so that a log
// line that prints only the signature half of an HMAC token ("authelia_at_<key>.<signature>") or of a JWT is caught.
func needles(s string) []string {
	if s == "" {
		return nil
	}
	out := []string{s}
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '_' }) {
		if len(part) >= 16 && part != s {
			out = append(out, part)
		}
	}
	return out
}
