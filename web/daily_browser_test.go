//go:build browser

package web

// Helpers of the browser tests (signInBrowser, rowUID, overflowJS), and the screenshots. The daily path itself,
// TestBrowserDailyPath, is in dailywalk_browser_test.go. Run them with the other browser tests:
//
//	go test -tags browser -run TestBrowser -count=1 ./web/
//
// TestBrowserScreenshots renders the inbox and a message at desktop and phone widths in light and dark mode, checks
// that nothing overflows sideways, and with POSTERN_SCREENSHOTS=docs/screenshots (relative to the module root) writes
// the README's screenshots there:
//
//	POSTERN_SCREENSHOTS=docs/screenshots go test -tags browser -run TestBrowserScreenshots -count=1 ./web/
//
// The seeded mail has Japanese names and an emoji: without fonts for them (Debian: fonts-ipafont-gothic,
// fonts-noto-color-emoji) Chromium draws empty boxes in their place.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/store"
)

// overflowJS lists (at most 8 of) the elements that stick out on the right when the page is wider than the
// viewport, so that a layout bug names its culprit; it returns an empty list when the page fits.
const overflowJS = `(function () {
	const vw = document.documentElement.clientWidth, out = [];
	if (document.documentElement.scrollWidth <= vw) return out;
	const scrolls = el => { // inside a box that scrolls or clips sideways, which then is the one to name
		for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
			if (getComputedStyle(p).overflowX !== "visible") return true;
		}
		return false;
	};
	for (const el of document.querySelectorAll("body *")) {
		if (scrolls(el)) continue;
		const r = el.getBoundingClientRect();
		if (r.right > vw + 1 && r.width > 0) {
			out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
				(typeof el.className === "string" && el.className.trim() ? "." + el.className.trim().split(/\s+/).join(".") : "") +
				" right=" + Math.round(r.right));
		}
	}
	return out.slice(0, 8);
})()`

// lunchHTML is an HTML-only message from bob (whose dev account exists, so a reply reaches him).
const lunchHTML = `From: Bob Marley <bob@example.test>
To: Alice Liddell <alice@example.test>
Date: %s
Subject: Team lunch on Friday
Message-ID: <team-lunch-%d@example.test>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><h1>Team lunch</h1><p>Shall we meet at <b>the noodle bar</b> on Friday?</p></body></html>
`

// signInBrowser signs user in through the dev IdP's login and consent pages, starting from Postern's home page,
// and waits for the inbox.
//
// The consent step once failed in CI with the consent page still showing 10 s after the click on Accept. A mouse
// click (chromedp.Click) goes to the point where the button was when it was measured; measured while the page was
// still loading (its stylesheet moves the button), the click can land beside it and submit nothing, which then looks
// just like an IdP that does not answer. So the step waits for the page's load to complete, and presses Accept with
// HTMLElement.click(), which submits the form with the button as its submitter (consent=accept) wherever the button
// is drawn: the page is the dev IdP's, a stand-in for Authelia's, and its mouse hit-testing is not what these tests
// check. A DevTools listener notes whether the browser sent the POST /consent, so that the two failures read
// differently: a press that submitted nothing fails after 2 s, a sign-in that got no answer after 20 s (the hop
// from the consent to the inbox exchanges the code, reads userinfo and logs in to IMAP; on a loaded CI machine that
// has taken close to the old 10 s).
func signInBrowser(t *testing.T, ctx context.Context, s *stack, user string) {
	t.Helper()
	app := s.ts.URL
	browsertest.Do(t, ctx, "open Postern", chromedp.Navigate(app+"/"), chromedp.Click(chromedp.ID("signin")))
	browsertest.WaitTrue(t, ctx, "login page loaded", `location.pathname === "/login" && document.readyState === "complete" && !!document.getElementById("username")`)
	browsertest.Do(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), user+"-password"),
		chromedp.Click(chromedp.ID("submit")),
	)
	browsertest.WaitTrue(t, ctx, "consent page loaded", `location.pathname === "/consent" && document.readyState === "complete" && !!document.getElementById("accept")`)

	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var posted atomic.Bool
	if err := chromedp.Listen(lctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Request.Method == http.MethodPost {
			if u, err := url.Parse(e.Request.URL); err == nil && u.Path == "/consent" {
				posted.Store(true)
			}
		}
	}); err != nil {
		t.Fatalf("listen for the consent: %v", err)
	}
	browsertest.Eval[bool](t, ctx, `document.getElementById("accept").click(), true`)
	if ok, _ := browsertest.Poll(ctx, `location.pathname !== "/consent"`, 2*time.Second); !ok && !posted.Load() {
		t.Fatalf("sign in: pressing Accept sent no POST /consent within 2 s (%s)", browsertest.Where(ctx))
	}
	inbox := `location.href === ` + strconv.Quote(app+"/mail/INBOX") + ` && !!document.querySelector("table.messages")`
	if ok, err := browsertest.Poll(ctx, inbox, 20*time.Second); !ok {
		t.Fatalf("sign in: the consent was sent (POST /consent), but no inbox within 20 s (last error: %v; %s)", err, browsertest.Where(ctx))
	}
}

// grantOf returns the only grant the store holds for user.
func (s *stack) grantOf(t *testing.T, user string) store.Grant {
	t.Helper()
	ctx := context.Background()
	ids, err := s.store.GrantsBySubject(ctx, s.idp.Issuer(), idp.Subject(user))
	if err != nil || len(ids) != 1 {
		t.Fatalf("grants of %s = %v, %v; want one", user, ids, err)
	}
	g, err := s.store.Grant(ctx, ids[0])
	if err != nil {
		t.Fatalf("Grant(%s): %v", ids[0], err)
	}
	return g
}

// rowUID returns the UID of the list row whose subject contains subject, 0 if none.
func rowUID(t *testing.T, ctx context.Context, subject string) uint32 {
	t.Helper()
	uid := browsertest.Eval[string](t, ctx, `(function (s) {
		for (const tr of document.querySelectorAll("table.messages tbody tr[data-uid]")) {
			if (tr.querySelector(".subject").textContent.includes(s)) return tr.dataset.uid;
		}
		return "0";
	})(`+strconv.Quote(subject)+`)`)
	n, _ := strconv.ParseUint(uid, 10, 32)
	return uint32(n)
}

// rowsUID returns the UID of the i-th list row (0-based).
func rowsUID(t *testing.T, ctx context.Context, i int) string {
	t.Helper()
	return browsertest.Eval[string](t, ctx, fmt.Sprintf(`document.querySelectorAll("table.messages tbody tr[data-uid]")[%d].dataset.uid`, i))
}

// TestBrowserScreenshots renders the inbox and an HTML message with attachments at desktop (1280×800) and phone
// (390×844) sizes, in light and dark mode. Every page must fit its width (no sideways scrolling). With
// POSTERN_SCREENSHOTS set to a directory (relative paths are taken from the module root), it writes
// {inbox,message}-{desktop,phone}-{light,dark}.png there.
func TestBrowserScreenshots(t *testing.T) {
	dir := os.Getenv("POSTERN_SCREENSHOTS")
	if dir != "" && !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir) // go test runs in web/
	}
	s := newStack(t)
	ctx, rec := browsertest.Start(t)
	signInBrowser(t, ctx, s, "alice")
	// The newest issue of the seeded newsletter: HTML only, with a tracking pixel that Postern blocks.
	const newsletter = "The Self-Hosted Weekly #"
	uid := rowUID(t, ctx, newsletter)
	if uid == 0 {
		t.Fatalf("no row %q in the inbox", newsletter)
	}
	app := s.ts.URL
	pages := []struct{ name, path, ready string }{
		{"inbox", "/mail/INBOX", `!!document.querySelector("table.messages")`},
		{"message", messagePath("INBOX", uid), `!!document.getElementById("msg-html") && !!document.getElementById("remote-blocked")`},
	}
	sizes := []struct {
		name          string
		width, height int64
		mobile        bool
	}{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}}
	for _, pg := range pages {
		for _, size := range sizes {
			for _, scheme := range []string{"light", "dark"} {
				name := pg.name + "-" + size.name + "-" + scheme
				t.Run(name, func(t *testing.T) {
					browsertest.Do(t, ctx, "emulate "+name, browsertest.Emulate(size.width, size.height, size.mobile, scheme),
						chromedp.Navigate(app+pg.path))
					browsertest.WaitTrue(t, ctx, name, `location.pathname === `+strconv.Quote(pg.path)+` && document.readyState === "complete" && `+pg.ready)
					if pg.name == "message" {
						// The frame's document loads on its own; wait for its text.
						for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
							if v, ok := browsertest.FrameEval[string](t, ctx, `document.body ? document.body.innerText : ""`); ok && strings.Contains(v, "IMAP IDLE at scale") {
								break
							}
							if time.Now().After(deadline) {
								t.Fatal("the frame does not show the message")
							}
						}
					}
					if !browsertest.Eval[bool](t, ctx, `matchMedia("(prefers-color-scheme: `+scheme+`)").matches`) {
						t.Fatalf("prefers-color-scheme: %s is not in effect", scheme)
					}
					if w := browsertest.Eval[float64](t, ctx, `innerWidth`); w != float64(size.width) {
						t.Errorf("innerWidth = %v, want %d", w, size.width)
					}
					// Nothing may make the page scroll sideways; name the widest culprits if something does.
					over := browsertest.Eval[[]string](t, ctx, overflowJS)
					if len(over) > 0 {
						t.Errorf("the page is wider than the %d px viewport: %s", size.width, strings.Join(over, ", "))
					}
					if dir != "" {
						n := browsertest.Screenshot(t, ctx, filepath.Join(dir, name+".png"))
						t.Logf("%s.png: %d bytes", name, n)
					}
				})
			}
		}
	}
	requests, proxied, dialogs := rec.Snapshot()
	if f := browsertest.Foreign(requests); len(f) > 0 || len(proxied) > 0 || len(dialogs) > 0 {
		t.Errorf("requests left 127.0.0.1: %v, proxy: %v, dialogs: %q", f, proxied, dialogs)
	}
	if ex := rec.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}
