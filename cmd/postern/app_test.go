//go:build !nodemo

package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/devstack"
	"github.com/postern/postern/internal/store"
)

// testApp is Postern as newApp wires it, against the demo's dev peers (an IdP shaped like Authelia, a mail server
// that checks tokens like Stalwart), serving on a loopback port until stop or the end of the test.
type testApp struct {
	*app
	t    *testing.T
	ctx  context.Context
	dev  *devstack.Stack
	cfg  *config.Config
	base string
	// hc keeps cookies and does not follow redirects, so a test sees each 303.
	hc  *http.Client
	jar http.CookieJar

	stopOnce sync.Once
	stop     func()
}

// startApp starts the dev peers and Postern. Everything (Postern, IdP, mail server) logs at debug level to logs.
func startApp(t *testing.T, logs io.Writer) *testApp {
	t.Helper()
	ctx := t.Context()
	debug := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta := &testApp{t: t, ctx: ctx, base: "http://" + ln.Addr().String()}
	ta.dev, err = startDevstack(ta.base, debug)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ta.dev.Close)
	ta.cfg, err = demoConfig(ta.dev, ta.base, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ta.cfg.Log.Level = "debug"
	ta.app, err = newApp(ctx, ta.cfg, newLogger(ta.cfg, logs), &http.Client{Timeout: 10 * time.Second}, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ta.handler()}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ta.stop = background(t, "serve", func(ctx context.Context) error { return ta.serve(ctx, srv, errc) }, nil)
	t.Cleanup(ta.Stop)

	ta.jar, _ = cookiejar.New(nil)
	ta.hc = &http.Client{Jar: ta.jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return ta
}

// background runs fn in a goroutine until the returned stop cancels its context; stop then waits for fn to return
// (at most 20 s) and reports its error. what names fn in failures; more, when not nil, adds to them (such as the
// command's stderr).
func background(t *testing.T, what string, fn func(ctx context.Context) error, more func() string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	return func() {
		cancel()
		extra := ""
		select {
		case err := <-done:
			if err == nil {
				return
			}
			if more != nil {
				extra = "\n" + more()
			}
			t.Errorf("%s returned %v%s", what, err, extra)
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop within 20 s of cancellation", what)
		}
	}
}

// Stop shuts Postern down as a signal would and waits for serve to return; later calls do nothing.
func (ta *testApp) Stop() { ta.stopOnce.Do(ta.stop) }

// onlyGrant returns the one grant in the store, as stored.
func (ta *testApp) onlyGrant() store.Grant {
	ta.t.Helper()
	ids, err := ta.store.DueGrants(ta.ctx, time.Now().Add(1000*time.Hour), 10)
	if err != nil || len(ids) != 1 {
		ta.t.Fatalf("DueGrants = %v, %v; want one grant", ids, err)
	}
	g, err := ta.store.Grant(ta.ctx, ids[0])
	if err != nil {
		ta.t.Fatal(err)
	}
	return g
}

// expireSoon leaves g's access token all but spent (5 s), so that the next page view waits for a refresh (a view with
// a token still usable would get that one and leave the refresh running behind it).
func (ta *testApp) expireSoon(g store.Grant) {
	ta.t.Helper()
	g.AccessExpiry, g.LastRefresh = time.Now().Add(5*time.Second), time.Now().Add(-time.Hour)
	if _, err := ta.store.UpdateGrant(ta.ctx, g); err != nil {
		ta.t.Fatal(err)
	}
}

// do sends one request; form, when not nil, is the body of a POST. The body of the answer is read and discarded.
func (ta *testApp) do(method, path string, form url.Values) *http.Response {
	ta.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ta.ctx, method, ta.base+path, body)
	if err != nil {
		ta.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := ta.hc.Do(req)
	if err != nil {
		ta.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
