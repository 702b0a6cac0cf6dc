//go:build browser

package web

// Layout and accessibility regressions found while taking the README's screenshots (unreadable primary buttons,
// overflow on a 320 px phone, unspaced unread counts, attachment chips, message actions that needed script), each
// kept as a check in real Chromium:
//
//	go test -tags browser -run TestBrowserLayoutRegressions -count=1 -v ./web/

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
)

// contrastJS is the WCAG 2 contrast ratio of the first element matching the selector %s: its text colour against
// the first opaque background of it or its ancestors (the page's, if none).
const contrastJS = `(function (sel) {
	const el = document.querySelector(sel);
	if (!el) return -1;
	const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
	const lum = c => {
		const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
		return 0.2126 * r + 0.7152 * g + 0.0722 * b;
	};
	let bg = null;
	for (let n = el; n; n = n.parentElement) {
		const c = rgb(getComputedStyle(n).backgroundColor);
		if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) { bg = c; break; }
	}
	if (!bg) bg = rgb(getComputedStyle(document.documentElement).backgroundColor || "rgb(255,255,255)");
	if (bg.length < 3 || (bg.length === 4 && bg[3] === 0)) bg = [255, 255, 255];
	const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg);
	return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
})(%s)`

func contrast(t *testing.T, ctx context.Context, sel string) float64 {
	t.Helper()
	return browsertest.Eval[float64](t, ctx, strings.Replace(contrastJS, "%s", strconv.Quote(sel), 1))
}

func TestBrowserLayoutRegressions(t *testing.T) {
	s := newStack(t)
	ctx, _ := browsertest.Start(t)
	signInBrowser(t, ctx, s, "alice")
	app := s.ts.URL
	uid := rowUID(t, ctx, "Your invoice INV-2026-1042 for October")
	msg := messagePath("INBOX", uid)
	open := func(t *testing.T, width int64, scheme, path string) {
		t.Helper()
		browsertest.Do(t, ctx, "open "+path, browsertest.Emulate(width, 844, width < 700, scheme), chromedp.Navigate(app+path))
		browsertest.WaitTrue(t, ctx, path, `document.readyState === "complete" && !!document.getElementById("main")`)
	}

	// style.css: `button:not(.link)` (specificity 0,1,1) beats `.button` (0,1,0), so the compose page's Send button
	// (<button class="button" id="send">) gets background var(--card) with colour var(--accent-fg): white on white in
	// light mode, #0b1526 on #1e2125 in dark mode. Fix, after `button.button, .button { border: 0; }`:
	//	button.button { background: var(--accent); color: var(--accent-fg); }
	t.Run("SendButtonReadable", func(t *testing.T) {
		for _, scheme := range []string{"light", "dark"} {
			open(t, 1280, scheme, "/compose")
			if c := contrast(t, ctx, "#send"); c < 4.5 {
				t.Errorf("%s: #send text contrast %.2f:1, want at least 4.5:1", scheme, c)
			}
		}
	})

	// style.css: `.folders a { color: var(--fg) }` (0,1,1) beats `.button { color: var(--accent-fg) }` (0,1,0), so
	// the sidebar's Compose button has body-text colour on the accent: 2.7:1 in light mode, 1.8:1 in dark mode. Fix:
	//	.folders a.button { color: var(--accent-fg); }
	t.Run("ComposeButtonReadable", func(t *testing.T) {
		for _, scheme := range []string{"light", "dark"} {
			open(t, 1280, scheme, "/mail/INBOX")
			if c := contrast(t, ctx, "#compose"); c < 4.5 {
				t.Errorf("%s: #compose text contrast %.2f:1, want at least 4.5:1", scheme, c)
			}
		}
	})

	// On a 320 px phone the compose page's fieldset.attach (min-inline-size: min-content, set by the browser, holds
	// the file input) and the session page's .facts dd (an unbreakable issuer URL in a `max-content 1fr` grid) push
	// the page wider than the screen. Fix:
	//	.compose .attach { …; min-width: 0; }  .compose .attach input[type=file] { max-width: 100%; }
	//	.facts { …; grid-template-columns: max-content minmax(0, 1fr); }  .facts dd { margin: 0; overflow-wrap: anywhere; }
	t.Run("NarrowPhoneFits", func(t *testing.T) {
		for _, path := range []string{"/compose", "/session", "/mail/INBOX", msg, "/folders"} {
			open(t, 320, "light", path)
			if over := browsertest.Eval[[]string](t, ctx, overflowJS); len(over) > 0 {
				t.Errorf("%s at 320 px is wider than the screen: %s", path, strings.Join(over, ", "))
			}
		}
	})

	// Phone layout: `.folders a` is display:flex with justify-content:space-between but no gap, and shrinks to its
	// content in the horizontal folder strip, so the unread count touches the name ("Inbox8"), raised. Fix:
	//	.folders a { …; align-items: baseline; gap: .5rem; }
	t.Run("FolderCountSpaced", func(t *testing.T) {
		open(t, 390, "light", "/mail/INBOX")
		gap := browsertest.Eval[float64](t, ctx, `(function () {
			const a = document.querySelector("nav.folders a[aria-current=page]"), c = a.querySelector(".count");
			const r = document.createRange();
			r.selectNodeContents(a.firstChild);
			return c.getBoundingClientRect().left - r.getBoundingClientRect().right;
		})()`)
		if gap < 4 {
			t.Errorf("the unread count is %.1f px from the folder name, want at least 4", gap)
		}
	})

	// style.css styles `.attachments` (the <section>) as the chip list, instead of `.attachments ul`: the list keeps
	// its bullets and indent, and on desktop the h2 sits beside the list as a flex item. Fix: replace that rule with
	//	.attachments h2 { font-size: 1rem; margin: 1rem 0 .5rem; }
	//	.attachments ul { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: .5rem; }
	t.Run("AttachmentChips", func(t *testing.T) {
		open(t, 1280, "light", msg)
		if lst := browsertest.Eval[string](t, ctx, `getComputedStyle(document.querySelector(".attachments li")).listStyleType`); lst != "none" {
			t.Errorf("attachment items have list-style-type %q, want none", lst)
		}
		if d := browsertest.Eval[string](t, ctx, `getComputedStyle(document.querySelector(".attachments ul")).display`); d != "flex" {
			t.Errorf("the attachment list has display %q, want flex", d)
		}
	})

	// message.html: the message page has no Reply, Reply all, Forward, Archive, Delete or Move control. Without
	// JavaScript (whose r/a/f/e/# shortcuts are the only way) a reader cannot reply to or delete the message being
	// read; STYLE.md: "JavaScript only enhances … every core action works as a plain form/link". Fix (template):
	// Reply / Reply all / Forward links to /compose?reply=|replyall=|forward=<box>/<uid> (escaped, as app.js builds
	// them) and a POST /act form (box, uids, return_to, op=archive|delete|junk, move with a folder select).
	t.Run("MessageActionsWithoutScript", func(t *testing.T) {
		open(t, 1280, "light", msg)
		q := strconv.Quote("INBOX/" + strconv.Itoa(int(uid)))
		has := func(expr string) bool { return browsertest.Eval[bool](t, ctx, expr) }
		if !has(`[...document.querySelectorAll("main a[href]")].some(a => decodeURIComponent(a.getAttribute("href")) === "/compose?reply=" + ` + q + `)`) {
			t.Error("the message page has no Reply link")
		}
		if !has(`[...document.querySelectorAll("main a[href]")].some(a => decodeURIComponent(a.getAttribute("href")) === "/compose?forward=" + ` + q + `)`) {
			t.Error("the message page has no Forward link")
		}
		if !has(`!!document.querySelector('main form[action="/act"] button[name=op][value=delete]')`) {
			t.Error("the message page has no Delete button")
		}
	})
}
