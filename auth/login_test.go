package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/postern/postern/internal/devstack/idp"
	"golang.org/x/oauth2"
)

const (
	testClientID = "postern"
	// The secret has characters RFC 6749 §2.3.1 form-urlencoding changes, so
	// the sign-in tests prove the basic auth header is escaped.
	testSecret   = "s3cret+/:% ok"
	testRedirect = "http://127.0.0.1:9/oauth2/callback"
)

// testKey is shared by every dev IdP of the package: RSA key generation is
// the slowest part of starting one.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

type devEnv struct {
	idp *idp.IdP
	p   *Provider
	hc  *http.Client // with a cookie jar, for idp.SignIn
}

// newDevEnv starts the dev IdP on 127.0.0.1 and a Provider for it. wrap, if
// not nil, wraps the Provider's transport (to tamper with responses).
func newDevEnv(t *testing.T, scopes []string, wrap func(http.RoundTripper) http.RoundTripper) *devEnv {
	t.Helper()
	ip, err := idp.Start("127.0.0.1:0", idp.Options{
		Users: []idp.User{
			{Username: "ann", Password: "pw-ann", Email: "Ann@Example.org", Name: "Ann Example"},
			{Username: "nomail", Password: "pw-nomail"},
		},
		Clients:    []idp.Client{{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}}},
		SigningKey: testKey(),
	})
	if err != nil {
		t.Fatalf("idp.Start() = %v", err)
	}
	t.Cleanup(func() { ip.Close() })
	var rt http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
	if wrap != nil {
		rt = wrap(rt)
	}
	p, err := New(context.Background(), Config{
		Issuer: ip.Issuer(), ClientID: testClientID, ClientSecret: testSecret,
		RedirectURL: testRedirect, Scopes: scopes,
	}, &http.Client{Transport: rt, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	jar, _ := cookiejar.New(nil)
	return &devEnv{idp: ip, p: p, hc: &http.Client{Jar: jar, Timeout: 5 * time.Second}}
}

// authorize runs Begin and drives the IdP's login and consent pages, and
// returns the flow and the callback query.
func (e *devEnv) authorize(t *testing.T, user string, accept bool) (Flow, url.Values) {
	t.Helper()
	f, authURL := e.p.Begin("/inbox")
	hc := e.hc
	if user != "ann" {
		// A browser of its own: the IdP would otherwise reuse ann's session.
		jar, _ := cookiejar.New(nil)
		hc = &http.Client{Jar: jar, Timeout: 5 * time.Second}
	}
	loc, err := idp.SignIn(context.Background(), hc, authURL, user, "pw-"+user, accept)
	if err != nil {
		t.Fatalf("idp.SignIn() = %v", err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		t.Fatalf("IdP redirected to %q, want the redirect URL", got)
	}
	return f, loc.Query()
}

// login completes a full sign-in as ann.
func (e *devEnv) login(t *testing.T) *Login {
	t.Helper()
	f, q := e.authorize(t, "ann", true)
	l, err := e.p.Finish(context.Background(), f, q)
	if err != nil {
		t.Fatalf("Finish() = %v", err)
	}
	return l
}

func TestBegin(t *testing.T) {
	e := newDevEnv(t, nil, nil)
	f, u := e.p.Begin("/mail/INBOX")
	f2, _ := e.p.Begin("/")
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := parsed.Query()
	want := map[string]string{
		"response_type":         "code",
		"client_id":             testClientID,
		"redirect_uri":          testRedirect,
		"scope":                 "openid profile email offline_access",
		"state":                 f.State,
		"nonce":                 f.Nonce,
		"code_challenge":        oauth2.S256ChallengeFromVerifier(f.Verifier),
		"code_challenge_method": "S256",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("authorization URL %s = %q, want %q", k, q.Get(k), v)
		}
	}
	for name, v := range map[string]string{"state": f.State, "nonce": f.Nonce, "verifier": f.Verifier} {
		if len(v) != 43 { // 256 bits, base64url without padding
			t.Errorf("%s has %d characters, want 43", name, len(v))
		}
	}
	if f.State == f2.State || f.Nonce == f2.Nonce || f.Verifier == f2.Verifier || f.State == f.Nonce {
		t.Error("Begin() reused a random value")
	}
	if f.ReturnTo != "/mail/INBOX" || time.Since(f.Created) > time.Minute {
		t.Errorf("Begin() flow = ReturnTo %q, Created %v", f.ReturnTo, f.Created)
	}
}

func TestFinishSignIn(t *testing.T) {
	e := newDevEnv(t, nil, nil)
	f, q := e.authorize(t, "ann", true)
	if q.Get("iss") != e.idp.Issuer() || !e.p.SupportsIssParameter() {
		t.Fatalf("callback iss = %q, advertised %v; the dev IdP should send RFC 9207 iss", q.Get("iss"), e.p.SupportsIssParameter())
	}
	l, err := e.p.Finish(context.Background(), f, q)
	if err != nil {
		t.Fatalf("Finish() = %v", err)
	}
	want := Identity{Issuer: e.idp.Issuer(), Subject: idp.Subject("ann"), Email: "Ann@Example.org", Username: "ann", Name: "Ann Example"}
	if l.Identity != want {
		t.Errorf("Finish() identity = %+v, want %+v", l.Identity, want)
	}
	tok := l.Tokens
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.IDToken == "" || !l.Offline() {
		t.Errorf("Finish() tokens incomplete: access %v, refresh %v, id %v", tok.AccessToken != "", tok.RefreshToken != "", tok.IDToken != "")
	}
	if d := time.Until(tok.Expiry); d < 55*time.Minute || d > 61*time.Minute {
		t.Errorf("access token expires in %v, want about 1h", d)
	}
	if !e.idp.Active(tok.AccessToken) || !e.idp.Active(tok.RefreshToken) {
		t.Error("the IdP does not consider the new tokens active")
	}
	if s := e.idp.Stats(); s.CodeExchanges != 1 || s.UserinfoRequests != 1 {
		t.Errorf("Stats() = %+v, want one code exchange and one userinfo call", s)
	}

	// A second sign-in reuses the IdP's session: consent only.
	if l2 := e.login(t); l2.Identity.Subject != l.Identity.Subject || l2.Tokens.RefreshToken == tok.RefreshToken {
		t.Errorf("second sign-in = %+v, want the same subject and a new grant", l2.Identity)
	}
}

func TestFinishWithoutOfflineAccess(t *testing.T) {
	e := newDevEnv(t, []string{"openid", "profile", "email"}, nil)
	l := e.login(t)
	if l.Offline() || l.Tokens.RefreshToken != "" || l.Tokens.AccessToken == "" {
		t.Errorf("Finish() without offline_access: Offline() = %v, want false and an access token only", l.Offline())
	}
	if _, err := e.p.Refresh(context.Background(), l.Tokens.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Errorf("Refresh(\"\") = %v, want ErrInvalidGrant", err)
	}
}

// TestFinishChecks tampers with a real callback, one check at a time.
func TestFinishChecks(t *testing.T) {
	e := newDevEnv(t, nil, nil)
	tests := []struct {
		name     string
		deny     bool
		user     string
		tamper   func(f *Flow, q url.Values)
		wantCode string
		wantErr  error
		reason   string
	}{
		{name: "empty flow", tamper: func(f *Flow, q url.Values) { *f = Flow{} },
			wantCode: "flow_expired", wantErr: ErrFlowExpired, reason: "expired or was already used"},
		{name: "expired flow", tamper: func(f *Flow, q url.Values) { f.Created = time.Now().Add(-11 * time.Minute) },
			wantCode: "flow_expired", wantErr: ErrFlowExpired},
		{name: "wrong state", tamper: func(f *Flow, q url.Values) { q.Set("state", strings.Repeat("A", 43)) },
			wantCode: "state_mismatch", wantErr: ErrStateMismatch},
		{name: "missing state", tamper: func(f *Flow, q url.Values) { q.Del("state") },
			wantCode: "state_mismatch", wantErr: ErrStateMismatch},
		{name: "repeated state", tamper: func(f *Flow, q url.Values) { q.Add("state", q.Get("state")) },
			wantCode: "invalid_request"},
		{name: "wrong iss", tamper: func(f *Flow, q url.Values) { q.Set("iss", "https://attacker.example") },
			wantCode: "issuer_mismatch", wantErr: ErrIssuerMismatch},
		{name: "iss with trailing slash", tamper: func(f *Flow, q url.Values) { q.Set("iss", q.Get("iss")+"/") },
			wantCode: "issuer_mismatch", wantErr: ErrIssuerMismatch},
		{name: "missing iss while advertised", tamper: func(f *Flow, q url.Values) { q.Del("iss") },
			wantCode: "issuer_mismatch", wantErr: ErrIssuerMismatch},
		{name: "wrong nonce", tamper: func(f *Flow, q url.Values) { f.Nonce = strings.Repeat("B", 43) },
			wantCode: "nonce_mismatch", wantErr: ErrNonceMismatch},
		// RFC 7636 §4.6: the IdP checks the verifier against the challenge.
		{name: "wrong verifier", tamper: func(f *Flow, q url.Values) { f.Verifier = oauth2.GenerateVerifier() },
			wantCode: "invalid_grant", reason: "already used or has expired"},
		{name: "missing code", tamper: func(f *Flow, q url.Values) { q.Del("code") },
			wantCode: "invalid_request"},
		{name: "access denied", deny: true,
			wantCode: "access_denied", reason: "You declined access"},
		{name: "access denied, forged iss", deny: true, tamper: func(f *Flow, q url.Values) { q.Set("iss", "https://attacker.example") },
			wantCode: "issuer_mismatch", wantErr: ErrIssuerMismatch},
		{name: "no email", user: "nomail",
			wantCode: "no_email", wantErr: ErrNoEmail, reason: "no email address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := tt.user
			if user == "" {
				user = "ann"
			}
			f, q := e.authorize(t, user, !tt.deny)
			if tt.tamper != nil {
				tt.tamper(&f, q)
			}
			_, err := e.p.Finish(context.Background(), f, q)
			var ce *CallbackError
			if !errors.As(err, &ce) {
				t.Fatalf("Finish() = %v, want a *CallbackError", err)
			}
			if ce.Code != tt.wantCode {
				t.Errorf("Finish() code = %q, want %q (err %v)", ce.Code, tt.wantCode, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Finish() = %v, want errors.Is %v", err, tt.wantErr)
			}
			if tt.reason != "" && !strings.Contains(ce.Reason, tt.reason) {
				t.Errorf("Finish() reason = %q, want it to contain %q", ce.Reason, tt.reason)
			}
			assertNoSecrets(t, err.Error()+" "+ce.Reason, f, q)
		})
	}
}

// assertNoSecrets fails if msg contains any of the flow's or callback's secret values.
func assertNoSecrets(t *testing.T, msg string, f Flow, q url.Values) {
	t.Helper()
	for name, v := range map[string]string{"state": f.State, "nonce": f.Nonce, "verifier": f.Verifier, "code": q.Get("code"), "callback state": q.Get("state")} {
		if len(v) >= 8 && strings.Contains(msg, v) {
			t.Errorf("error %q contains the %s", msg, name)
		}
	}
}

// TestFinishReplayedCode runs the same callback twice: the code is single-use
// (RFC 6749 §4.1.2), and a reused one revokes what it issued (§10.5).
func TestFinishReplayedCode(t *testing.T) {
	e := newDevEnv(t, nil, nil)
	f, q := e.authorize(t, "ann", true)
	l, err := e.p.Finish(context.Background(), f, q)
	if err != nil {
		t.Fatalf("first Finish() = %v", err)
	}
	_, err = e.p.Finish(context.Background(), f, q)
	var ce *CallbackError
	if !errors.As(err, &ce) || ce.Code != "invalid_grant" {
		t.Fatalf("second Finish() = %v, want a CallbackError with code invalid_grant", err)
	}
	assertNoSecrets(t, err.Error(), f, q)
	if e.idp.Active(l.Tokens.RefreshToken) {
		t.Error("the refresh token from the replayed code is still active")
	}
}

// TestPKCERequired shows the IdP refuses an authorization request without a
// code_challenge (RFC 7636 §4.4.1), and that Finish reports it.
func TestPKCERequired(t *testing.T) {
	e := newDevEnv(t, nil, nil)
	f, _ := e.p.Begin("/")
	authURL := e.p.oauth.AuthCodeURL(f.State, oidc.Nonce(f.Nonce)) // no S256ChallengeOption
	loc, err := idp.SignIn(context.Background(), e.hc, authURL, "ann", "pw-ann", true)
	if err != nil {
		t.Fatalf("idp.SignIn() = %v", err)
	}
	q := loc.Query()
	if q.Get("error") != "invalid_request" || q.Has("code") {
		t.Fatalf("callback = %v, want error=invalid_request and no code", q)
	}
	_, err = e.p.Finish(context.Background(), f, q)
	var ce *CallbackError
	if !errors.As(err, &ce) || ce.Code != "invalid_request" || !strings.Contains(ce.Reason, "administrator") {
		t.Errorf("Finish() = %v, want a CallbackError invalid_request pointing at the client settings", err)
	}
}

// TestClientSecretPostRejected shows the IdP accepts only client_secret_basic
// at the token endpoint, which is why the Provider pins AuthStyleInHeader.
func TestClientSecretPostRejected(t *testing.T) {
	e := newDevEnv(t, nil, nil)
	f, q := e.authorize(t, "ann", true)
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {testRedirect},
		"code_verifier": {f.Verifier}, "client_id": {testClientID}, "client_secret": {testSecret},
	}
	resp, err := http.Post(e.p.oauth.Endpoint.TokenURL, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusUnauthorized || body.Error != "invalid_client" {
		t.Errorf("client_secret_post token request = %d %q, want 401 invalid_client", resp.StatusCode, body.Error)
	}
}

// rewriter is a man in the middle between the Provider and the IdP: it edits
// the JSON answers of one endpoint.
type rewriter struct {
	next http.RoundTripper
	path string
	edit func(map[string]any)
}

func (rw rewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rw.next.RoundTrip(r)
	if err != nil || r.URL.Path != rw.path || resp.StatusCode != 200 {
		return resp, err
	}
	var claims map[string]any
	json.NewDecoder(resp.Body).Decode(&claims)
	resp.Body.Close()
	rw.edit(claims)
	b, _ := json.Marshal(claims)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// TestFinishTampered edits the IdP's answers in transit.
func TestFinishTampered(t *testing.T) {
	tests := []struct {
		name, path string
		edit       func(map[string]any)
		wantCode   string
		wantErr    error
	}{
		// OIDC Core §5.3.2: userinfo about someone else must be refused.
		{"userinfo sub", "/api/oidc/userinfo", func(c map[string]any) { c["sub"] = "someone-else" },
			"sub_mismatch", ErrSubjectMismatch},
		// OIDC Core §3.1.3.8: the access token must match the ID token's at_hash.
		{"swapped access token", "/api/oidc/token", func(c map[string]any) { c["access_token"] = "authelia_at_other" },
			"at_hash_mismatch", nil},
		{"no id token", "/api/oidc/token", func(c map[string]any) { delete(c, "id_token") },
			"invalid_id_token", nil},
		{"forged id token", "/api/oidc/token", func(c map[string]any) {
			parts := strings.Split(c["id_token"].(string), ".")
			c["id_token"] = parts[0] + "." + parts[1] + ".c2lnbmF0dXJl"
		}, "invalid_id_token", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newDevEnv(t, nil, func(next http.RoundTripper) http.RoundTripper {
				return rewriter{next: next, path: tt.path, edit: tt.edit}
			})
			f, q := e.authorize(t, "ann", true)
			_, err := e.p.Finish(context.Background(), f, q)
			var ce *CallbackError
			if !errors.As(err, &ce) || ce.Code != tt.wantCode {
				t.Fatalf("Finish() = %v, want a CallbackError with code %s", err, tt.wantCode)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Finish() = %v, want errors.Is %v", err, tt.wantErr)
			}
		})
	}
}

// TestRefreshDevIdP runs the refresh classes against the dev IdP, which
// rotates like Authelia (protocol-notes B.1).
func TestRefreshDevIdP(t *testing.T) {
	ctx := context.Background()
	t.Run("rotation and reuse", func(t *testing.T) {
		e := newDevEnv(t, nil, nil)
		l := e.login(t)
		ts, err := e.p.Refresh(ctx, l.Tokens.RefreshToken)
		if err != nil {
			t.Fatalf("Refresh() = %v", err)
		}
		if ts.RefreshToken == l.Tokens.RefreshToken || ts.AccessToken == l.Tokens.AccessToken || ts.IDToken == "" {
			t.Error("Refresh() did not rotate the tokens")
		}
		if d := time.Until(ts.Expiry); d < 55*time.Minute || d > 61*time.Minute {
			t.Errorf("refreshed access token expires in %v, want about 1h", d)
		}
		if e.idp.Active(l.Tokens.RefreshToken) || e.idp.Active(l.Tokens.AccessToken) || !e.idp.Active(ts.RefreshToken) {
			t.Error("after rotation the old tokens should be dead and the new refresh token active")
		}
		id, err := e.p.UserInfo(ctx, ts.AccessToken)
		if err != nil || id.Subject != l.Identity.Subject {
			t.Errorf("UserInfo(new access token) = %+v, %v", id, err)
		}
		if _, err := e.p.UserInfo(ctx, l.Tokens.AccessToken); !errors.Is(err, ErrTokenRejected) {
			t.Errorf("UserInfo(old access token) = %v, want ErrTokenRejected", err)
		}

		// Reuse of the rotated token: invalid_grant, and the IdP revokes the family.
		_, err = e.p.Refresh(ctx, l.Tokens.RefreshToken)
		if !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("Refresh(old refresh token) = %v, want ErrInvalidGrant", err)
		}
		if strings.Contains(err.Error(), l.Tokens.RefreshToken) {
			t.Error("the error contains the refresh token")
		}
		if e.idp.Active(ts.RefreshToken) {
			t.Error("reuse should have revoked the whole grant")
		}
	})
	t.Run("outage is transient", func(t *testing.T) {
		e := newDevEnv(t, nil, nil)
		l := e.login(t)
		e.idp.SetDown(true)
		_, err := e.p.Refresh(ctx, l.Tokens.RefreshToken)
		e.idp.SetDown(false)
		if !errors.Is(err, ErrTransient) {
			t.Fatalf("Refresh() while down = %v, want ErrTransient", err)
		}
		if _, err := e.p.Refresh(ctx, l.Tokens.RefreshToken); err != nil {
			t.Errorf("Refresh() after the outage with the same token = %v, want success", err)
		}
	})
	t.Run("lost response is unknown", func(t *testing.T) {
		e := newDevEnv(t, nil, nil)
		l := e.login(t)
		e.idp.LoseNextTokenResponse()
		if _, err := e.p.Refresh(ctx, l.Tokens.RefreshToken); !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("Refresh() with a lost response = %v, want ErrOutcomeUnknown", err)
		}
		// The probe the keeper uses: the old access token died with the
		// rotation, so the refresh committed.
		if _, err := e.p.UserInfo(ctx, l.Tokens.AccessToken); !errors.Is(err, ErrTokenRejected) {
			t.Errorf("UserInfo(old access token) = %v, want ErrTokenRejected", err)
		}
	})
	t.Run("connection refused is transient", func(t *testing.T) {
		e := newDevEnv(t, nil, nil)
		l := e.login(t)
		e.idp.Close()
		// Forget the kept-alive connection of the sign-in. A request on a
		// reused connection that the server closes is ErrOutcomeUnknown:
		// the client cannot tell whether it was processed first.
		e.p.hc.CloseIdleConnections()
		if _, err := e.p.Refresh(ctx, l.Tokens.RefreshToken); !errors.Is(err, ErrTransient) {
			t.Errorf("Refresh() against a closed IdP = %v, want ErrTransient", err)
		}
	})
	t.Run("in-process transport", func(t *testing.T) {
		e := newDevEnv(t, nil, nil)
		l := e.login(t)
		q := *e.p
		q.hc = &http.Client{Transport: e.idp.Transport()}
		if _, err := q.Refresh(ctx, l.Tokens.RefreshToken); err != nil {
			t.Errorf("Refresh() through Transport() = %v", err)
		}
	})
}

func TestRevoke(t *testing.T) {
	tests := []struct {
		name, hint string
		refresh    bool
	}{
		{"refresh token", "refresh_token", true},
		{"refresh token without hint", "", true},
		{"access token", "access_token", false},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newDevEnv(t, nil, nil)
			l := e.login(t)
			tok := l.Tokens.AccessToken
			if tt.refresh {
				tok = l.Tokens.RefreshToken
			}
			if err := e.p.Revoke(ctx, tok, tt.hint); err != nil {
				t.Fatalf("Revoke() = %v", err)
			}
			if e.idp.Active(tok) || e.idp.Active(l.Tokens.AccessToken) {
				t.Error("revoked token, or the grant's access token, still active")
			}
			// Authelia: revoking the refresh token ends the grant; revoking
			// the access token leaves the refresh token (protocol-notes B.2).
			if got := e.idp.Active(l.Tokens.RefreshToken); got == tt.refresh {
				t.Errorf("refresh token active = %v after revoking the %s", got, tt.name)
			}
			if _, err := e.p.UserInfo(ctx, l.Tokens.AccessToken); !errors.Is(err, ErrTokenRejected) {
				t.Errorf("UserInfo() after revocation = %v, want ErrTokenRejected", err)
			}
			// RFC 7009 §2.2: revoking an unknown or dead token is still a 200.
			if err := e.p.Revoke(ctx, tok, tt.hint); err != nil {
				t.Errorf("second Revoke() = %v, want nil", err)
			}
		})
	}
}

// TestCallbackCodes: the list is complete (every CallbackCode constant in
// errors.go is in it, once) and covers every code Finish produces itself.
func TestCallbackCodes(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[CallbackCode]bool{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "CallbackCode" {
				continue
			}
			for _, v := range vs.Values {
				lit := v.(*ast.BasicLit)
				c, _ := strconv.Unquote(lit.Value)
				declared[CallbackCode(c)] = true
			}
		}
	}
	listed := map[CallbackCode]bool{}
	for _, c := range CallbackCodes() {
		if listed[c] {
			t.Errorf("CallbackCodes() lists %q twice", c)
		}
		listed[c] = true
		if !declared[c] {
			t.Errorf("CallbackCodes() lists %q, which is no constant in errors.go", c)
		}
	}
	for c := range declared {
		if !listed[c] {
			t.Errorf("constant %q missing from CallbackCodes()", c)
		}
	}
	for c := range errorReasons {
		if !listed[CallbackCode(c)] {
			t.Errorf("errorReasons code %q missing from CallbackCodes()", c)
		}
	}
	if c := CallbackCode(safeCode("bad code!")); !listed[c] {
		t.Errorf("safeCode's replacement %q missing from CallbackCodes()", c)
	}
}
