package idp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const (
	clientID     = "postern"
	clientSecret = "s3cr+t/=&%" // needs form-urlencoding in Basic auth (RFC 6749 §2.3.1)
	redirectURL  = "http://127.0.0.1:9/oauth2/callback"
	otherID      = "other"
	otherSecret  = "other-secret"
)

func testOptions() Options {
	return Options{
		Users: []User{
			{Username: "alice", Password: "alice-pw", Email: "alice@example.test", Name: "Alice Liddell"},
			{Username: "bob", Password: "bob-pw"}, // no email, no name: claims omitted
		},
		Clients: []Client{
			{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURL}},
			{ID: otherID, Secret: otherSecret, RedirectURIs: []string{"http://127.0.0.1:9/other"}},
		},
	}
}

func startIdP(t *testing.T, mutate func(*Options)) *IdP {
	t.Helper()
	opts := testOptions()
	if mutate != nil {
		mutate(&opts)
	}
	p, err := Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newBrowser(t *testing.T, rt http.RoundTripper) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Transport: rt, Timeout: 5 * time.Second}
}

func oauthConfig(p *IdP, scopes ...string) *oauth2.Config {
	if len(scopes) == 0 {
		scopes = []string{"openid", "offline_access", "profile", "email"}
	}
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		RedirectURL:  redirectURL,
		Scopes:       scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   p.Issuer() + pathAuthorization,
			TokenURL:  p.Issuer() + pathToken,
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}
}

type flowParams struct{ state, nonce, verifier string }

func newFlowParams() flowParams {
	return flowParams{state: rand.Text(), nonce: rand.Text(), verifier: oauth2.GenerateVerifier()}
}

func (f flowParams) authURL(conf *oauth2.Config) string {
	return conf.AuthCodeURL(f.state, oidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier))
}

// login runs the whole code flow as Postern would and returns the tokens.
// aliceSignedIn starts an IdP and signs alice in with the default client: the IdP, her browser and her tokens.
func aliceSignedIn(t *testing.T) (*IdP, *http.Client, *oauth2.Token) {
	t.Helper()
	p := startIdP(t, nil)
	hc := newBrowser(t, nil)
	tok, _ := login(t, p, hc, oauthConfig(p), "alice", "alice-pw")
	return p, hc, tok
}

func login(t *testing.T, p *IdP, hc *http.Client, conf *oauth2.Config, user, password string) (*oauth2.Token, flowParams) {
	t.Helper()
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, hc)
	f := newFlowParams()
	cb, err := SignIn(ctx, hc, f.authURL(conf), user, password, true)
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	q := cb.Query()
	if q.Get("error") != "" || q.Get("code") == "" {
		t.Fatalf("callback = %s, want a code", cb.Redacted())
	}
	if got := q.Get("state"); got != f.state {
		t.Fatalf("callback state = %q, want %q", got, f.state)
	}
	if got := q.Get("iss"); got != p.Issuer() {
		t.Fatalf("callback iss = %q, want %q", got, p.Issuer())
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return tok, f
}

// tokenRequest posts to the token endpoint with correctly encoded Basic credentials and returns status and body.
func tokenRequest(t *testing.T, hc *http.Client, p *IdP, id, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+pathToken, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return doJSON(t, hc, req)
}

func refresh(t *testing.T, hc *http.Client, p *IdP, rt string) (int, map[string]any) {
	t.Helper()
	return tokenRequest(t, hc, p, clientID, clientSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

func doJSON(t *testing.T, hc *http.Client, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := map[string]any{}
	if len(body) > 0 {
		_ = json.Unmarshal(body, &m)
	}
	return resp.StatusCode, m
}

func userinfo(t *testing.T, hc *http.Client, p *IdP, method, at string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, p.Issuer()+pathUserinfo, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	for _, path := range []string{pathDiscovery, pathASMetadata} {
		t.Run(path, func(t *testing.T) {
			resp, err := http.Get(p.Issuer() + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var doc map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"issuer":                 p.Issuer(),
				"authorization_endpoint": p.Issuer() + "/api/oidc/authorization",
				"token_endpoint":         p.Issuer() + "/api/oidc/token",
				"userinfo_endpoint":      p.Issuer() + "/api/oidc/userinfo",
				"revocation_endpoint":    p.Issuer() + "/api/oidc/revocation",
				"introspection_endpoint": p.Issuer() + "/api/oidc/introspection",
				"jwks_uri":               p.Issuer() + "/jwks.json",
				"authorization_response_iss_parameter_supported": true,
			}
			for k, v := range want {
				if doc[k] != v {
					t.Errorf("%s = %v, want %v", k, doc[k], v)
				}
			}
			lists := map[string]string{
				"scopes_supported":                      "offline_access openid profile email address phone groups",
				"response_types_supported":              "code",
				"code_challenge_methods_supported":      "S256",
				"id_token_signing_alg_values_supported": "RS256",
			}
			for k, v := range lists {
				if got := joinList(doc[k]); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if got := joinList(doc["token_endpoint_auth_methods_supported"]); !strings.Contains(got, "client_secret_basic") {
				t.Errorf("token_endpoint_auth_methods_supported = %q, want client_secret_basic in it", got)
			}
			if _, ok := doc["end_session_endpoint"]; ok {
				t.Errorf("end_session_endpoint present, Authelia 4.39 has none")
			}
		})
	}
}

func joinList(v any) string {
	l, _ := v.([]any)
	s := make([]string, 0, len(l))
	for _, e := range l {
		s = append(s, e.(string))
	}
	return strings.Join(s, " ")
}

func TestCodeFlow(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	hc := newBrowser(t, nil)
	conf := oauthConfig(p)
	tok, f := login(t, p, hc, conf, "alice", "alice-pw")

	if !strings.HasPrefix(tok.AccessToken, "authelia_at_") || !strings.HasPrefix(tok.RefreshToken, "authelia_rt_") {
		t.Errorf("token prefixes: access %q…, refresh %q…, want authelia_at_/authelia_rt_", tok.AccessToken[:12], tok.RefreshToken[:min(12, len(tok.RefreshToken))])
	}
	ctx := oidc.ClientContext(t.Context(), hc)
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := prov.Verifier(&oidc.Config{ClientID: clientID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("Verify ID token: %v", err)
	}
	if idt.Nonce != f.nonce {
		t.Errorf("ID token nonce = %q, want %q", idt.Nonce, f.nonce)
	}
	if idt.Subject != Subject("alice") {
		t.Errorf("ID token sub = %q, want %q", idt.Subject, Subject("alice"))
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"email", "email_verified", "name", "preferred_username"} {
		if _, ok := claims[c]; ok {
			t.Errorf("ID token has claim %q; Authelia 4.39 puts it only in userinfo", c)
		}
	}
	if _, ok := claims["auth_time"]; !ok {
		t.Errorf("ID token has no auth_time")
	}

	ui, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("UserInfo: %v", err)
	}
	var uc map[string]any
	if err := ui.Claims(&uc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"sub": Subject("alice"), "email": "alice@example.test", "email_verified": true,
		"preferred_username": "alice", "name": "Alice Liddell",
	}
	for k, v := range want {
		if uc[k] != v {
			t.Errorf("userinfo %s = %v, want %v", k, uc[k], v)
		}
	}
	if _, ok := uc["rat"]; !ok {
		t.Errorf("userinfo has no rat")
	}
	if code, _, _ := userinfo(t, hc, p, http.MethodPost, tok.AccessToken); code != http.StatusOK {
		t.Errorf("POST userinfo = %d, want 200", code)
	}
	s := p.Stats()
	if s.CodeExchanges != 1 || s.AuthorizeRequests != 1 || s.TokenRequests != 1 {
		t.Errorf("Stats = %+v, want 1 authorize, 1 token request, 1 code exchange", s)
	}
}

func TestUserinfoClaimsByScope(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	tests := []struct {
		name, user, pw string
		scopes         []string
		status         int
		want           map[string]any
		absent         []string
	}{
		{"email only", "alice", "alice-pw", []string{"openid", "email"}, 200,
			map[string]any{"email": "alice@example.test"}, []string{"preferred_username", "name"}},
		{"empty values omitted", "bob", "bob-pw", []string{"openid", "profile", "email"}, 200,
			map[string]any{"preferred_username": "bob"}, []string{"email", "email_verified", "name"}},
		{"no openid scope", "alice", "alice-pw", []string{"profile", "email"}, 403, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := newBrowser(t, nil)
			tok, _ := login(t, p, hc, oauthConfig(p, tt.scopes...), tt.user, tt.pw)
			if tok.RefreshToken != "" {
				t.Errorf("refresh token issued without offline_access")
			}
			code, h, body := userinfo(t, hc, p, http.MethodGet, tok.AccessToken)
			if code != tt.status {
				t.Fatalf("userinfo status = %d, want %d (%v)", code, tt.status, body)
			}
			if code == 403 && !strings.Contains(h.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
				t.Errorf("WWW-Authenticate = %q, want insufficient_scope", h.Get("WWW-Authenticate"))
			}
			for k, v := range tt.want {
				if body[k] != v {
					t.Errorf("%s = %v, want %v", k, body[k], v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := body[k]; ok {
					t.Errorf("claim %s present, want omitted", k)
				}
			}
		})
	}
}

func TestAuthorizationRequestErrors(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	conf := oauthConfig(p)
	verifier := oauth2.GenerateVerifier()
	tests := []struct {
		name     string
		opts     []oauth2.AuthCodeOption
		state    string
		wantErr  string
		redirect bool // error sent to the client's redirect_uri (with iss) rather than shown
	}{
		{"missing PKCE", nil, "state-12345", "invalid_request", true},
		{"plain PKCE", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("code_challenge", verifier), oauth2.SetAuthURLParam("code_challenge_method", "plain")}, "state-12345", "invalid_request", true},
		{"PKCE without method", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("code_challenge", verifier)}, "state-12345", "invalid_request", true},
		{"short state", []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}, "short", "invalid_state", true},
		{"prompt none without session", []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "none")}, "state-12345", "login_required", true},
		{"unknown redirect_uri", []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("redirect_uri", "http://127.0.0.1:9/evil")}, "state-12345", "invalid_request", false},
		{"scope not allowed", []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("scope", "openid groups")}, "state-12345", "invalid_scope", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := newBrowser(t, nil)
			hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := hc.Get(conf.AuthCodeURL(tt.state, tt.opts...))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !tt.redirect {
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tt.wantErr) {
					t.Fatalf("status %d body %s, want 400 %s", resp.StatusCode, body, tt.wantErr)
				}
				return
			}
			loc, err := resp.Location()
			if err != nil {
				t.Fatalf("status %d, no redirect: %s", resp.StatusCode, body)
			}
			q := loc.Query()
			if !strings.HasPrefix(loc.String(), redirectURL) || q.Get("error") != tt.wantErr {
				t.Fatalf("redirect = %s, want %s?error=%s", loc, redirectURL, tt.wantErr)
			}
			if q.Get("iss") != p.Issuer() || q.Get("state") != tt.state {
				t.Errorf("iss, state = %q, %q; want %q, %q", q.Get("iss"), q.Get("state"), p.Issuer(), tt.state)
			}
		})
	}
}

func TestConsentDeny(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	hc := newBrowser(t, nil)
	f := newFlowParams()
	cb, err := SignIn(t.Context(), hc, f.authURL(oauthConfig(p)), "alice", "alice-pw", false)
	if err != nil {
		t.Fatal(err)
	}
	q := cb.Query()
	if q.Get("error") != "access_denied" || q.Get("iss") != p.Issuer() || q.Get("state") != f.state || q.Has("code") {
		t.Errorf("callback = %s, want error=access_denied with iss and state, no code", cb)
	}
}

func TestLoginSession(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	conf := oauthConfig(p)
	t.Run("wrong password", func(t *testing.T) {
		hc := newBrowser(t, nil)
		_, err := SignIn(t.Context(), hc, newFlowParams().authURL(conf), "alice", "nope", true)
		if !errors.Is(err, ErrLoginRejected) {
			t.Fatalf("SignIn error = %v, want ErrLoginRejected", err)
		}
	})
	t.Run("wrong password page", func(t *testing.T) {
		hc := newBrowser(t, nil)
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := hc.Get(newFlowParams().authURL(conf))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := resp.Location()
		form := url.Values{"flow_id": {loc.Query().Get("flow_id")}, "username": {"alice"}, "password": {"bad"}}
		resp, err = hc.PostForm(p.Issuer()+pathLogin, form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `id="username"`) || !strings.Contains(string(body), "Incorrect") {
			t.Errorf("status %d, want 401 with the form and a message: %s", resp.StatusCode, body)
		}
	})
	t.Run("second sign-in skips password, not consent", func(t *testing.T) {
		hc := newBrowser(t, nil)
		login(t, p, hc, conf, "alice", "alice-pw")
		tok, _ := login(t, p, hc, conf, "alice", "not-asked")
		if code, _, _ := userinfo(t, hc, p, http.MethodGet, tok.AccessToken); code != 200 {
			t.Errorf("userinfo = %d, want 200", code)
		}
		f := newFlowParams()
		cb, err := SignIn(t.Context(), hc, f.authURL(conf)+"&prompt=none", "", "", true)
		if err != nil {
			t.Fatal(err)
		}
		if got := cb.Query().Get("error"); got != "consent_required" {
			t.Errorf("prompt=none with session: error = %q, want consent_required", got)
		}
	})
}

func TestTokenEndpointClientAuth(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	tests := []struct {
		name    string
		prepare func(r *http.Request, form url.Values)
		want    string
	}{
		{"client_secret_post", func(r *http.Request, form url.Values) {
			form.Set("client_id", clientID)
			form.Set("client_secret", clientSecret)
		}, "invalid_client"},
		{"wrong secret", func(r *http.Request, form url.Values) {
			r.SetBasicAuth(clientID, "wrong")
		}, "invalid_client"},
		{"secret not form-urlencoded", func(r *http.Request, form url.Values) {
			r.SetBasicAuth(clientID, clientSecret) // '+' decodes to a space, '%' is invalid
		}, "invalid_"},
		{"encoded secret", func(r *http.Request, form url.Values) {
			r.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
		}, "invalid_grant"}, // authenticated; the code is bogus
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"authorization_code"}, "code": {"authelia_ac_bogus.bogus"}, "redirect_uri": {redirectURL}, "code_verifier": {oauth2.GenerateVerifier()}}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+pathToken, nil)
			tt.prepare(req, form)
			req.Body = io.NopCloser(strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			code, body := doJSON(t, http.DefaultClient, req)
			if got, _ := body["error"].(string); !strings.HasPrefix(got, tt.want) {
				t.Errorf("status %d error %q, want %s…", code, got, tt.want)
			}
		})
	}
}

func TestCodeReuseRevokesTokens(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	hc := newBrowser(t, nil)
	conf := oauthConfig(p)
	f := newFlowParams()
	cb, err := SignIn(t.Context(), hc, f.authURL(conf), "alice", "alice-pw", true)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {redirectURL}, "code_verifier": {f.verifier}}

	noRedirect := url.Values{}
	for k, v := range form {
		if k != "redirect_uri" {
			noRedirect[k] = v
		}
	}
	if code, body := tokenRequest(t, hc, p, clientID, clientSecret, noRedirect); code != 400 || body["error"] != "invalid_grant" {
		t.Errorf("without redirect_uri: %d %v, want invalid_grant", code, body["error"])
	}
	code, first := tokenRequest(t, hc, p, clientID, clientSecret, form)
	if code != 200 {
		t.Fatalf("first exchange: %d %v", code, first)
	}
	code, second := tokenRequest(t, hc, p, clientID, clientSecret, form)
	if code != 400 || second["error"] != "invalid_grant" {
		t.Errorf("second exchange: %d %v, want 400 invalid_grant", code, second["error"])
	}
	for _, k := range []string{"access_token", "refresh_token"} {
		if p.Active(first[k].(string)) {
			t.Errorf("%s from the reused code is still active", k)
		}
	}
}

func TestRefreshRotation(t *testing.T) {
	t.Parallel()
	p, hc, tok := aliceSignedIn(t)

	code, body := refresh(t, hc, p, tok.RefreshToken)
	if code != 200 {
		t.Fatalf("refresh: %d %v", code, body)
	}
	at2, rt2 := body["access_token"].(string), body["refresh_token"].(string)
	if at2 == "" || rt2 == "" || rt2 == tok.RefreshToken {
		t.Fatalf("refresh did not rotate: %v", body)
	}
	if _, ok := body["id_token"].(string); !ok {
		t.Errorf("no new ID token on refresh")
	}
	if code, h, _ := userinfo(t, hc, p, http.MethodGet, tok.AccessToken); code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("old access token at userinfo: %d %q, want 401 invalid_token", code, h.Get("WWW-Authenticate"))
	}
	if code, _, _ := userinfo(t, hc, p, http.MethodGet, at2); code != 200 {
		t.Errorf("new access token at userinfo: %d, want 200", code)
	}
	if p.Active(tok.RefreshToken) || !p.Active(rt2) {
		t.Errorf("Active(old RT), Active(new RT) = %v, %v; want false, true", p.Active(tok.RefreshToken), p.Active(rt2))
	}
	if s := p.Stats(); s.Refreshes != 1 || s.RefreshFailures != 0 || s.RefreshReuses != 0 {
		t.Errorf("Stats = %+v, want 1 refresh", s)
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	t.Parallel()
	p, hc, tok := aliceSignedIn(t)
	_, body := refresh(t, hc, p, tok.RefreshToken)
	at2, rt2 := body["access_token"].(string), body["refresh_token"].(string)

	code, reuse := refresh(t, hc, p, tok.RefreshToken)
	if code != 400 || reuse["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v, want 400 invalid_grant", code, reuse)
	}
	if p.Active(at2) || p.Active(rt2) {
		t.Errorf("newest tokens still active after reuse: at %v, rt %v", p.Active(at2), p.Active(rt2))
	}
	if code, _ := refresh(t, hc, p, rt2); code != 400 {
		t.Errorf("refresh with the newest RT after reuse: %d, want 400", code)
	}
	s := p.Stats()
	if s.RefreshReuses != 1 || s.FamilyRevocations != 1 || s.Refreshes != 1 || s.RefreshFailures != 2 {
		t.Errorf("Stats = %+v, want 1 reuse, 1 family revocation, 1 refresh, 2 failures", s)
	}
}

func TestConcurrentRefreshOfOneToken(t *testing.T) {
	t.Parallel()
	p, hc, tok := aliceSignedIn(t)
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Go(func() { codes[i], _ = refresh(t, hc, p, tok.RefreshToken) })
	}
	wg.Wait()
	ok := 0
	for _, c := range codes {
		if c == 200 {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("statuses %v, want exactly one 200", codes)
	}
	if s := p.Stats(); s.RefreshReuses != 3 {
		t.Errorf("RefreshReuses = %d, want 3", s.RefreshReuses)
	}
}

func TestRevocation(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	conf := oauthConfig(p)
	revoke := func(t *testing.T, id, secret, token string, post bool) (int, map[string]any) {
		t.Helper()
		form := url.Values{"token": {token}}
		if post {
			form.Set("client_id", id)
			form.Set("client_secret", secret)
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+pathRevocation, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if !post {
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		}
		return doJSON(t, http.DefaultClient, req)
	}
	t.Run("refresh token kills the grant", func(t *testing.T) {
		tok, _ := login(t, p, newBrowser(t, nil), conf, "alice", "alice-pw")
		if code, body := revoke(t, clientID, clientSecret, tok.RefreshToken, false); code != 200 {
			t.Fatalf("revoke: %d %v", code, body)
		}
		if p.Active(tok.AccessToken) || p.Active(tok.RefreshToken) {
			t.Errorf("after RT revocation: AT active %v, RT active %v; want both false", p.Active(tok.AccessToken), p.Active(tok.RefreshToken))
		}
	})
	t.Run("access token only, client_secret_post", func(t *testing.T) {
		tok, _ := login(t, p, newBrowser(t, nil), conf, "alice", "alice-pw")
		if code, body := revoke(t, clientID, clientSecret, tok.AccessToken, true); code != 200 {
			t.Fatalf("revoke: %d %v", code, body)
		}
		if p.Active(tok.AccessToken) || !p.Active(tok.RefreshToken) {
			t.Errorf("after AT revocation: AT active %v, RT active %v; want false, true", p.Active(tok.AccessToken), p.Active(tok.RefreshToken))
		}
	})
	t.Run("token of another client", func(t *testing.T) {
		tok, _ := login(t, p, newBrowser(t, nil), conf, "alice", "alice-pw")
		code, body := revoke(t, otherID, otherSecret, tok.RefreshToken, false)
		if code != 400 || body["error"] != "unauthorized_client" {
			t.Errorf("revoke: %d %v, want 400 unauthorized_client", code, body)
		}
		if !p.Active(tok.RefreshToken) {
			t.Errorf("RT revoked by another client")
		}
	})
	if got := p.Stats().Revocations; got != 2 {
		t.Errorf("Revocations = %d, want 2", got)
	}
}

func TestIntrospection(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	tok, _ := login(t, p, newBrowser(t, nil), oauthConfig(p), "alice", "alice-pw")
	tests := []struct {
		name   string
		auth   func(*http.Request, url.Values)
		token  string
		status int
		active bool
	}{
		{"basic", func(r *http.Request, _ url.Values) {
			r.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
		}, tok.AccessToken, 200, true},
		{"post", func(_ *http.Request, f url.Values) {
			f.Set("client_id", clientID)
			f.Set("client_secret", clientSecret)
		}, tok.AccessToken, 200, true},
		{"no client auth", func(*http.Request, url.Values) {}, tok.AccessToken, 401, false},
		{"unknown token", func(r *http.Request, _ url.Values) { r.SetBasicAuth(otherID, otherSecret) }, "authelia_at_x.y", 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"token": {tt.token}}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+pathIntrospection, nil)
			tt.auth(req, form)
			req.Body = io.NopCloser(strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			code, body := doJSON(t, http.DefaultClient, req)
			if code != tt.status || (code == 200 && body["active"] != tt.active) {
				t.Fatalf("introspect: %d %v, want %d active=%v", code, body, tt.status, tt.active)
			}
			if tt.active {
				for k, v := range map[string]any{"client_id": clientID, "sub": Subject("alice"), "username": "alice"} {
					if body[k] != v {
						t.Errorf("%s = %v, want %v", k, body[k], v)
					}
				}
				if !strings.Contains(body["scope"].(string), "offline_access") || body["exp"] == nil {
					t.Errorf("scope, exp = %v, %v", body["scope"], body["exp"])
				}
			}
		})
	}
}

func TestLoseNextTokenResponse(t *testing.T) {
	t.Parallel()
	p, hc, tok := aliceSignedIn(t)
	p.LoseNextTokenResponse()
	code, body := refresh(t, hc, p, tok.RefreshToken)
	if code != http.StatusGatewayTimeout || len(body) != 0 {
		t.Fatalf("refresh = %d %v, want 504 with empty body", code, body)
	}
	if code, _, _ := userinfo(t, hc, p, http.MethodGet, tok.AccessToken); code != 401 {
		t.Errorf("old AT after lost refresh: %d, want 401 (the refresh committed)", code)
	}
	if code, _ := refresh(t, hc, p, tok.RefreshToken); code != 400 {
		t.Errorf("retry with the old RT: %d, want 400 (reuse)", code)
	}
	if s := p.Stats(); s.Refreshes != 1 || s.RefreshReuses != 1 {
		t.Errorf("Stats = %+v, want 1 refresh, 1 reuse", s)
	}
}

func TestSetDown(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	for _, tt := range []struct {
		down bool
		want int
	}{{true, 503}, {false, 200}} {
		p.SetDown(tt.down)
		for _, path := range []string{pathDiscovery, pathJWKS} {
			resp, err := http.Get(p.Issuer() + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("down=%v GET %s = %d, want %d", tt.down, path, resp.StatusCode, tt.want)
			}
		}
	}
}

// TestRefreshTokenLifespan runs in a synctest bubble through Transport, so fosite's time.Now is the fake clock:
// the refresh token slides with each use and dies after RefreshTokenLifespan of inactivity.
func TestRefreshTokenLifespan(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.Issuer = "http://idp.test"
		p, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		hc := newBrowser(t, p.Transport())
		tok, _ := login(t, p, hc, oauthConfig(p), "alice", "alice-pw")

		rt := tok.RefreshToken
		for i := range 2 { // sliding: each refresh restarts the 90 minutes
			time.Sleep(89 * time.Minute)
			code, body := refresh(t, hc, p, rt)
			if code != 200 {
				t.Fatalf("refresh %d after 89m: %d %v", i, code, body)
			}
			rt = body["refresh_token"].(string)
		}
		time.Sleep(91 * time.Minute)
		if p.Active(rt) {
			t.Errorf("RT active after 91m of inactivity")
		}
		code, body := refresh(t, hc, p, rt)
		if code != 400 || body["error"] != "invalid_grant" {
			t.Errorf("refresh after 91m: %d %v, want 400 invalid_grant", code, body)
		}
	})
}

func TestPromptLogin(t *testing.T) {
	t.Parallel()
	p := startIdP(t, nil)
	hc := newBrowser(t, nil)
	conf := oauthConfig(p)
	login(t, p, hc, conf, "alice", "alice-pw")
	t.Run("asks for the password again", func(t *testing.T) {
		_, err := SignIn(t.Context(), hc, newFlowParams().authURL(conf)+"&prompt=login", "alice", "wrong", true)
		if !errors.Is(err, ErrLoginRejected) {
			t.Fatalf("SignIn error = %v, want ErrLoginRejected", err)
		}
	})
	t.Run("issues a code after it", func(t *testing.T) {
		cb, err := SignIn(t.Context(), hc, newFlowParams().authURL(conf)+"&prompt=login", "alice", "alice-pw", true)
		if err != nil || cb.Query().Get("code") == "" {
			t.Fatalf("SignIn = %v, %v; want a code", cb, err)
		}
	})
}

func TestIntrospectRefreshTokenExpiry(t *testing.T) {
	t.Parallel()
	p := startIdP(t, func(o *Options) { o.RefreshTokenLifespan = 3 * time.Hour })
	tok, _ := login(t, p, newBrowser(t, nil), oauthConfig(p), "alice", "alice-pw")
	form := url.Values{"token": {tok.RefreshToken}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+pathIntrospection, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	_, body := doJSON(t, http.DefaultClient, req)
	exp, _ := body["exp"].(float64)
	if left := time.Until(time.Unix(int64(exp), 0)); left < 2*time.Hour || left > 3*time.Hour+time.Minute {
		t.Errorf("RT exp in %v, want about 3h (%v)", left, body)
	}
}

// TestSharedDevKey: IdPs built without a signing key share the process's one key (generated once), and a given key
// is used as it is.
func TestSharedDevKey(t *testing.T) {
	t.Parallel()
	jwks := func(p *IdP) string {
		t.Helper()
		resp, err := http.Get(p.Issuer() + "/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /jwks.json = %d, %v", resp.StatusCode, err)
		}
		return string(b)
	}
	a, b := jwks(startIdP(t, nil)), jwks(startIdP(t, nil))
	if a != b {
		t.Errorf("two IdPs without a signing key serve different keys:\n%s\n%s", a, b)
	}
	own, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if c := jwks(startIdP(t, func(o *Options) { o.SigningKey = own })); c == a {
		t.Error("an IdP given its own signing key serves the shared one")
	}
}

// pageRecorder records the IdP pages a browser is shown (GET requests by path).
type pageRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (rec *pageRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	rec.mu.Lock()
	rec.paths = append(rec.paths, r.Method+" "+r.URL.Path)
	rec.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// shown returns whether the browser was shown GET path since the last call, and forgets what it saw.
func (rec *pageRecorder) shown(path string) bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := false
	for _, p := range rec.paths {
		seen = seen || p == "GET "+path
	}
	rec.paths = nil
	return seen
}

// TestRememberConsent: with Options.RememberConsent an accepted consent is remembered per user, client, scopes and
// audience, so the next sign-in of the same user to the same client skips the consent page; anything else asks.
func TestRememberConsent(t *testing.T) {
	t.Parallel()
	p := startIdP(t, func(o *Options) { o.RememberConsent = true })
	conf := oauthConfig(p)
	rec := &pageRecorder{}
	hc := newBrowser(t, rec)
	signIn := func(t *testing.T, hc *http.Client, authURL, user, password string, accept bool) url.Values {
		t.Helper()
		cb, err := SignIn(t.Context(), hc, authURL, user, password, accept)
		if err != nil {
			t.Fatalf("SignIn: %v", err)
		}
		return cb.Query()
	}

	t.Run("first sign-in asks", func(t *testing.T) {
		login(t, p, hc, conf, "alice", "alice-pw")
		if !rec.shown(pathConsent) {
			t.Error("the first sign-in did not show the consent page")
		}
	})
	t.Run("second sign-in skips consent", func(t *testing.T) {
		tok, _ := login(t, p, hc, conf, "alice", "not-asked")
		if rec.shown(pathConsent) || rec.shown(pathLogin) {
			t.Error("the second sign-in showed a page")
		}
		if code, _, _ := userinfo(t, hc, p, http.MethodGet, tok.AccessToken); code != 200 {
			t.Errorf("userinfo with the token of a remembered consent = %d, want 200", code)
		}
	})
	t.Run("new browser asks the password, not consent", func(t *testing.T) {
		rec2 := &pageRecorder{}
		login(t, p, newBrowser(t, rec2), conf, "alice", "alice-pw")
		if rec2.shown(pathConsent) {
			t.Error("consent was asked again after a new login of the same user")
		}
	})
	t.Run("prompt none succeeds", func(t *testing.T) {
		f := newFlowParams()
		q := signIn(t, hc, f.authURL(conf)+"&prompt=none", "", "", true)
		if q.Get("error") != "" || q.Get("code") == "" || q.Get("state") != f.state || q.Get("iss") != p.Issuer() {
			t.Errorf("prompt=none with a remembered consent = %v, want a code with state and iss", q)
		}
	})
	t.Run("prompt consent asks", func(t *testing.T) {
		f := newFlowParams()
		q := signIn(t, hc, f.authURL(conf)+"&prompt=consent", "", "", true)
		if shown := rec.shown(pathConsent); !shown || q.Get("code") == "" {
			t.Errorf("prompt=consent: consent page shown %v, callback %v; want the page, then a code", shown, q)
		}
	})
	t.Run("other scopes ask", func(t *testing.T) {
		f := newFlowParams()
		signIn(t, hc, f.authURL(oauthConfig(p, "openid", "email")), "", "", true)
		if !rec.shown(pathConsent) {
			t.Error("a request for other scopes did not ask")
		}
		// …and that answer is remembered too.
		f = newFlowParams()
		signIn(t, hc, f.authURL(oauthConfig(p, "email", "openid")), "", "", true)
		if rec.shown(pathConsent) {
			t.Error("the same scopes in another order asked again")
		}
	})
	t.Run("other client asks", func(t *testing.T) {
		other := &oauth2.Config{ClientID: otherID, ClientSecret: otherSecret, RedirectURL: "http://127.0.0.1:9/other",
			Endpoint: conf.Endpoint, Scopes: conf.Scopes}
		f := newFlowParams()
		signIn(t, hc, f.authURL(other), "", "", true)
		if !rec.shown(pathConsent) {
			t.Error("another client did not ask")
		}
	})
	t.Run("other user asks", func(t *testing.T) {
		rec3 := &pageRecorder{}
		login(t, p, newBrowser(t, rec3), conf, "bob", "bob-pw")
		if !rec3.shown(pathConsent) {
			t.Error("bob was not asked, though only alice consented")
		}
	})
	t.Run("deny is not remembered", func(t *testing.T) {
		rec4 := &pageRecorder{}
		b := newBrowser(t, rec4)
		f := newFlowParams()
		cfg := oauthConfig(p, "openid", "profile")
		if q := signIn(t, b, f.authURL(cfg), "bob", "bob-pw", false); q.Get("error") != "access_denied" {
			t.Fatalf("deny = %v, want access_denied", q)
		}
		rec4.shown(pathConsent)
		f = newFlowParams()
		if q := signIn(t, b, f.authURL(cfg), "", "", true); q.Get("code") == "" || !rec4.shown(pathConsent) {
			t.Errorf("after a deny the next sign-in must ask again and then succeed: %v", q)
		}
	})
}

// TestPagesStyled: the sign-in and consent pages load one stylesheet from the IdP itself, which the pages' CSP allows
// (style-src 'self', nothing inline), and have no inline style or script.
func TestPagesStyled(t *testing.T) {
	t.Parallel()
	p := startIdP(t, func(o *Options) { o.RememberConsent = true })
	hc := newBrowser(t, nil)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	get := func(u string) (*http.Response, string) {
		t.Helper()
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, _ := get(newFlowParams().authURL(oauthConfig(p)))
	loginURL, err := resp.Location()
	if err != nil {
		t.Fatalf("authorization = %d without a redirect to the login page", resp.StatusCode)
	}
	resp, body := get(loginURL.String())
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="username"`) {
		t.Fatalf("login page = %d: %.300s", resp.StatusCode, body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "style-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP = %q, want default-src 'none' and style-src 'self' without unsafe-inline", csp)
	}
	if !strings.Contains(body, `<link rel="stylesheet" href="`+pathStylesheet+`">`) {
		t.Error("the login page does not link the stylesheet")
	}
	for _, inline := range []string{"<style", " style=", "<script"} {
		if strings.Contains(body, inline) {
			t.Errorf("the login page has %q", inline)
		}
	}
	resp, css := get(p.Issuer() + pathStylesheet)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(css, ".idp-card") {
		t.Errorf("GET %s = %d %q, %d bytes", pathStylesheet, resp.StatusCode, resp.Header.Get("Content-Type"), len(css))
	}
	// The consent page: the same frame, and it says the answer will be remembered.
	f, err := ParseForm([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	f.Values.Set("username", "alice")
	f.Values.Set("password", "alice-pw")
	resp, err = hc.PostForm(p.Issuer()+pathLogin, f.Values)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	consentURL, err := resp.Location()
	if err != nil {
		t.Fatalf("login = %d without a redirect", resp.StatusCode)
	}
	resp, body = get(consentURL.String())
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="accept"`) || !strings.Contains(body, pathStylesheet) || !strings.Contains(body, `id="remember"`) {
		t.Errorf("consent page = %d: %.500s", resp.StatusCode, body)
	}
}
