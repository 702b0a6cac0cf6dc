package web

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/devices"
	"github.com/postern/postern/internal/devstack"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/devstack/mailserver"
	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/mail"
)

// stack is Postern wired as cmd wires it, against the dev IdP and dev mail server on 127.0.0.1.
type stack struct {
	idp    *idp.IdP
	mail   *mailserver.Server
	store  *store.SQLite
	dbPath string
	keeper *auth.Keeper
	pool   *mail.Pool
	web    *Server
	ts     *httptest.Server
	// smtp is the dev mail server's submission listener, which Config.Sender sends through.
	smtp     net.Addr
	imapAddr string // the dev IMAP server, for benchmarks that bypass Postern
	// devices and closed are the device service and the closed-device recorder, with withBridge.
	devices *devices.Service
	closed  *closedDevices
}

// stackOptions adjust newStack for one test.
type stackOptions struct {
	maxUpload int64
	sender    Sender
	// maxDevices is devices.Options.MaxPerUser (0: its default).
	maxDevices int
	quota      int64
	pool       mail.PoolOptions
	stall      time.Duration
	bridge     Bridge
	demo       bool
	warm       bool
}

// stackOption is an option of newStack.
type stackOption func(*stackOptions)

// withMaxUpload sets Config.MaxUpload.
func withMaxUpload(n int64) stackOption { return func(o *stackOptions) { o.maxUpload = n } }

// withWarmOnSignIn turns on Config.WarmOnSignIn.
func withWarmOnSignIn() stackOption { return func(o *stackOptions) { o.warm = true } }

// withSender replaces the SMTP sender, e.g. with one that fails.
func withSender(snd Sender) stackOption { return func(o *stackOptions) { o.sender = snd } }

// withPool sets the IMAP pool's options (its caps).
func withPool(p mail.PoolOptions) stackOption { return func(o *stackOptions) { o.pool = p } }

// withStallTimeout sets Config.StallTimeout.
func withStallTimeout(d time.Duration) stackOption { return func(o *stackOptions) { o.stall = d } }

// withBridge enables the Devices page with a device service on the stack's store and the bridge at b.
func withBridge(b Bridge) stackOption { return func(o *stackOptions) { o.bridge = b } }

// withMaxDevices caps each user's live devices (bridge.max_devices_per_user).
func withMaxDevices(n int) stackOption { return func(o *stackOptions) { o.maxDevices = n } }

// withDemo runs the stack as the demo does: the mail server accepts any recipient (mail to strangers is kept in the
// sender's Outbound folder) and every page carries the demo's banner.
func withDemo() stackOption { return func(o *stackOptions) { o.demo = true } }

// withQuota gives every account of the dev mail server a storage quota (APPEND over it fails with OVERQUOTA).
func withQuota(bytes int64) stackOption { return func(o *stackOptions) { o.quota = bytes } }

const clientSecret = "a+secret/with%odd:chars"

func newStack(t testing.TB, opts ...stackOption) *stack {
	t.Helper()
	ctx := context.Background()
	s := &stack{}
	var o stackOptions
	for _, opt := range opts {
		opt(&o)
	}
	s.ts = httptest.NewUnstartedServer(nil)
	public, _ := url.Parse("http://" + s.ts.Listener.Addr().String())

	var err error
	s.idp, err = idp.Start("127.0.0.1:0", idp.Options{
		Users: []idp.User{
			{Username: "alice", Password: "alice-password", Email: "alice@example.test", Name: "Alice Liddell"},
			{Username: "bob", Password: "bob-password", Email: "bob@example.test", Name: "Bob Marley"},
		},
		Clients: []idp.Client{{ID: "postern", Secret: clientSecret, RedirectURIs: []string{RedirectURL(public)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.idp.Close() })

	s.mail, err = mailserver.New(mailserver.Options{UserinfoURL: s.idp.Issuer() + "/api/oidc/userinfo", QuotaBytes: o.quota, Outbound: o.demo})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.mail.Close() })
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		if err := s.mail.Seed(u); err != nil {
			t.Fatal(err)
		}
	}
	imapAddr, err := s.mail.ListenIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.smtp, err = s.mail.ListenSMTP("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if o.sender == nil {
		smtpHost, smtpPort := splitHostPort(t, s.smtp.String())
		o.sender = SMTPSender{Server: mail.Server{Host: smtpHost, Port: smtpPort, TLS: mail.TLSNone}}
	}

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, err := seal.New(map[string][]byte{"1": key}, "1")
	if err != nil {
		t.Fatal(err)
	}
	s.dbPath = filepath.Join(t.TempDir(), "postern.db")
	s.store, err = store.OpenSQLite(ctx, s.dbPath, sealer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.store.Close() })

	prov, err := auth.New(ctx, auth.Config{
		Issuer: s.idp.Issuer(), ClientID: "postern", ClientSecret: clientSecret, RedirectURL: RedirectURL(public),
	}, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.keeper = auth.NewKeeper(prov, s.store, auth.KeeperOptions{})
	s.imapAddr = imapAddr.String()
	host, port := splitHostPort(t, imapAddr.String())
	s.pool = mail.NewPool(mail.Server{Host: host, Port: port, TLS: mail.TLSNone}, o.pool)
	t.Cleanup(func() { s.pool.Close() })

	s.devices = devices.New(s.store, &devices.Options{MaxPerUser: o.maxDevices})
	s.closed = &closedDevices{}
	var banner string
	if o.demo {
		banner = devstack.OutboundNote
	}
	s.web, err = New(Config{
		Banner:        banner,
		Devices:       s.devices,
		Bridge:        o.bridge,
		DeviceCloser:  s.closed,
		Settings:      s.store,
		PublicURL:     public,
		IssuerOrigin:  s.idp.Issuer(),
		SessionSecret: []byte("0123456789abcdef0123456789abcdef-test"),
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sender:        o.sender,
		MaxUpload:     o.maxUpload,
		WarmOnSignIn:  o.warm,
		StallTimeout:  o.stall,
	}, prov, s.keeper, s.pool, s.store)
	if err != nil {
		t.Fatal(err)
	}
	s.ts.Config.Handler = s.web
	// The server's timeouts as cmd sets them, but shorter, so that the slow-client tests end in seconds (the
	// compose form's extension, withUploadTime, keeps its production length).
	ConfigureTimeouts(s.ts.Config)
	s.ts.Config.ReadHeaderTimeout, s.ts.Config.ReadTimeout = 2*time.Second, 4*time.Second
	s.ts.Start()
	t.Cleanup(s.ts.Close)
	return s
}

// browser is a cookie-keeping client that does not follow redirects, so tests see every hop.
type browser struct {
	t  testing.TB
	hc *http.Client
}

func newBrowser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, hc: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	status   int
	location string
	body     string
	header   http.Header
}

func (b *browser) do(req *http.Request) response {
	b.t.Helper()
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(body), header: resp.Header}
}

func (b *browser) get(u string) response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// startLogin asks Postern for /login and returns the IdP authorization URL it redirects to.
func (s *stack) startLogin(b *browser, returnTo string) string {
	b.t.Helper()
	r := b.get(s.ts.URL + "/login?return_to=" + url.QueryEscape(returnTo))
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, s.idp.Issuer()) {
		b.t.Fatalf("GET /login = %d to %q, want 303 to the IdP", r.status, r.location)
	}
	return r.location
}

// signIn runs the whole browser sign-in and returns the callback response.
func (s *stack) signIn(b *browser, user, returnTo string) response {
	b.t.Helper()
	authURL := s.startLogin(b, returnTo)
	cb, err := idp.SignIn(context.Background(), b.hc, authURL, user, user+"-password", true)
	if err != nil {
		b.t.Fatalf("sign in at the IdP: %v", err)
	}
	return b.get(cb.String())
}

func splitHostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	u, err := url.Parse("imap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	var port int
	for _, c := range u.Port() {
		port = port*10 + int(c-'0')
	}
	return u.Hostname(), port
}

func newJar() (http.CookieJar, error) { return cookiejar.New(nil) }
