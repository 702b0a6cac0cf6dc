//go:build browser

package web

// The browser test: a real headless Chromium signs in through the dev IdP and opens every message of the hostile
// corpus, to check what the unit tests can only infer: that no script runs (not in Postern's page, not in the
// sandboxed frame), that no dialog opens, and that no request leaves for any host but 127.0.0.1.
//
// Run it (Debian: apt-get install -y chromium; POSTERN_CHROMIUM names another binary):
//
//	go test -tags browser -run TestBrowser -count=1 ./web/
//
// Requests are watched twice. The DevTools network events of the page record every URL the page and its frames
// ask for (the sandboxed frame is kept in the page's process with --disable-features=IsolateSandboxedIframes, so its
// events arrive on the page's target). And Chromium is given a proxy, which it uses for every host but loopback:
// any request for another host, from any process, frame or worker, reaches that proxy and is recorded. Host
// resolution is mapped to nothing, so not even a DNS query leaves. Two positive controls show that the watchers
// and the script check would see a failure: "show remote content" must make the tracking pixel reach the proxy,
// and a page that does run script must be caught.

import (
	"context"
	"fmt"
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
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// recorder keeps what the watchers saw.
type recorder struct {
	mu       sync.Mutex
	requests []string // URLs from DevTools network events
	proxied  []string // hosts that reached the proxy
	dialogs  []string // JavaScript dialogs (alert, confirm, prompt)
	// locations are the Location headers of redirects.
	locations []string
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests, r.proxied, r.dialogs = nil, nil, nil
}

func (r *recorder) snapshot() (requests, proxied, dialogs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...), append([]string(nil), r.proxied...), append([]string(nil), r.dialogs...)
}

// foreign returns the recorded URLs that are not on 127.0.0.1 (data: and about: URLs load nothing).
func foreign(urls []string) []string {
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

// startProxy records every request it gets and answers none of them usefully.
func startProxy(t *testing.T, rec *recorder) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if r.URL.Host != "" {
			host = r.URL.Host
		}
		if !chromiumService(host) {
			rec.mu.Lock()
			rec.proxied = append(rec.proxied, host)
			rec.mu.Unlock()
		}
		http.Error(w, "blocked by the test proxy", http.StatusForbidden)
	})}
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

func newChrome(t *testing.T, rec *recorder, proxy string) context.Context {
	t.Helper()
	exe := os.Getenv("POSTERN_CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	if _, err := os.Stat(exe); err != nil {
		t.Fatalf("no Chromium at %s (apt-get install -y chromium, or set POSTERN_CHROMIUM): %v", exe, err)
	}
	dir := t.TempDir()
	home, tmp := filepath.Join(dir, "home"), filepath.Join(dir, "tmp")
	for _, d := range []string{home, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
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
			rec.mu.Lock()
			rec.requests = append(rec.requests, ev.Request.URL)
			rec.mu.Unlock()
		case *network.EventResponseReceivedExtraInfo:
			// Redirect responses show here with their headers, even when the browser then refuses to follow.
			if loc, ok := ev.Headers["Location"].(string); ok {
				rec.mu.Lock()
				rec.locations = append(rec.locations, loc)
				rec.mu.Unlock()
			}
		case *page.EventJavascriptDialogOpening:
			rec.mu.Lock()
			rec.dialogs = append(rec.dialogs, ev.Message)
			rec.mu.Unlock()
		}
	}))
	t.Cleanup(cancel)
	// The first Run starts the browser; it must not carry a timeout (it would stop the browser with it).
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{})
		return err
	}))
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// do runs steps with a deadline.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		// Say where the browser got stuck.
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(sctx, chromedp.Evaluate[string]("location.href"))
		body, _ := chromedp.Run(sctx, chromedp.Evaluate[string]("document.body ? document.body.innerText.slice(0, 500) : ''"))
		t.Fatalf("%s: %v (at %s: %q)", what, err, loc, body)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// frameEval evaluates expr in an isolated world of the page's first child frame: DevTools may read the frame's DOM
// even though the frame's own scripts are disabled. It returns ok=false when the page has no frame.
func frameEval[T any](t *testing.T, ctx context.Context, expr string) (v T, ok bool) {
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
	if err == errNoFrame {
		return v, false
	}
	if err != nil {
		t.Fatalf("evaluate %s in the frame: %v", expr, err)
	}
	return v, true
}

var errNoFrame = fmt.Errorf("the page has no frame")

// pwnedCheck is what every corpus payload would change had it run: the title, a global, or a dialog.
// (The encoded-word message's subject contains the payload as text, so the title is compared whole.)
const pwnedCheck = `document.title === "PWNED" || window.pwned !== undefined`

func TestBrowserHostileMail(t *testing.T) {
	rd := newReader(t)
	files, err := filepath.Glob(filepath.Join("..", "testdata", "hostile", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("hostile corpus: %v, %d files", err, len(files))
	}
	type msg struct{ name, path string }
	var msgs []msg
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".eml")
		box := "Hostile/" + name
		msgs = append(msgs, msg{name, messagePath(box, rd.deliverAlone(t, box, raw))})
	}
	imageMsg := messagePath("INBOX", rd.deliver(t, "INBOX", []byte(htmlWithImage)))

	rec := &recorder{}
	ctx := newChrome(t, rec, startProxy(t, rec))
	app := rd.s.ts.URL

	// Sign in as a user would: the IdP's form, then its consent page.
	do(t, ctx, "sign in",
		chromedp.Navigate(app+"/login?return_to=/mail/INBOX"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "alice-password"),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("accept")),
		chromedp.Click(chromedp.ID("accept")),
	)
	// The consent POST is answered with a redirect to Postern's callback; Chromium applies the IdP page's CSP
	// form-action to that redirect, so the dev IdP lists its clients' redirect origins there, as a real IdP must.
	do(t, ctx, "inbox", chromedp.WaitVisible(chromedp.ID("main")))
	if loc := eval[string](t, ctx, "location.href"); !strings.HasPrefix(loc, app+"/mail/INBOX") {
		t.Fatalf("after sign-in the browser is at %s", loc)
	}

	// Control 1: a page whose script does run is caught by the check.
	do(t, ctx, "control page", chromedp.Navigate(`data:text/html,<title>x</title><script>document.title="PWNED"</script>`))
	if !eval[bool](t, ctx, pwnedCheck) {
		t.Fatal("the script check does not see a script that ran")
	}

	// Control 2: with remote content shown, the browser (not Postern) asks for the remote image, and both watchers
	// see it. The image also proves that cid: images show in the frame.
	rec.reset()
	do(t, ctx, "open with remote content", chromedp.Navigate(app+imageMsg+"?remote=1"), chromedp.Sleep(300*time.Millisecond))
	requests, proxied, _ := rec.snapshot()
	if !strings.Contains(strings.Join(foreign(requests), " "), "tracker.example") {
		t.Errorf("with remote content, DevTools saw no request for the remote image: %v", requests)
	}
	if !strings.Contains(strings.Join(proxied, " "), "tracker.example") {
		t.Errorf("with remote content, the proxy saw no request for the remote image: %v", proxied)
	}
	if w, ok := frameEval[int](t, ctx, `document.querySelector('img[alt="dot"]').naturalWidth`); !ok || w != 1 {
		t.Errorf("the cid: image in the frame has naturalWidth %d (frame found: %v), want 1", w, ok)
	}

	// Without remote content, nothing leaves.
	rec.reset()
	do(t, ctx, "open without remote content", chromedp.Navigate(app+imageMsg), chromedp.Sleep(300*time.Millisecond))
	requests, proxied, _ = rec.snapshot()
	if f := foreign(requests); len(f) > 0 || len(proxied) > 0 {
		t.Errorf("without remote content, requests left: %v, proxy: %v", f, proxied)
	}

	for _, m := range msgs {
		t.Run(m.name, func(t *testing.T) {
			rec.reset()
			do(t, ctx, "open "+m.path, chromedp.Navigate(app+m.path), chromedp.WaitVisible(chromedp.ID("msg-subject")),
				chromedp.Sleep(300*time.Millisecond))
			if eval[bool](t, ctx, pwnedCheck) {
				t.Error("a script ran in Postern's page")
			}
			if title := eval[string](t, ctx, "document.title"); !strings.HasSuffix(title, " · Postern") {
				t.Errorf("page title = %q", title)
			}
			if v, ok := frameEval[bool](t, ctx, `document.title === "PWNED" || document.querySelectorAll("script,iframe,object,embed,svg,form,base,meta[http-equiv]").length > 0`); ok && v {
				t.Error("the frame changed its title or holds active elements")
			}
			if sb := eval[string](t, ctx, `(document.querySelector("iframe") || {getAttribute(){return "none"}}).getAttribute("sandbox")`); sb != "none" && sb != "allow-popups allow-popups-to-escape-sandbox" {
				t.Errorf("iframe sandbox = %q", sb)
			}
			requests, proxied, dialogs := rec.snapshot()
			if f := foreign(requests); len(f) > 0 {
				t.Errorf("requests for other hosts: %v", f)
			}
			if len(proxied) > 0 {
				t.Errorf("requests reached the proxy: %v", proxied)
			}
			if len(dialogs) > 0 {
				t.Errorf("dialogs opened: %q", dialogs)
			}
			if loc := eval[string](t, ctx, "location.href"); loc != app+m.path {
				t.Errorf("the page navigated away to %s (meta refresh?)", loc)
			}
		})
	}
}
