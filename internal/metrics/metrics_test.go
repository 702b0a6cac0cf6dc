package metrics_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/devstack/mailserver"
	"github.com/postern/postern/internal/metrics"
	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/mail"
	"github.com/postern/postern/web"
)

const clientSecret = "metrics-test-secret"

// TestScrape wires Postern as cmd does, against the dev IdP and mail server, goes through a refused and a completed
// sign-in, two page views with a refresh between them and one SMTP submission, and reads the key series back from
// the metrics endpoint.
func TestScrape(t *testing.T) {
	ctx := context.Background()
	ts := httptest.NewUnstartedServer(nil)
	public, _ := url.Parse("http://" + ts.Listener.Addr().String())

	p, err := idp.Start("127.0.0.1:0", idp.Options{
		Users:   []idp.User{{Username: "alice", Password: "alice-password", Email: "alice@example.test", Name: "Alice"}},
		Clients: []idp.Client{{ID: "postern", Secret: clientSecret, RedirectURIs: []string{web.RedirectURL(public)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ms, err := mailserver.New(mailserver.Options{UserinfoURL: p.Issuer() + "/api/oidc/userinfo"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	if err := ms.Seed("alice@example.test"); err != nil {
		t.Fatal(err)
	}
	imapAddr, err := ms.ListenIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	smtpAddr, err := ms.ListenSMTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, _ := seal.New(map[string][]byte{"1": key}, "1")
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "postern.db"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prov, err := auth.New(ctx, auth.Config{Issuer: p.Issuer(), ClientID: "postern", ClientSecret: clientSecret,
		RedirectURL: web.RedirectURL(public)}, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	keeper := auth.NewKeeper(prov, st, auth.KeeperOptions{})
	pool := mail.NewPool(server(t, imapAddr), mail.PoolOptions{})
	t.Cleanup(func() { pool.Close() })

	m := metrics.New(metrics.Sources{Keeper: keeper.Metrics, Pool: pool.Stats, Grants: st.CountGrantsByState, Version: "test"})
	sender := m.CountSends(web.SMTPSender{Server: server(t, smtpAddr)})
	w, err := web.New(web.Config{
		PublicURL: public, IssuerOrigin: p.Issuer(), SessionSecret: []byte("0123456789abcdef0123456789abcdef-test"),
		Sender: sender,
	}, m.CountSignIns(prov), keeper, pool, st)
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = m.Middleware(w.RoutePattern)(w)
	ts.Start()
	t.Cleanup(ts.Close)

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) *http.Response {
		t.Helper()
		resp, err := hc.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	// A sign-in the user cancels at the IdP.
	authURL, _ := url.Parse(get("/login").Header.Get("Location"))
	state := authURL.Query().Get("state")
	get("/callback?" + url.Values{"error": {"access_denied"}, "state": {state}, "iss": {p.Issuer()}}.Encode())

	// A sign-in that works, and a page view.
	cb, err := idp.SignIn(ctx, hc, get("/login").Header.Get("Location"), "alice", "alice-password", true)
	if err != nil {
		t.Fatal(err)
	}
	if resp := get(cb.RequestURI()); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback = %d", resp.StatusCode)
	}
	if resp := get("/mail/INBOX"); resp.StatusCode != http.StatusOK {
		t.Fatalf("inbox = %d", resp.StatusCode)
	}

	// The access token is all but spent: the next page view waits for a refresh (a view with a token still usable
	// would get that one and leave the refresh running behind it).
	ids, err := st.DueGrants(ctx, time.Now().Add(1000*time.Hour), 10)
	if err != nil || len(ids) != 1 {
		t.Fatalf("DueGrants = %v, %v", ids, err)
	}
	g, err := st.Grant(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	g.AccessExpiry, g.LastRefresh = time.Now().Add(5*time.Second), time.Now().Add(-time.Hour)
	if _, err := st.UpdateGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	if resp := get("/mail/INBOX"); resp.StatusCode != http.StatusOK {
		t.Fatalf("inbox after expiry = %d", resp.StatusCode)
	}

	// One submission.
	tok, err := keeper.Token(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: alice@example.test\r\nTo: alice@example.test\r\nSubject: metrics\r\n\r\nhello\r\n"
	if err := sender.Send(ctx, mail.Credentials{Address: tok.Address, Token: tok.Access}, tok.Address,
		[]string{"alice@example.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}

	series, text := scrape(t, m)
	for name, want := range map[string]float64{
		`postern_sign_ins_total`:                                                             1,
		`postern_sign_in_failures_total{reason="access_denied"}`:                             1,
		`postern_sign_in_failures_total{reason="state_mismatch"}`:                            0,
		`postern_token_refresh_attempts_total`:                                               1,
		`postern_token_refreshes_total{outcome="ok"}`:                                        1,
		`postern_token_refreshes_total{outcome="invalid_grant"}`:                             0,
		`postern_token_probes_total{result="inactive"}`:                                      0,
		`postern_grants_sign_in_required_total{reason="refresh_spent"}`:                      0,
		`postern_grants_abandoned_total`:                                                     0,
		`postern_grants{state="ok"}`:                                                         1,
		`postern_grants{state="degraded"}`:                                                   0,
		`postern_grants{state="needs_sign_in"}`:                                              0,
		`postern_imap_logins_total`:                                                          1,
		`postern_imap_pool_reuses_total`:                                                     1,
		`postern_imap_auth_failures_total`:                                                   0,
		`postern_imap_pool_connections{state="open"}`:                                        1,
		`postern_imap_pool_connections{state="idle"}`:                                        1,
		`postern_smtp_sends_total{outcome="ok"}`:                                             1,
		`postern_smtp_sends_total{outcome="auth_failed"}`:                                    0,
		`postern_http_request_duration_seconds_count{code="200",route="GET /mail/{box...}"}`: 2,
		`postern_http_request_duration_seconds_count{code="303",route="GET /login"}`:         2,
		`postern_http_request_duration_seconds_count{code="303",route="GET /callback"}`:      1,
		`postern_http_request_duration_seconds_count{code="400",route="GET /callback"}`:      1,
	} {
		got, ok := series[name]
		if !ok {
			t.Errorf("no series %s", name)
		} else if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if v := series[`postern_http_request_duration_seconds_sum{code="200",route="GET /mail/{box...}"}`]; !(v > 0 && v < 20) {
		t.Errorf("mailbox request time sum = %v s, want a plausible duration", v)
	}
	for _, prefix := range []string{`postern_build_info{goversion="go`, "go_goroutines ", "process_"} {
		if !strings.Contains(text, "\n"+prefix) {
			t.Errorf("no series starting %q", prefix)
		}
	}
	for _, leak := range []string{"alice", "INBOX", tok.Access, state} {
		if strings.Contains(text, leak) {
			t.Errorf("metrics mention %q", leak)
		}
	}
}

func server(t *testing.T, a net.Addr) mail.Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(port)
	return mail.Server{Host: host, Port: n, TLS: mail.TLSNone}
}

// scrape reads the metrics endpoint and returns every sample by its name and labels, as the text format writes them.
func scrape(t *testing.T, m *metrics.Metrics) (map[string]float64, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics = %d", rec.Code)
	}
	text := rec.Body.String()
	series := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		series[line[:i]] = v
	}
	return series, "\n" + text
}

func TestServe(t *testing.T) {
	m := metrics.New(metrics.Sources{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln, nil) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "postern_build_info") {
		t.Errorf("/metrics = %d:\n%s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Serve did not stop")
	}
}
