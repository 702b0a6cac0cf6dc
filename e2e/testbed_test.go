//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/postern/postern/internal/devstack/idp"
)

// testbed is what scripts/testbed-up wrote to $TB/env: where the peers
// listen, the CA that signed their certificates and the OAuth clients.
type testbed struct {
	Dir                        string
	Issuer, HydraAdmin         string
	CAFile                     string
	MailHost                   string
	IMAPStartTLSPort, IMAPPort int
	SubmissionStartTLSPort     int
	SubmissionPort             int
	PostfixSubmissionPort      int
	ClientID, ClientSecret     string
	RedirectURL                string
	ShortClientID, ShortSecret string
	ShortRedirectURL           string
	ShortTTL, RefreshLifetime  time.Duration
	HydraLog, DovecotLog       string
	// IntrospectionURL is Hydra's RFC 7662 endpoint on its admin port, which Hydra's discovery does not advertise
	// (Postern's oidc.introspection_url); HydraPIDFile holds the PID of Hydra's process, for tests that freeze it.
	IntrospectionURL, HydraPIDFile string
	// JWTClientID etc. are the client whose access tokens are JWTs with aud JWTAudience; DovecotKeys is the
	// directory of Dovecot's local_validation_key_dict, where installDovecotKeys writes Hydra's public keys.
	JWTClientID, JWTSecret, JWTRedirectURL, JWTAudience string
	DovecotKeys                                         string
	roots                                               *x509.CertPool
	discoveryOnce                                       sync.Once
	endpoints                                           oidcEndpoints
	discoveryErr                                        error
}

var (
	tbOnce sync.Once
	tb     *testbed
	tbErr  error
)

// testbedDir is where scripts/testbed-up keeps its state.
func testbedDir() string {
	if d := os.Getenv("TB"); d != "" {
		return d
	}
	return "/var/tmp/postern-testbed"
}

// peers returns the running testbed, or skips the test with instructions
// when it is not up: the suite needs Hydra, Dovecot and Postfix, which only
// scripts/testbed-up provides.
func peers(t *testing.T) *testbed {
	t.Helper()
	tbOnce.Do(func() { tb, tbErr = loadTestbed(filepath.Join(testbedDir(), "env")) })
	if errors.Is(tbErr, os.ErrNotExist) {
		t.Skipf("testbed is not up (%v): run scripts/testbed-up as root first (TB=%s)", tbErr, testbedDir())
	}
	if tbErr != nil {
		t.Fatalf("testbed env: %v", tbErr)
	}
	return tb
}

func loadTestbed(path string) (*testbed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: bad line %q", path, line)
		}
		kv[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var problems []string
	str := func(k string) string {
		v := kv[k]
		if v == "" {
			problems = append(problems, k+" missing")
		}
		return v
	}
	num := func(k string) int {
		var n int
		if _, err := fmt.Sscan(str(k), &n); err != nil {
			problems = append(problems, k+" not a number")
		}
		return n
	}
	dur := func(k string) time.Duration {
		d, err := time.ParseDuration(str(k))
		if err != nil {
			problems = append(problems, k+" not a duration")
		}
		return d
	}
	t := &testbed{
		Dir: str("TB"), Issuer: str("TB_ISSUER"), HydraAdmin: str("TB_HYDRA_ADMIN"),
		CAFile: str("TB_CA_FILE"), MailHost: str("TB_MAIL_HOST"),
		IMAPStartTLSPort: num("TB_IMAP_STARTTLS_PORT"), IMAPPort: num("TB_IMAP_TLS_PORT"),
		SubmissionStartTLSPort: num("TB_SUBMISSION_STARTTLS_PORT"), SubmissionPort: num("TB_SUBMISSION_TLS_PORT"),
		PostfixSubmissionPort: num("TB_POSTFIX_SUBMISSION_PORT"),
		ClientID:              str("TB_CLIENT_ID"), ClientSecret: str("TB_CLIENT_SECRET"), RedirectURL: str("TB_REDIRECT_URL"),
		ShortClientID: str("TB_SHORT_CLIENT_ID"), ShortSecret: str("TB_SHORT_CLIENT_SECRET"),
		ShortRedirectURL: str("TB_SHORT_REDIRECT_URL"), ShortTTL: dur("TB_SHORT_TTL"),
		RefreshLifetime: dur("TB_REFRESH_TOKEN_LIFETIME"),
		HydraLog:        str("TB_HYDRA_LOG"), DovecotLog: str("TB_DOVECOT_LOG"),
		IntrospectionURL: str("TB_INTROSPECTION_URL"), HydraPIDFile: str("TB_HYDRA_PID_FILE"),
		JWTClientID: str("TB_JWT_CLIENT_ID"), JWTSecret: str("TB_JWT_CLIENT_SECRET"),
		JWTRedirectURL: str("TB_JWT_REDIRECT_URL"), JWTAudience: str("TB_JWT_AUDIENCE"), DovecotKeys: str("TB_DOVECOT_KEYS"),
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, ", "))
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("testbed CA: %w", err)
	}
	t.roots = x509.NewCertPool()
	if !t.roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", t.CAFile)
	}
	return t, nil
}

// tlsConfig trusts only the testbed's throwaway CA.
func (tb *testbed) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: tb.roots, MinVersion: tls.VersionTLS12}
}

// client is an OAuth client registered at Hydra by testbed-up.
type client struct{ ID, Secret, RedirectURL string }

func (tb *testbed) postern() client {
	return client{tb.ClientID, tb.ClientSecret, tb.RedirectURL}
}

func (tb *testbed) short() client {
	return client{tb.ShortClientID, tb.ShortSecret, tb.ShortRedirectURL}
}

// oidcEndpoints is the part of Hydra's discovery document the tests use.
type oidcEndpoints struct {
	Issuer        string `json:"issuer"`
	Authorization string `json:"authorization_endpoint"`
	Token         string `json:"token_endpoint"`
	UserInfo      string `json:"userinfo_endpoint"`
	Revocation    string `json:"revocation_endpoint"`
}

// discovery reads the provider's metadata once (OIDC Discovery 1.0 §4).
func (tb *testbed) discovery(t *testing.T) oidcEndpoints {
	t.Helper()
	tb.discoveryOnce.Do(func() {
		var ep oidcEndpoints
		tb.discoveryErr = getJSON(context.Background(), tb.Issuer+"/.well-known/openid-configuration", &ep)
		tb.endpoints = ep
	})
	if tb.discoveryErr != nil {
		t.Fatalf("discovery: %v", tb.discoveryErr)
	}
	return tb.endpoints
}

// httpClient has a bounded timeout, so that a hung peer fails the test
// instead of stalling it until the go test deadline.
var httpClient = &http.Client{Timeout: 15 * time.Second}

func getJSON(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// tokens is what a direct authorization-code flow returns.
type tokens struct {
	Access, Refresh, ID string
	Expiry              time.Time
}

// directLogin runs an authorization-code flow with PKCE S256 for user
// without Postern: the test plays the client, drives Hydra's login page with
// form posts and exchanges the code with client_secret_basic. It gives the
// tests their own tokens (for example to submit mail as bob), separate from
// any grant Postern holds.
func (tb *testbed) directLogin(t *testing.T, c client, user, password string, opts ...oauth2.AuthCodeOption) tokens {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ep := tb.discovery(t)
	conf := &oauth2.Config{
		ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: c.RedirectURL,
		Endpoint: oauth2.Endpoint{AuthURL: ep.Authorization, TokenURL: ep.Token, AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   []string{"openid", "profile", "email", "offline_access"},
	}
	verifier := oauth2.GenerateVerifier()
	state, nonce := randomString(), randomString()
	opts = append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce)}, opts...)
	authURL := conf.AuthCodeURL(state, opts...)

	b := newBrowser(t)
	// Stop at the redirect URI: nothing listens there (Postern may not run),
	// and the code is all the test needs.
	b.hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), c.RedirectURL) {
			return http.ErrUseLastResponse
		}
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		return nil
	}
	resp, _ := b.signInForm(ctx, t, authURL, user, password)
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("sign-in as %s did not end at the redirect URI: status %d at %s", user, resp.StatusCode, resp.Request.URL)
	}
	q := loc.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("authorization error %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state {
		t.Fatalf("callback state = %q, want the one sent", q.Get("state"))
	}
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, httpClient), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange for %s: %v", user, err)
	}
	id, _ := tok.Extra("id_token").(string)
	if tok.RefreshToken == "" {
		t.Fatalf("code exchange for %s: no refresh token (offline_access)", user)
	}
	return tokens{Access: tok.AccessToken, Refresh: tok.RefreshToken, ID: id, Expiry: tok.Expiry}
}

func randomString() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// introspection is Hydra's answer at the admin introspection endpoint
// (RFC 7662).
type introspection struct {
	Active   bool   `json:"active"`
	ClientID string `json:"client_id"`
	Subject  string `json:"sub"`
	TokenUse string `json:"token_use"` // Hydra: "access_token" or "refresh_token"
}

// introspect asks Hydra's admin API whether token is active. Refresh tokens
// can be introspected there too, which is how the tests see at the IdP that a
// sign-out really revoked the grant.
func (tb *testbed) introspect(t *testing.T, token string) introspection {
	t.Helper()
	form := url.Values{"token": {token}}
	resp, err := httpClient.PostForm(tb.HydraAdmin+"/admin/oauth2/introspect", form)
	if err != nil {
		t.Fatalf("introspect: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: status %d", resp.StatusCode)
	}
	var in introspection
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil {
		t.Fatalf("introspect: %v", err)
	}
	return in
}

// revoke revokes token at Hydra (RFC 7009) with client_secret_basic.
func (tb *testbed) revoke(t *testing.T, c client, token string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, tb.discovery(t).Revocation, strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: status %d", resp.StatusCode)
	}
}

// logMark is a position in a peer's log file, so that a test reads only
// what was written while it ran.
type logMark struct {
	path string
	off  int64
}

func markLog(t *testing.T, path string) logMark {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("log %s: %v", path, err)
	}
	return logMark{path, fi.Size()}
}

// quietLog waits until the log at path has not grown for quiet, or until limit has passed (said in the test's log,
// so that a failure after it shows that the mark may include lines of what was still running).
func quietLog(t *testing.T, path string, quiet, limit time.Duration) {
	t.Helper()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("log %s: %v", path, err)
		}
		return fi.Size()
	}
	last, since := size(), time.Now()
	for end := time.Now().Add(limit); time.Since(since) < quiet; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Logf("log %s still growing after %v", path, limit)
			return
		}
		if n := size(); n != last {
			last, since = n, time.Now()
		}
	}
}

// since returns what was appended to the log after the mark.
func (m logMark) since(t *testing.T) string {
	t.Helper()
	f, err := os.Open(m.path)
	if err != nil {
		t.Fatalf("log %s: %v", m.path, err)
	}
	defer f.Close()
	if _, err := f.Seek(m.off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// browser is an HTTP client with a cookie jar that fills forms: enough of a
// browser for Hydra's login flow and Postern's pages (which need no
// JavaScript). Chromium comes later.
type browser struct {
	hc *http.Client
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{hc: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// get fetches u, following redirects, and returns the final response with
// its body read.
func (b *browser) get(ctx context.Context, t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

func (b *browser) post(ctx context.Context, t *testing.T, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(t, req)
}

func (b *browser) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := b.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatalf("%s %s: read: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}

// signInForm opens start (a Postern page or an authorization URL), expects
// to land on the testbed's login page, fills in the form the way a user
// would (ids username, password, submit, like the dev IdP) and posts it. It
// returns the response that ends the redirect chain: a Postern page, or,
// when CheckRedirect stops early, the redirect to the client.
func (b *browser) signInForm(ctx context.Context, t *testing.T, start, user, password string) (*http.Response, string) {
	t.Helper()
	resp, page := b.get(ctx, t, start)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: ended at %s with status %d, want the login page", start, resp.Request.URL, resp.StatusCode)
	}
	f, err := idp.ParseForm([]byte(page))
	if err != nil {
		t.Fatalf("login page %s: %v", resp.Request.URL, err)
	}
	for _, id := range []string{"username", "password", "submit"} {
		if !f.IDs[id] {
			t.Fatalf("login page %s has no element with id %q", resp.Request.URL, id)
		}
	}
	action, err := resp.Request.URL.Parse(f.Action)
	if err != nil {
		t.Fatalf("login form action: %v", err)
	}
	f.Values.Set("username", user)
	f.Values.Set("password", password)
	resp, page = b.post(ctx, t, action.String(), f.Values)
	if resp.StatusCode == http.StatusUnauthorized {
		t.Fatalf("login as %s refused", user)
	}
	return resp, page
}

// assertNoSecrets fails if any of secrets appears in text: tokens must never
// reach a log, whatever the level.
func assertNoSecrets(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if len(s) < 8 {
			continue
		}
		if strings.Contains(text, s) {
			t.Errorf("%s contains a token (%d chars, prefix %.6s…)", what, len(s), s)
		}
	}
}

// eventually retries f every interval until it returns nil or the timeout
// passes, and returns the last error.
func eventually(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}
