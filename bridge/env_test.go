package bridge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/postern/postern/internal/devstack"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/devstack/mailserver"
	"github.com/postern/postern/internal/testcert"
	"github.com/postern/postern/mail"
)

const (
	alice       = "alice@example.test"
	bob         = "bob@example.test"
	alicePW     = "ABCD-EFGH-alice-device"
	bobPW       = "ABCD-EFGH-bob-device"
	redirectURL = "http://127.0.0.1:9/oauth2/callback"
)

// testAuth is the Authenticator of the tests: a map of device passwords to grants whose tokens come from a real
// sign-in at the dev IdP, renewed with the refresh token when the mail server refuses one.
type testAuth struct {
	mu       sync.Mutex
	devices  map[string]Login // username + NUL + password
	grants   map[string]*grantTokens
	signIn   map[string]bool // device ids whose grant needs a sign-in
	verifies atomic.Int64
}

type grantTokens struct {
	conf    *oauth2.Config
	address string
	mu      sync.Mutex
	tok     *oauth2.Token
	ended   bool
	tokens  atomic.Int64 // Token calls
}

func (a *testAuth) Verify(_ context.Context, username, password string, _ netip.Addr) (Login, error) {
	a.verifies.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.devices[username+"\x00"+password]
	if !ok {
		return Login{}, ErrBadCredentials
	}
	if a.signIn[l.DeviceID] {
		return Login{}, ErrSignInAgain
	}
	return l, nil
}

func (a *testAuth) Tokens(grantID string) mail.TokenSource {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.grants[grantID]
}

func (g *grantTokens) Token(context.Context) (mail.Credentials, error) {
	g.tokens.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended {
		return mail.Credentials{}, mail.ErrNoCredentials
	}
	return mail.Credentials{Address: g.address, Token: g.tok.AccessToken}, nil
}

func (g *grantTokens) Replace(ctx context.Context, rejected mail.Credentials) (mail.Credentials, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended {
		return mail.Credentials{}, mail.ErrNoCredentials
	}
	if g.tok.AccessToken == rejected.Token {
		tok, err := g.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: g.tok.RefreshToken}).Token()
		if err != nil {
			return mail.Credentials{}, err
		}
		g.tok = tok
	}
	return mail.Credentials{Address: g.address, Token: g.tok.AccessToken}, nil
}

// env is the dev IdP and mail server with the bridge in front.
type env struct {
	stack  *devstack.Stack
	auth   *testAuth
	bridge *Server
	client *tls.Config // trusts the bridge's certificate
	// imaps, imap, smtps, smtp are the bridge's listeners.
	imaps, imap, smtps, smtp string
	// directPort is the mail server's own implicit-TLS IMAP port, in benchmarks (benchEnv).
	directPort        int
	certFile, keyFile string
	// delays are the failure delays the bridge would have waited.
	delays atomic.Int64
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	certFile, keyFile, client := writeCert(t)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := devstack.Start(devstack.Options{
		// The mail server can serve TLS with the bridge's pair too, for the benchmark's direct side.
		Mail:         mailserver.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}}},
		RedirectURIs: []string{redirectURL},
		Users: []idp.User{
			{Username: "alice", Password: "alice-pw", Email: alice, Name: "Alice"},
			{Username: "bob", Password: "bob-pw", Email: bob, Name: "Bob"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e := &env{stack: st, auth: &testAuth{devices: map[string]Login{}, grants: map[string]*grantTokens{}, signIn: map[string]bool{}}}
	for _, u := range []struct{ user, pw, addr, device string }{{"alice", alicePW, alice, "dev-alice"}, {"bob", bobPW, bob, "dev-bob"}} {
		g := e.signIn(t, u.user, u.addr)
		grant := "grant-" + u.user
		e.auth.grants[grant] = g
		e.auth.devices[u.addr+"\x00"+u.pw] = Login{DeviceID: u.device, GrantID: grant, Address: u.addr}
	}
	e.certFile, e.keyFile, e.client = certFile, keyFile, client
	opts.Auth = e.auth
	opts.IMAP = mail.Server{Host: "127.0.0.1", Port: st.IMAP.(*net.TCPAddr).Port, TLS: mail.TLSNone, DialTimeout: 5 * time.Second}
	opts.Submission = mail.Server{Host: "127.0.0.1", Port: st.SMTP.(*net.TCPAddr).Port, TLS: mail.TLSNone, DialTimeout: 5 * time.Second}
	opts.CertFile, opts.KeyFile = e.certFile, e.keyFile
	if opts.PublicURL == "" {
		opts.PublicURL = "https://postern.example.test/"
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	b.sleep = func(_ context.Context, d time.Duration) { e.delays.Add(int64(d)) }
	t.Cleanup(func() { b.Close() })
	e.bridge = b
	for _, l := range []struct {
		serve func(net.Listener) error
		addr  *string
	}{{b.ServeIMAPS, &e.imaps}, {b.ServeIMAP, &e.imap}, {b.ServeSubmissions, &e.smtps}, {b.ServeSubmission, &e.smtp}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		*l.addr = ln.Addr().String()
		go l.serve(ln)
	}
	return e
}

// signIn runs the authorization code flow at the dev IdP as Postern's device flow would and returns the grant.
func (e *env) signIn(t testing.TB, user, addr string) *grantTokens {
	t.Helper()
	conf := &oauth2.Config{
		ClientID: devstack.ClientID, ClientSecret: e.stack.ClientSecret, RedirectURL: redirectURL,
		Scopes: []string{"openid", "offline_access", "profile", "email"},
		Endpoint: oauth2.Endpoint{
			AuthURL: e.stack.IdP.Issuer() + "/api/oidc/authorization", TokenURL: e.stack.IdP.Issuer() + "/api/oidc/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	verifier := oauth2.GenerateVerifier()
	state := rand.Text()
	cb, err := idp.SignIn(ctx, hc, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), user, user+"-pw", true)
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return &grantTokens{conf: conf, address: addr, tok: tok}
}

// upstreamAuths is the number of AUTHENTICATEs the mail server has seen (IMAP and SMTP).
func (e *env) upstreamAuths() int64 { return e.stack.Mail.Stats().AuthAttempts }

// writeCert writes a certificate for 127.0.0.1 and localhost and its key as PEM files and returns a client
// configuration that trusts it.
func writeCert(t testing.TB) (certFile, keyFile string, client *tls.Config) {
	t.Helper()
	p := testcert.New(t, "127.0.0.1", "localhost")
	_, certFile, keyFile = p.Write(t, t.TempDir(), "")
	// The certificate file carries the chain (leaf, then CA), as a deployed one does; the Python and curl clients
	// are given it as their CA file and find the CA in it.
	if err := os.WriteFile(certFile, append(p.CertPEM, p.CAPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, &tls.Config{RootCAs: p.Pool, ServerName: "127.0.0.1"}
}
