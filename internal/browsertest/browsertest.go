// Package browsertest drives a headless Chromium for Postern's browser tests: the tests of package web behind the
// build tag browser, and the Chromium sign-in of the e2e suite. It is imported by tests only.
//
// Start launches Chromium with its home, temporary and profile directories in t.TempDir(), and watches its requests
// twice. The DevTools network events of the page record every URL the page and its frames ask for (the sandboxed
// frame is kept in the page's process with --disable-features=IsolateSandboxedIframes, so its events arrive on the
// page's target). And Chromium is given a proxy, which it uses for every host but loopback: any request for another
// host, from any process, frame or worker, reaches that proxy and is recorded. Host resolution is mapped to nothing,
// so not even a DNS query leaves.
//
// The binary is /usr/bin/chromium (Debian: apt-get install -y chromium) unless POSTERN_CHROMIUM names another.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Recorder keeps what the watchers saw.
type Recorder struct {
	mu         sync.Mutex
	requests   []string // URLs from DevTools network events
	proxied    []string // hosts that reached the proxy
	dialogs    []string // JavaScript dialogs (alert, confirm, prompt)
	locations  []string // Location headers of redirects
	exceptions []string // uncaught JavaScript exceptions in the page
}

// Reset forgets the requests, proxied hosts, dialogs and exceptions seen so far (not the redirect locations).
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests, r.proxied, r.dialogs, r.exceptions = nil, nil, nil, nil
}

// Snapshot returns copies of the requests, proxied hosts and dialogs seen since the last Reset.
func (r *Recorder) Snapshot() (requests, proxied, dialogs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...), append([]string(nil), r.proxied...), append([]string(nil), r.dialogs...)
}

// Locations returns the Location headers of the redirect responses seen so far. Redirects show there even when
// the browser then refuses to follow them.
func (r *Recorder) Locations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.locations...)
}

// Exceptions returns the uncaught JavaScript exceptions of the page since the last Reset.
func (r *Recorder) Exceptions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.exceptions...)
}

// CheckQuiet fails t if the browser sent a request beyond 127.0.0.1 (or through the proxy), opened a dialog, or
// threw an uncaught JavaScript exception: what every walk through the app must end without.
func (r *Recorder) CheckQuiet(t testing.TB) {
	t.Helper()
	requests, proxied, dialogs := r.Snapshot()
	if f := Foreign(requests); len(f) > 0 || len(proxied) > 0 {
		t.Errorf("requests left 127.0.0.1: %v, proxy: %v", f, proxied)
	}
	if len(dialogs) > 0 {
		t.Errorf("dialogs opened: %q", dialogs)
	}
	if ex := r.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}

func (r *Recorder) add(list *[]string, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*list = append(*list, s)
}

// Foreign returns the URLs that are not on 127.0.0.1 (data: and about: URLs load nothing).
func Foreign(urls []string) []string {
	var out []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			out = append(out, s)
			continue
		}
		switch u.Scheme {
		case "data", "about":
			continue
		case "http", "https", "ws", "wss":
			if u.Hostname() == "127.0.0.1" {
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// StartProxy starts an HTTP proxy on 127.0.0.1 that records the host of every request it gets in rec and answers
// none of them usefully. It returns the proxy's address and stops it when the test ends.
func StartProxy(t testing.TB, rec *Recorder) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host := r.Host
			if r.URL.Host != "" {
				host = r.URL.Host
			}
			if !chromiumService(host) {
				rec.add(&rec.proxied, host)
			}
			http.Error(w, "blocked by the test proxy", http.StatusForbidden)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// chromiumService reports whether host is one of the Google services that Chromium itself calls, whatever the page
// (sign-in cookie checks, autofill, optimisation hints), which the flags below do not all turn off. The proxy
// ignores only these; the DevTools events, which belong to the page, have no such exception.
func chromiumService(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	return h == "accounts.google.com" || h == "clients2.google.com" || strings.HasSuffix(h, ".googleapis.com") ||
		strings.HasSuffix(h, ".gvt1.com")
}

// ChromiumPath returns the Chromium binary the tests use: $POSTERN_CHROMIUM, else /usr/bin/chromium. The error
// says how to get one; callers that may run without a browser skip on it.
func ChromiumPath() (string, error) {
	exe := os.Getenv("POSTERN_CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	if _, err := os.Stat(exe); err != nil {
		return exe, fmt.Errorf("no Chromium at %s (apt-get install -y chromium, or set POSTERN_CHROMIUM): %w", exe, err)
	}
	return exe, nil
}

// Start launches Chromium behind a recording proxy (StartProxy) and returns the context of its tab and the recorder.
// The browser stops when the test ends.
func Start(t testing.TB) (context.Context, *Recorder) {
	t.Helper()
	rec := &Recorder{}
	return Launch(t, rec, StartProxy(t, rec)), rec
}

// Launch starts Chromium with proxy as its proxy for every host but loopback and returns the context of its tab.
// Network requests, redirect locations, dialogs and uncaught exceptions of the tab go to rec. HOME, TMPDIR, the XDG
// directories and the profile are in t.TempDir(). The browser stops when the test ends.
func Launch(t testing.TB, rec *Recorder, proxy string) context.Context {
	t.Helper()
	exe, err := ChromiumPath()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	// TMPDIR gets a short name of its own: Chromium puts its singleton's Unix socket under it, and t.TempDir's name
	// (the test's name and a random number) can take the socket's path past the 108 bytes a socket address holds,
	// when Chromium exits at once without a word.
	tmp, err := os.MkdirTemp("", "pb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.Env("HOME="+home, "TMPDIR="+tmp, "XDG_CONFIG_HOME="+home, "XDG_CACHE_HOME="+home),
		chromedp.Flag("proxy-server", "http://"+proxy),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		// Keep the sandboxed frame in the page's process, so that its network events reach the page's target, and
		// turn off the browser's own calls home, which would otherwise reach the proxy.
		chromedp.Flag("disable-features", "IsolateSandboxedIframes,AutofillServerCommunication,OptimizationHints,"+
			"OptimizationHintsFetching,OptimizationGuideModelDownloading,MediaRouter,Translate,InterestFeedContentSuggestions"),
	}
	for _, f := range []string{"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run",
		"disable-background-networking", "disable-component-update", "disable-sync", "disable-dev-shm-usage",
		"disable-client-side-phishing-detection", "disable-default-apps", "disable-domain-reliability", "no-pings",
		"disable-extensions", "metrics-recording-only", "safebrowsing-disable-auto-update"} {
		opts = append(opts, chromedp.Flag(f, true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			rec.add(&rec.requests, ev.Request.URL)
		case *network.EventResponseReceivedExtraInfo:
			if loc, ok := ev.Headers["Location"].(string); ok {
				rec.add(&rec.locations, loc)
			}
		case *page.EventJavascriptDialogOpening:
			rec.add(&rec.dialogs, ev.Message)
		case *runtime.EventExceptionThrown:
			if d := ev.ExceptionDetails; d != nil {
				msg := d.Text
				if d.Exception != nil && d.Exception.Description != "" {
					msg = d.Exception.Description
				}
				rec.add(&rec.exceptions, fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1))
			}
		}
	}))
	t.Cleanup(cancel)
	// The first Run starts the browser; it must not carry a timeout (it would stop the browser with it).
	err = chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{})
		return err
	}))
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// Do runs steps with a deadline of 20 s and fails the test, saying where the browser got stuck, if one fails.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v (%s)", what, err, where(ctx))
	}
}

// Where describes the page the browser shows (its address and the start of its text), for failure messages.
func Where(ctx context.Context) string { return where(ctx) }

// where describes the page the browser shows, for failure messages.
func where(ctx context.Context) string {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(sctx, chromedp.Evaluate[string]("location.href"))
	body, _ := chromedp.Run(sctx, chromedp.Evaluate[string]("document.body ? document.body.innerText.slice(0, 500) : ''"))
	return fmt.Sprintf("at %s: %q", loc, body)
}

// Eval evaluates the JavaScript expression expr in the page, with a deadline of 10 s, and fails the test on error.
func Eval[T any](t testing.TB, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// WaitTrue polls the JavaScript expression cond every 50 ms until it is true, for at most 10 s, and fails the test
// otherwise. Evaluation errors count as false: a navigation in flight destroys the page's context for a moment.
// Use it after a click that navigates, where a WaitVisible could still find the old page's element.
func WaitTrue(t testing.TB, ctx context.Context, what, cond string) {
	t.Helper()
	if ok, err := Poll(ctx, cond, 10*time.Second); !ok {
		t.Fatalf("%s: %s still not true after 10 s (last error: %v; %s)", what, cond, err, where(ctx))
	}
}

// Poll is WaitTrue for a caller that words its own failure: it polls cond every 50 ms for at most d and reports
// whether it became true, with the last evaluation error (nil if cond was merely false).
func Poll(ctx context.Context, cond string, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := chromedp.Run(ectx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FrameEval evaluates expr in an isolated world of the page's first child frame: DevTools may read the frame's DOM
// even though the frame's own scripts are disabled. It returns ok=false when the page has no frame.
func FrameEval[T any](t testing.TB, ctx context.Context, expr string) (v T, ok bool) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, func(ctx context.Context, tg *chromedp.Target) (T, error) {
		var zero T
		tree, err := cdp.Call(ctx, tg, page.GetFrameTree, cdp.Empty{})
		if err != nil {
			return zero, err
		}
		if len(tree.FrameTree.ChildFrames) == 0 {
			return zero, errNoFrame
		}
		world, err := cdp.Call(ctx, tg, page.CreateIsolatedWorld, page.CreateIsolatedWorldParams{
			FrameID: tree.FrameTree.ChildFrames[0].Frame.ID, WorldName: "postern-test",
		})
		if err != nil {
			return zero, err
		}
		return chromedp.Evaluate[T](expr, func(p *runtime.EvaluateParams) { p.ContextID = world.ExecutionContextID })(ctx, tg)
	})
	if errors.Is(err, errNoFrame) {
		return v, false
	}
	if err != nil {
		t.Fatalf("evaluate %s in the frame: %v", expr, err)
	}
	return v, true
}

var errNoFrame = errors.New("the page has no frame")

// Emulate sets the tab's viewport to width×height CSS pixels at a device scale factor of 1 (mobile: with the mobile
// viewport rules and touch, as a phone) and its prefers-color-scheme to scheme ("light" or "dark"). It applies to
// the pages loaded afterwards as well.
func Emulate(width, height int64, mobile bool, scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
			Width: width, Height: height, DeviceScaleFactor: 1, Mobile: mobile,
		})
		if err != nil {
			return err
		}
		_, err = cdp.Call(ctx, tg, emulation.SetTouchEmulationEnabled, emulation.SetTouchEmulationEnabledParams{Enabled: mobile})
		if err != nil {
			return err
		}
		_, err = cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	})
}

// Screenshot captures the tab's viewport as a PNG, re-encoded with the best compression, and writes it to path
// (creating its directory). It returns the file's size.
func Screenshot(t testing.TB, ctx context.Context, path string) int {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	shot, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot %s: decode: %v", path, err)
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, img); err != nil {
		t.Fatalf("screenshot %s: encode: %v", path, err)
	}
	if buf.Len() > len(shot) { // never larger than Chromium's own encoding
		buf.Reset()
		buf.Write(shot)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return buf.Len()
}

// DisableScript turns the page's own JavaScript off (or on again) for the pages loaded afterwards, to test the
// no-JavaScript path; DevTools evaluations (Eval, WaitTrue) still run.
func DisableScript(off bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: off})
		return err
	})
}
