package doctor

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/devstack/mailserver"
	"github.com/postern/postern/internal/testcert"
)

const (
	publicURL = "http://127.0.0.1:8080"
	secret    = "doctor+secret/with%odd:chars"
)

// setupOptions break one thing in an otherwise correct deployment.
type setupOptions struct {
	clientScopes []string                             // the Authelia client's allowed scopes
	front        func(next http.Handler) http.Handler // a proxy in front of the IdP that rewrites answers
	mechanisms   []string                             // what the mail server offers
	certNames    []string                             // names on the mail server's certificate
	noCAFile     bool                                 // Postern does not trust the mail server's CA
	jwt          bool                                 // the IdP issues JWT access tokens; the client may ask for aud "stalwart"
	lifespan     time.Duration                        // the IdP's access-token lifetime; default 1h
}

// setup is the dev IdP and dev mail server on 127.0.0.1, with IMAP over implicit TLS and SMTP with STARTTLS, both
// with a certificate from a test CA, and the Postern configuration that works with them.
type setup struct {
	idp  *idp.IdP
	mail *mailserver.Server
	cfg  config.Config
}

func newSetup(t *testing.T, o setupOptions) *setup {
	t.Helper()
	s := &setup{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	s.idp, err = idp.New(idp.Options{
		Issuer: issuer,
		Users:  []idp.User{{Username: "alice", Password: "alice-password", Email: "alice@example.test", Name: "Alice Liddell"}},
		Clients: []idp.Client{{ID: "postern", Secret: secret, RedirectURIs: []string{publicURL + "/callback"}, Scopes: o.clientScopes,
			Audience: []string{"stalwart"}}},
		JWTAccessTokens:     o.jwt,
		AccessTokenLifespan: o.lifespan,
	})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = s.idp
	if o.front != nil {
		h = o.front(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	names := o.certNames
	if names == nil {
		names = []string{"localhost", "127.0.0.1"}
	}
	caPEM, cert := testCerts(t, names)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s.mail, err = mailserver.New(mailserver.Options{
		UserinfoURL: issuer + "/api/oidc/userinfo",
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}},
		Mechanisms:  o.mechanisms,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.mail.Close() })
	imapAddr, err := s.mail.ListenIMAPS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	smtpAddr, err := s.mail.ListenSMTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	s.cfg = config.Default()
	s.cfg.Server.PublicURL = publicURL
	s.cfg.OIDC.Issuer = issuer
	s.cfg.OIDC.ClientID = "postern"
	s.cfg.OIDC.ClientSecret = secret
	s.cfg.IMAP.Host, s.cfg.IMAP.Port, s.cfg.IMAP.TLS = "127.0.0.1", port(imapAddr), "tls"
	s.cfg.SMTP.Host, s.cfg.SMTP.Port, s.cfg.SMTP.TLS = "127.0.0.1", port(smtpAddr), "starttls"
	if !o.noCAFile {
		s.cfg.IMAP.CAFile, s.cfg.SMTP.CAFile = caFile, caFile
	}
	return s
}

func port(a net.Addr) int { return a.(*net.TCPAddr).Port }

// token signs alice in through the IdP as Postern does and returns her access token.
func (s *setup) token(t *testing.T) string { return s.tokenFor(t, nil) }

// tokenFor is token with the audience requested at sign-in.
func (s *setup) tokenFor(t *testing.T, audience []string) string {
	t.Helper()
	ctx := context.Background()
	hc := &http.Client{Timeout: 10 * time.Second}
	p, err := auth.New(ctx, auth.Config{Issuer: s.idp.Issuer(), ClientID: "postern", ClientSecret: secret,
		RedirectURL: publicURL + "/callback", Audience: audience}, hc)
	if err != nil {
		t.Fatal(err)
	}
	flow, authURL := p.Begin("/")
	jar, _ := cookiejar.New(nil)
	cb, err := idp.SignIn(ctx, &http.Client{Jar: jar, Timeout: 10 * time.Second}, authURL, "alice", "alice-password", true)
	if err != nil {
		t.Fatal(err)
	}
	login, err := p.Finish(ctx, flow, cb.Query())
	if err != nil {
		t.Fatal(err)
	}
	return login.Tokens.AccessToken
}

func (s *setup) run(t *testing.T, token string) []Result {
	t.Helper()
	rs := Run(context.Background(), &s.cfg, Options{Token: token, Timeout: 5 * time.Second})
	var b bytes.Buffer
	for _, r := range rs {
		b.WriteString(r.Status.String() + " " + r.Name + ": " + r.Detail + "\n")
		if r.Fix != "" {
			b.WriteString("    fix: " + r.Fix + "\n")
		}
	}
	t.Log("\n" + b.String())
	if token != "" && strings.Contains(b.String(), token) {
		t.Error("the doctor's output contains the token")
	}
	if strings.Contains(b.String(), secret) {
		t.Error("the doctor's output contains the client secret")
	}
	return rs
}

func find(t *testing.T, rs []Result, name string) Result {
	t.Helper()
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no result named %q", name)
	return Result{}
}

// want asserts that check name has status st and that its detail and fix contain the given texts.
func want(t *testing.T, rs []Result, name string, st Status, detail []string, fix []string) {
	t.Helper()
	r := find(t, rs, name)
	if r.Status != st {
		t.Errorf("%s: status %s, want %s (%s)", name, r.Status, st, r.Detail)
	}
	for _, s := range detail {
		if !strings.Contains(r.Detail, s) {
			t.Errorf("%s: detail %q lacks %q", name, r.Detail, s)
		}
	}
	for _, s := range fix {
		if !strings.Contains(r.Fix, s) {
			t.Errorf("%s: fix lacks %q:\n%s", name, s, r.Fix)
		}
	}
}

// onlyFailures asserts that exactly the named checks failed.
func onlyFailures(t *testing.T, rs []Result, names ...string) {
	t.Helper()
	var failed []string
	for _, r := range rs {
		if r.Status == Fail {
			failed = append(failed, r.Name)
		}
	}
	if !slices.Equal(failed, names) {
		t.Errorf("failed checks = %q, want %q", failed, names)
	}
}

func TestCorrectSetup(t *testing.T) {
	t.Parallel()
	s := newSetup(t, setupOptions{})
	rs := s.run(t, s.token(t))
	for _, r := range rs {
		if r.Status != Pass {
			t.Errorf("%s: %s %s\n%s", r.Name, r.Status, r.Detail, r.Fix)
		}
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Name
	}
	wantNames := []string{"discovery", "issuer", "endpoints", "pkce", "iss_parameter", "offline_access", "authorization",
		"client_auth", "outcome_probe", "imap", "smtp", "storage", "userinfo", "token_kind", "imap_login", "smtp_login"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("checks = %q, want %q", names, wantNames)
	}
	want(t, rs, "imap", Pass, []string{"implicit TLS", "OAUTHBEARER"}, nil)
	want(t, rs, "smtp", Pass, []string{"STARTTLS", "OAUTHBEARER"}, nil)
	want(t, rs, "userinfo", Pass, []string{`"alice"`, `"alice@example.test"`}, nil)
	want(t, rs, "outcome_probe", Pass, []string{"introspection at " + s.idp.Issuer() + "/api/oidc/introspection (from discovery)", "active: false"}, nil)
	if Failed(rs) {
		t.Error("Failed = true for a correct set-up")
	}
}

// TestTokenKind: the doctor tells an opaque token from a JWT and, for a JWT, whether Stalwart 0.16 will take it
// offline, with the Authelia client lines to change.
func TestTokenKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		jwt       bool
		lifespan  time.Duration
		requested []string // audience requested at sign-in
		config    []string // oidc.audience when the doctor runs
		st        Status
		detail    []string
		fix       []string
	}{
		{"opaque", false, 0, nil, nil, Pass, []string{"opaque access token", "one userinfo call"}, nil},
		{"jwt for stalwart", true, 5 * time.Minute, []string{"stalwart"}, []string{"stalwart"}, Pass,
			[]string{"JWT access token", `typ "at+jwt"`, `requireAudience "stalwart"`, "valid there until it expires"}, nil},
		{"jwt lasting an hour", true, time.Hour, []string{"stalwart"}, []string{"stalwart"}, Warn,
			[]string{"lifetime 1h0m0s", "keep it at most 15m0s"}, []string{"lifespans.custom.postern.access_token: '5m'"}},
		{"jwt without oidc.audience", true, 5 * time.Minute, nil, nil, Warn, []string{"oidc.audience is empty"},
			[]string{"access_token_signed_response_alg: 'RS256'", "audience: ['stalwart']", "oidc.audience: [stalwart]", `requireAudience = "stalwart"`}},
		{"jwt issued without the audience", true, 5 * time.Minute, nil, []string{"stalwart"}, Fail, []string{`aud lacks "stalwart"`},
			[]string{"audience: ['stalwart']", "requireScopes = []"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, setupOptions{jwt: tt.jwt, lifespan: tt.lifespan})
			tok := s.tokenFor(t, tt.requested)
			s.cfg.OIDC.Audience = tt.config
			rs := s.run(t, tok)
			want(t, rs, "token_kind", tt.st, tt.detail, tt.fix)
			// The dev mail server validates by userinfo here, so the logins pass whatever the kind.
			want(t, rs, "imap_login", Pass, nil, nil)
		})
	}
}

func TestWrongIssuer(t *testing.T) {
	t.Parallel()
	t.Run("host", func(t *testing.T) {
		s := newSetup(t, setupOptions{})
		real := s.cfg.OIDC.Issuer
		s.cfg.OIDC.Issuer = strings.Replace(real, "127.0.0.1", "localhost", 1)
		rs := s.run(t, "")
		want(t, rs, "issuer", Fail, []string{"the host differs", real}, []string{"X-Forwarded-Host", "one public issuer URL"})
		onlyFailures(t, rs, "issuer")
	})
	t.Run("trailing slash", func(t *testing.T) {
		s := newSetup(t, setupOptions{})
		s.cfg.OIDC.Issuer += "/"
		rs := s.run(t, "")
		want(t, rs, "issuer", Fail, []string{"trailing slash"}, []string{"issuer: " + s.idp.Issuer()})
	})
	t.Run("scheme", func(t *testing.T) {
		d := issuerDifference("https://auth.example.com", "http://auth.example.com")
		if !strings.Contains(d.what, "scheme") || !strings.Contains(d.fix, "X-Forwarded-Proto") {
			t.Errorf("issuerDifference = %+v", d)
		}
	})
}

func TestOfflineAccessMissing(t *testing.T) {
	t.Parallel()
	t.Run("client scopes", func(t *testing.T) {
		s := newSetup(t, setupOptions{clientScopes: []string{"openid", "profile", "email"}})
		rs := s.run(t, "")
		want(t, rs, "authorization", Fail, []string{"invalid_scope"},
			[]string{"In Authelia's client 'postern'", "scopes: ['openid', 'offline_access', 'profile', 'email']"})
		onlyFailures(t, rs, "authorization")
	})
	t.Run("discovery", func(t *testing.T) {
		front := rewriteDiscovery(func(m map[string]any) {
			m["scopes_supported"] = []string{"openid", "profile", "email"}
		})
		s := newSetup(t, setupOptions{front: front})
		rs := s.run(t, "")
		want(t, rs, "offline_access", Fail, []string{"lacks offline_access"}, []string{"refresh tokens"})
		onlyFailures(t, rs, "offline_access")
	})
}

func TestDiscoveryWarnings(t *testing.T) {
	t.Parallel()
	front := rewriteDiscovery(func(m map[string]any) {
		delete(m, "authorization_response_iss_parameter_supported")
		m["code_challenge_methods_supported"] = []string{"plain"}
	})
	s := newSetup(t, setupOptions{front: front})
	rs := s.run(t, "")
	want(t, rs, "iss_parameter", Warn, []string{"RFC 9207"}, []string{"upgrade Authelia"})
	want(t, rs, "pkce", Fail, []string{"without S256"}, []string{"pkce_challenge_method: 'S256'"})
}

// autheliaPostClient answers the token endpoint like Authelia 4.39 for a client registered with
// token_endpoint_auth_method: client_secret_post (the dev IdP registers every confidential client for
// client_secret_basic). The description is Authelia's own text.
func autheliaPostClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/api/oidc/token" && r.Header.Get("Authorization") != "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{
				"error": "invalid_client",
				"error_description": "Client authentication failed (e.g., unknown client, no client authentication included, " +
					"or unsupported authentication method). The request was determined to be using 'token_endpoint_auth_method' " +
					"method 'client_secret_basic', however the OAuth 2.0 client registration does not allow this method. The " +
					"registered client with id 'postern' is configured to only support 'token_endpoint_auth_method' method " +
					"'client_secret_post'. Either the Authorization Server client registration will need to have the " +
					"'token_endpoint_auth_method' updated to 'client_secret_basic' or the Relying Party will need to be " +
					"configured to use 'client_secret_post'.",
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func TestClientAuthentication(t *testing.T) {
	t.Parallel()
	t.Run("wrong method", func(t *testing.T) {
		s := newSetup(t, setupOptions{front: autheliaPostClient})
		rs := s.run(t, "")
		want(t, rs, "client_auth", Fail, []string{"wrong client authentication method", "'client_secret_post'"},
			[]string{"In Authelia's client 'postern'", "token_endpoint_auth_method: 'client_secret_basic'"})
		onlyFailures(t, rs, "client_auth")
	})
	t.Run("wrong secret", func(t *testing.T) {
		s := newSetup(t, setupOptions{})
		s.cfg.OIDC.ClientSecret = "not-the-secret"
		rs := s.run(t, "")
		want(t, rs, "client_auth", Fail, []string{"wrong client secret", "invalid_client"},
			[]string{"oidc.client_secret", "authelia crypto hash generate pbkdf2", "client_secret: '$pbkdf2-sha512$"})
		onlyFailures(t, rs, "client_auth")
	})
	t.Run("unknown client", func(t *testing.T) {
		s := newSetup(t, setupOptions{})
		s.cfg.OIDC.ClientID = "webmail"
		rs := s.run(t, "")
		want(t, rs, "client_auth", Fail, []string{`unknown client "webmail"`}, []string{"oidc.client_id"})
		want(t, rs, "authorization", Fail, nil, []string{"oidc.client_id"})
	})
	t.Run("redirect uri", func(t *testing.T) {
		s := newSetup(t, setupOptions{})
		// Loopback redirect URIs match on any port (RFC 8252 §7.3), so change the host.
		s.cfg.Server.PublicURL = "http://localhost:8080"
		rs := s.run(t, "")
		want(t, rs, "authorization", Fail, nil, []string{"redirect_uris:", "- 'http://localhost:8080/callback'"})
	})
}

func TestMailMechanisms(t *testing.T) {
	t.Parallel()
	t.Run("no OAUTHBEARER", func(t *testing.T) {
		s := newSetup(t, setupOptions{mechanisms: []string{"PLAIN"}})
		rs := s.run(t, "")
		want(t, rs, "imap", Fail, []string{"offers AUTH PLAIN, not OAUTHBEARER"},
			[]string{`[directory."authelia"]`, `endpoint.method = "userinfo"`, "issuerUrl"})
		want(t, rs, "smtp", Fail, []string{"not OAUTHBEARER"}, []string{"[session.auth]", "oauthbearer"})
		onlyFailures(t, rs, "imap", "smtp")
	})
	t.Run("xoauth2 on Stalwart 0.11", func(t *testing.T) {
		s := newSetup(t, setupOptions{mechanisms: []string{"OAUTHBEARER"}})
		s.cfg.IMAP.SASL = "xoauth2"
		rs := s.run(t, "")
		want(t, rs, "imap", Fail, []string{"not XOAUTH2", "Stalwart 0.11"}, []string{"sasl: oauthbearer"})
		want(t, rs, "smtp", Pass, nil, nil)
	})
}

func TestMailTLS(t *testing.T) {
	t.Parallel()
	t.Run("name mismatch", func(t *testing.T) {
		s := newSetup(t, setupOptions{certNames: []string{"mail.example.test"}})
		rs := s.run(t, "")
		for _, name := range []string{"imap", "smtp"} {
			want(t, rs, name, Fail, []string{"TLS certificate name mismatch", "valid for mail.example.test, not 127.0.0.1"},
				[]string{"Set " + name + ".host to a name on the certificate (mail.example.test)"})
		}
		onlyFailures(t, rs, "imap", "smtp")
	})
	t.Run("unknown authority", func(t *testing.T) {
		s := newSetup(t, setupOptions{noCAFile: true})
		rs := s.run(t, "")
		want(t, rs, "imap", Fail, []string{"authority Postern does not trust"}, []string{"Set imap.ca_file"})
		want(t, rs, "smtp", Fail, []string{"authority Postern does not trust"}, []string{"Set smtp.ca_file"})
	})
	t.Run("implicit TLS against a plain port", func(t *testing.T) {
		s := newSetup(t, setupOptions{})
		s.cfg.SMTP.TLS = "tls"
		rs := s.run(t, "")
		want(t, rs, "smtp", Fail, []string{"did not answer with TLS"}, []string{"smtp.tls: starttls"})
	})
	t.Run("refused", func(t *testing.T) {
		s := newSetup(t, setupOptions{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.cfg.IMAP.Port = port(ln.Addr())
		ln.Close()
		rs := s.run(t, "")
		want(t, rs, "imap", Fail, []string{"connection refused"}, []string{"imap.host and imap.port"})
	})
}

func TestIdPDown(t *testing.T) {
	t.Parallel()
	s := newSetup(t, setupOptions{})
	s.idp.SetDown(true)
	rs := s.run(t, "")
	want(t, rs, "discovery", Fail, []string{"HTTP 503"}, nil)
	want(t, rs, "client_auth", Skip, nil, nil)
	want(t, rs, "outcome_probe", Skip, nil, nil)
	want(t, rs, "imap", Pass, nil, nil)
}

// TestOutcomeProbe: which probe Postern has after a lost refresh answer, with the scheme of the other checks.
func TestOutcomeProbe(t *testing.T) {
	noIntrospection := rewriteDiscovery(func(m map[string]any) { delete(m, "introspection_endpoint") })
	t.Run("userinfo fallback", func(t *testing.T) {
		s := newSetup(t, setupOptions{front: noIntrospection})
		rs := s.run(t, "")
		want(t, rs, "outcome_probe", Warn, []string{"no introspection_endpoint", "userinfo"}, []string{"introspection_url:"})
		onlyFailures(t, rs)
	})
	t.Run("configured, as for Hydra", func(t *testing.T) {
		s := newSetup(t, setupOptions{front: noIntrospection})
		s.cfg.OIDC.IntrospectionURL = s.idp.Issuer() + "/api/oidc/introspection"
		rs := s.run(t, "")
		want(t, rs, "outcome_probe", Pass, []string{"(from oidc.introspection_url)", "active: false"}, nil)
		onlyFailures(t, rs)
	})
	t.Run("configured, wrong path", func(t *testing.T) {
		s := newSetup(t, setupOptions{})
		s.cfg.OIDC.IntrospectionURL = s.idp.Issuer() + "/admin/oauth2/introspect"
		rs := s.run(t, "")
		want(t, rs, "outcome_probe", Fail, []string{"HTTP 404"}, []string{"/admin/oauth2/introspect"})
		onlyFailures(t, rs, "outcome_probe")
	})
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		s := newSetup(t, setupOptions{})
		s.cfg.OIDC.IntrospectionURL = "http://" + addr + "/admin/oauth2/introspect"
		rs := s.run(t, "")
		want(t, rs, "outcome_probe", Fail, []string{"connection refused"}, []string{"reach the introspection endpoint"})
	})
	t.Run("skipped after failed client authentication", func(t *testing.T) {
		s := newSetup(t, setupOptions{})
		s.cfg.OIDC.ClientSecret = "wrong"
		rs := s.run(t, "")
		want(t, rs, "outcome_probe", Skip, []string{"client authentication failed"}, nil)
	})
}

func TestTokenRefusedByMailServer(t *testing.T) {
	t.Parallel()
	// A mail server whose directory asks another URL than the issuer's userinfo refuses every token.
	s := newSetup(t, setupOptions{})
	tok := s.token(t)
	other, err := mailserver.New(mailserver.Options{UserinfoURL: s.idp.Issuer() + "/api/oidc/nowhere"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	a, err := other.ListenIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.IMAP.TLS, s.cfg.IMAP.Port, s.cfg.IMAP.CAFile = "none", port(a), ""
	rs := s.run(t, tok)
	want(t, rs, "userinfo", Pass, nil, nil)
	want(t, rs, "imap_login", Fail, nil, []string{"same public issuer", "endpoint.url = \"" + s.idp.Issuer() + "/api/oidc/userinfo\""})
	want(t, rs, "smtp_login", Pass, nil, nil)
}

// rewriteDiscovery returns a front that edits the discovery document.
func rewriteDiscovery(edit func(map[string]any)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/openid-configuration" {
				next.ServeHTTP(w, r)
				return
			}
			rec := &bufferWriter{header: http.Header{}}
			next.ServeHTTP(rec, r)
			var m map[string]any
			if err := json.Unmarshal(rec.body.Bytes(), &m); err != nil {
				http.Error(w, "bad discovery", http.StatusInternalServerError)
				return
			}
			edit(m)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(m)
		})
	}
}

type bufferWriter struct {
	header http.Header
	body   bytes.Buffer
}

func (b *bufferWriter) Header() http.Header         { return b.header }
func (b *bufferWriter) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferWriter) WriteHeader(int)             {}

// testCerts issues a CA and a leaf for names; it returns the CA's PEM and the leaf.
func testCerts(t *testing.T, names []string) (caPEM []byte, cert tls.Certificate) {
	t.Helper()
	p := testcert.New(t, names...)
	return p.CAPEM, p.Cert
}
