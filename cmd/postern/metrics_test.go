//go:build !nodemo

package main

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/postern/postern/internal/devstack/idp"
)

// TestMetrics runs Postern as serve wires it, against the dev peers: a refused and a completed sign-in, two page views
// with a refresh between them and one message sent from the compose form, then reads the key series back from the
// metrics handler. It checks the wiring: web's hooks reach the registry, the keeper, pool and store are its sources.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ta := startApp(t, io.Discard)
	ctx := ta.ctx

	// A sign-in the user cancels at the IdP.
	authURL, _ := url.Parse(ta.do(http.MethodGet, "/login", nil).Header.Get("Location"))
	state := authURL.Query().Get("state")
	ta.do(http.MethodGet, "/callback?"+url.Values{"error": {"access_denied"}, "state": {state}, "iss": {ta.dev.IdP.Issuer()}}.Encode(), nil)

	// A sign-in that works, and a page view.
	cb, err := idp.SignIn(ctx, ta.hc, ta.do(http.MethodGet, "/login", nil).Header.Get("Location"), "alice", "alice-password", true)
	if err != nil {
		t.Fatal(err)
	}
	if resp := ta.do(http.MethodGet, cb.RequestURI(), nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback = %d", resp.StatusCode)
	}
	if resp := ta.do(http.MethodGet, "/mail/INBOX", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("inbox = %d", resp.StatusCode)
	}

	// The access token is all but spent: the next page view refreshes it first.
	ta.expireSoon(ta.onlyGrant())
	if resp := ta.do(http.MethodGet, "/mail/INBOX", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("inbox after expiry = %d", resp.StatusCode)
	}
	pages, _ := scrapeMetrics(t, ta.app)

	// One message from the compose form.
	if resp := ta.do(http.MethodPost, "/send", url.Values{"to": {"bob@example.test"}, "subject": {"metrics"},
		"body": {"hello"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /send = %d", resp.StatusCode)
	}
	series, text := scrapeMetrics(t, ta.app)

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
		`postern_imap_auth_failures_total`:                                                   0,
		`postern_smtp_sends_total{outcome="ok"}`:                                             1,
		`postern_smtp_sends_total{outcome="auth_failed"}`:                                    0,
		`postern_http_request_duration_seconds_count{code="200",route="GET /mail/{box...}"}`: 2,
		`postern_http_request_duration_seconds_count{code="303",route="GET /login"}`:         2,
		`postern_http_request_duration_seconds_count{code="303",route="GET /callback"}`:      1,
		`postern_http_request_duration_seconds_count{code="400",route="GET /callback"}`:      1,
		`postern_http_request_duration_seconds_count{code="303",route="POST /send"}`:         1,
	} {
		got, ok := series[name]
		if !ok {
			t.Errorf("no series %s", name)
		} else if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// Before the send (which saves a copy in Sent over the same connection): both page views reused the IMAP login
	// that the sign-in opened in the background (mail.Pool.Warm).
	for name, want := range map[string]float64{
		`postern_imap_pool_reuses_total`:              2,
		`postern_imap_pool_connections{state="open"}`: 1,
		`postern_imap_pool_connections{state="idle"}`: 1,
	} {
		if got := pages[name]; got != want {
			t.Errorf("after the page views, %s = %v, want %v", name, got, want)
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
	g := ta.onlyGrant()
	for _, leak := range []string{"alice", "bob", "INBOX", g.AccessToken, state} {
		if strings.Contains(text, leak) {
			t.Errorf("metrics mention %q", leak)
		}
	}
}

// scrapeMetrics reads the app's metrics handler and returns every sample by its name and labels, as the text format
// writes them, and the text itself.
func scrapeMetrics(t *testing.T, a *app) (map[string]float64, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
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
