//go:build browser

package web

// Accessibility in real Chromium: axe-core (https://github.com/dequelabs/axe-core), the checker most audits use, runs
// on every page of the app at desktop and phone sizes in light and dark mode with the rules of WCAG 2.0, 2.1 and 2.2
// at levels A and AA, and must find nothing. On the phone every visible interactive element must also be at least
// 24×24 CSS px or excused by WCAG 2.2 SC 2.5.8 (browsertest.SmallTargetsJS).
//
// axe-core is an npm package, not a Go module; .ci/run installs it (browsertest.AxeInstall) and sets POSTERN_AXE.
// Without it the test skips, saying how to install it, except under CI, where it fails:
//
//	npm install --prefix "${XDG_CACHE_HOME:-$HOME/.cache}/postern/axe" --no-audit --no-fund --ignore-scripts axe-core@4.14.1
//	go test -tags browser -run TestBrowserAccessibility -count=1 -v ./web/

import (
	"errors"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
)

// a11yPage is a page the accessibility check visits, in every mode (a11yModes).
type a11yPage struct {
	name string
	// path is the page's address; it may use the fixture (UIDs found after sign-in).
	path func(f *a11yFixture) string
	// ready is a JavaScript condition that holds once the page is the one meant (not an error page, not a redirect).
	ready string
	// optional pages are checked only where their route exists: a page another change adds (/settings) is listed
	// here before it lands, and checked from the moment it does.
	optional bool
}

// a11yFixture holds what the signed-in pages' addresses need.
type a11yFixture struct {
	plainUID, htmlUID uint32
}

func at(path string) func(*a11yFixture) string { return func(*a11yFixture) string { return path } }

// a11ySignedOut are the pages seen before signing in, including the demo IdP's sign-in page (Postern's /login
// redirects there).
var a11ySignedOut = []a11yPage{
	{name: "sign-in", path: at("/"), ready: `!!document.getElementById("signin")`},
	{name: "idp-login", path: at("/login"), ready: `!!document.getElementById("username")`},
	{name: "error-signed-out", path: at("/no/such/page"), ready: `!!document.getElementById("error-h")`},
	{name: "signed-out", path: at("/signed-out"), ready: `!!document.querySelector("main h1")`},
}

// a11ySignedIn are the pages of the signed-in app. A new page is one line here.
var a11ySignedIn = []a11yPage{
	{name: "inbox", path: at("/mail/INBOX"), ready: `!!document.querySelector("table.messages")`},
	{name: "search", path: at("/mail/INBOX?q=invoice&from=northwind"), ready: `!!document.getElementById("clear-search")`},
	{name: "message-plain", path: func(f *a11yFixture) string { return messagePath("INBOX", f.plainUID) }, ready: `!!document.getElementById("msg-text")`},
	{name: "message-html", path: func(f *a11yFixture) string { return messagePath("INBOX", f.htmlUID) }, ready: `!!document.getElementById("msg-html")`},
	{name: "compose", path: at("/compose"), ready: `!!document.getElementById("compose-form")`},
	{name: "reply", path: func(f *a11yFixture) string {
		return "/compose?reply=" + urlQueryEscape("INBOX/"+strconv.Itoa(int(f.plainUID)))
	}, ready: `!!document.getElementById("compose-form")`},
	{name: "folders", path: at("/folders"), ready: `!!document.querySelector("table.folder-list")`},
	{name: "devices", path: at("/devices"), ready: `!!document.getElementById("connect")`},
	{name: "account", path: at("/session"), ready: `!!document.querySelector("main dl")`},
	{name: "error", path: func(*a11yFixture) string { return messagePath("INBOX", 999999) }, ready: `!!document.getElementById("error-h")`},
	{name: "idp-consent", path: at("/login"), ready: `!!document.getElementById("accept")`},
	{name: "settings", path: at("/settings"), ready: `!!document.getElementById("main")`, optional: true},
}

// a11yModes are the viewport and colour scheme combinations every page is checked in.
var a11yModes = []struct {
	name          string
	width, height int64
	phone         bool
	scheme        string
}{
	{"desktop-light", 1280, 800, false, "light"},
	{"desktop-dark", 1280, 800, false, "dark"},
	{"phone-light", 390, 844, true, "light"},
	{"phone-dark", 390, 844, true, "dark"},
}

func TestBrowserAccessibility(t *testing.T) {
	axePath, err := browsertest.AxePath()
	if errors.Is(err, browsertest.ErrNoAxe) && os.Getenv("CI") == "" {
		t.Skipf("skipping the accessibility check: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	axeSrc, err := os.ReadFile(axePath)
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, withBridge(testBridge))
	ctx, rec := browsertest.Start(t)
	app := s.ts.URL
	fix := &a11yFixture{}

	check := func(pages []a11yPage) {
		for _, mode := range a11yModes {
			browsertest.Do(t, ctx, "emulate "+mode.name, browsertest.Emulate(mode.width, mode.height, mode.phone, mode.scheme))
			for _, pg := range pages {
				t.Run(mode.name+"/"+pg.name, func(t *testing.T) {
					path := pg.path(fix)
					if pg.optional {
						// Signed out, an existing route sends to sign-in; only a missing one answers 404.
						if r := newBrowser(t).get(app + path); r.status == http.StatusNotFound {
							t.Skipf("%s answers 404: not in this build", path)
						}
					}
					browsertest.Do(t, ctx, "open "+path, chromedp.Navigate(app+path))
					browsertest.WaitTrue(t, ctx, pg.name, `document.readyState === "complete" && `+pg.ready)
					if !browsertest.Eval[bool](t, ctx, `matchMedia("(prefers-color-scheme: `+mode.scheme+`)").matches`) {
						t.Fatalf("prefers-color-scheme: %s is not in effect", mode.scheme)
					}
					for _, v := range browsertest.Axe(t, ctx, string(axeSrc), browsertest.WCAG22AA) {
						t.Errorf("%s: %s", path, v)
					}
					// WCAG 1.4.10 (Reflow), which axe-core does not check: nothing widens the page beyond the screen
					// (a phone's browser would then zoom out, or scroll sideways).
					if w := browsertest.Eval[float64](t, ctx, `innerWidth`); w != float64(mode.width) {
						t.Errorf("%s: the page is %v px wide on a %d px screen: %s", path, w, mode.width, strings.Join(browsertest.Eval[[]string](t, ctx, overflowJS), ", "))
					}
					if mode.phone {
						if small := browsertest.Eval[[]string](t, ctx, browsertest.SmallTargetsJS); len(small) > 0 {
							t.Errorf("%s: targets smaller than 24×24 CSS px (WCAG 2.5.8): %s", path, strings.Join(small, "; "))
						}
					}
				})
			}
		}
	}

	// The checks must be able to fail: a nameless button (axe-core's button-name) and two 10×10 buttons side by
	// side (too small, too close) planted on a page are found.
	t.Run("checks-find-planted-faults", func(t *testing.T) {
		browsertest.Do(t, ctx, "open /", browsertest.Emulate(390, 844, true, "light"), chromedp.Navigate(app+"/"))
		browsertest.WaitTrue(t, ctx, "sign-in page", `document.readyState === "complete" && !!document.getElementById("signin")`)
		browsertest.Eval[bool](t, ctx, `(function () {
			const p = document.createElement("p");
			for (const id of ["probe-a", "probe-b"]) {
				const b = document.createElement("button");
				b.id = id;
				b.className = "probe";
				p.append(b);
			}
			document.querySelector("main").append(p);
			for (const b of p.children) { b.style.width = "10px"; b.style.height = "10px"; b.style.padding = "0"; b.style.minHeight = "0"; }
			return true;
		})()`)
		var ids []string
		for _, v := range browsertest.Axe(t, ctx, string(axeSrc), browsertest.WCAG22AA) {
			ids = append(ids, v.ID)
		}
		if !slices.Contains(ids, "button-name") {
			t.Errorf("axe-core found %v on a page with a nameless button, want button-name among them", ids)
		}
		small := browsertest.Eval[[]string](t, ctx, browsertest.SmallTargetsJS)
		if len(small) != 2 || !strings.Contains(strings.Join(small, " "), "button#probe-a") {
			t.Errorf("small targets = %q, want the two 10×10 probes", small)
		}
	})

	check(a11ySignedOut)
	signInBrowser(t, ctx, s, "alice")
	if fix.plainUID = rowUID(t, ctx, "Quick question about the IMAP pool"); fix.plainUID == 0 {
		t.Fatal("no plain-text message in the inbox")
	}
	if fix.htmlUID = rowUID(t, ctx, "The Self-Hosted Weekly #"); fix.htmlUID == 0 {
		t.Fatal("no HTML message in the inbox")
	}
	check(a11ySignedIn)
	if ex := rec.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}
