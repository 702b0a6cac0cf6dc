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
// Requests are watched twice (internal/browsertest): the DevTools network events of the page and its sandboxed
// frame, and a recording proxy that Chromium uses for every host but loopback, with host resolution mapped to
// nothing. Two positive controls show that the watchers and the script check would see a failure: "show remote
// content" must make the tracking pixel reach the proxy, and a page that does run script must be caught.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
)

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

	ctx, rec := browsertest.Start(t)
	app := rd.s.ts.URL

	// Sign in as a user would: the IdP's form, then its consent page.
	browsertest.Do(t, ctx, "sign in",
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
	browsertest.Do(t, ctx, "inbox", chromedp.WaitVisible(chromedp.ID("main")))
	if loc := browsertest.Eval[string](t, ctx, "location.href"); !strings.HasPrefix(loc, app+"/mail/INBOX") {
		t.Fatalf("after sign-in the browser is at %s", loc)
	}

	// Control 1: a page whose script does run is caught by the check.
	browsertest.Do(t, ctx, "control page", chromedp.Navigate(`data:text/html,<title>x</title><script>document.title="PWNED"</script>`))
	if !browsertest.Eval[bool](t, ctx, pwnedCheck) {
		t.Fatal("the script check does not see a script that ran")
	}

	// Control 2: with remote content shown, the browser (not Postern) asks for the remote image, and both watchers
	// see it. The image also proves that cid: images show in the frame.
	rec.Reset()
	browsertest.Do(t, ctx, "open with remote content", chromedp.Navigate(app+imageMsg+"?remote=1"), chromedp.Sleep(300*time.Millisecond))
	requests, proxied, _ := rec.Snapshot()
	if !strings.Contains(strings.Join(browsertest.Foreign(requests), " "), "tracker.example") {
		t.Errorf("with remote content, DevTools saw no request for the remote image: %v", requests)
	}
	if !strings.Contains(strings.Join(proxied, " "), "tracker.example") {
		t.Errorf("with remote content, the proxy saw no request for the remote image: %v", proxied)
	}
	if w, ok := browsertest.FrameEval[int](t, ctx, `document.querySelector('img[alt="dot"]').naturalWidth`); !ok || w != 1 {
		t.Errorf("the cid: image in the frame has naturalWidth %d (frame found: %v), want 1", w, ok)
	}

	// Without remote content, nothing leaves.
	rec.Reset()
	browsertest.Do(t, ctx, "open without remote content", chromedp.Navigate(app+imageMsg), chromedp.Sleep(300*time.Millisecond))
	requests, proxied, _ = rec.Snapshot()
	if f := browsertest.Foreign(requests); len(f) > 0 || len(proxied) > 0 {
		t.Errorf("without remote content, requests left: %v, proxy: %v", f, proxied)
	}

	for _, m := range msgs {
		t.Run(m.name, func(t *testing.T) {
			rec.Reset()
			browsertest.Do(t, ctx, "open "+m.path, chromedp.Navigate(app+m.path), chromedp.WaitVisible(chromedp.ID("msg-subject")),
				chromedp.Sleep(300*time.Millisecond))
			if browsertest.Eval[bool](t, ctx, pwnedCheck) {
				t.Error("a script ran in Postern's page")
			}
			if title := browsertest.Eval[string](t, ctx, "document.title"); !strings.HasSuffix(title, " · Postern") {
				t.Errorf("page title = %q", title)
			}
			if v, ok := browsertest.FrameEval[bool](t, ctx, `document.title === "PWNED" || document.querySelectorAll("script,iframe,object,embed,svg,form,base,meta[http-equiv]").length > 0`); ok && v {
				t.Error("the frame changed its title or holds active elements")
			}
			if sb := browsertest.Eval[string](t, ctx, `(document.querySelector("iframe") || {getAttribute(){return "none"}}).getAttribute("sandbox")`); sb != "none" && sb != "allow-popups allow-popups-to-escape-sandbox" {
				t.Errorf("iframe sandbox = %q", sb)
			}
			requests, proxied, dialogs := rec.Snapshot()
			if f := browsertest.Foreign(requests); len(f) > 0 {
				t.Errorf("requests for other hosts: %v", f)
			}
			if len(proxied) > 0 {
				t.Errorf("requests reached the proxy: %v", proxied)
			}
			if len(dialogs) > 0 {
				t.Errorf("dialogs opened: %q", dialogs)
			}
			if loc := browsertest.Eval[string](t, ctx, "location.href"); loc != app+m.path {
				t.Errorf("the page navigated away to %s (meta refresh?)", loc)
			}
		})
	}
}
