//go:build browser

package web

// The spoofing check of issue 10 (finding 3) in a real Chromium: what matters is what the user sees, the visual
// order of characters after the Unicode bidi algorithm, which only a browser computes.
//
//	go test -tags browser -run TestBrowserSenderSpoofing -count=1 ./web/
//	POSTERN_SCREENSHOTS=docs/screenshots go test -tags browser -run TestBrowserSenderSpoofing -count=1 ./web/

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
)

// visualOrderJS reports, for the first element matching the selector, whether its text is drawn left to right: the
// first character's box lies left of the last one's. A U+202E that escaped isolation would draw it mirrored.
const visualOrderJS = `(function (sel) {
	const el = document.querySelector(sel);
	if (!el) return "missing";
	const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
	const nodes = [];
	while (walker.nextNode()) if (walker.currentNode.data.trim()) nodes.push(walker.currentNode);
	if (!nodes.length) return "empty";
	const first = nodes[0], last = nodes[nodes.length - 1];
	const box = (node, i) => { const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 1); return r.getBoundingClientRect(); };
	const a = box(first, first.data.search(/\S/)), b = box(last, last.data.trimEnd().length - 1);
	return a.left < b.left ? "ltr" : "reversed";
})`

func TestBrowserSenderSpoofing(t *testing.T) {
	dir := os.Getenv("POSTERN_SCREENSHOTS")
	if dir != "" && !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir)
	}
	rd := newReader(t)
	rlo := messagePath("INBOX", rd.deliver(t, "INBOX", spoofMail(b64("\u202emoc.knab@ytiruces")+" <alice@example.test>", b64("Invoice \u202efdp.exe"))))
	named := messagePath("INBOX", rd.deliver(t, "INBOX", spoofMail(`"Admin <admin@postern.example>" <mallory@evil.example>`, "Password reset")))

	ctx, _ := browsertest.Start(t)
	app := rd.s.ts.URL
	browsertest.Do(t, ctx, "sign in",
		chromedp.Navigate(app+"/login?return_to=/mail/INBOX"),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "alice-password"),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("accept")),
		chromedp.Click(chromedp.ID("accept")),
	)
	browsertest.Do(t, ctx, "inbox", chromedp.WaitVisible(chromedp.ID("main")))
	browsertest.Do(t, ctx, "desktop", browsertest.Emulate(1280, 800, false, "light"))

	// Control: the check sees mirrored text when a U+202E is not isolated.
	browsertest.Do(t, ctx, "control page", chromedp.Navigate(`data:text/html;charset=utf-8,<p id="x">`+"\u202e"+`moc.knab@ytiruces &lt;alice@example.test&gt;</p>`))
	if got := browsertest.Eval[string](t, ctx, visualOrderJS+`("#x")`); got != "reversed" {
		t.Fatalf("the visual-order check reads an unisolated override as %q, want reversed", got)
	}

	t.Run("RLO in the name", func(t *testing.T) {
		browsertest.Do(t, ctx, "open", chromedp.Navigate(app+rlo), chromedp.WaitVisible(chromedp.ID("msg-from")))
		for _, sel := range []string{"#msg-from .email", "#msg-from", "#msg-subject"} {
			if got := browsertest.Eval[string](t, ctx, visualOrderJS+`(`+jsString(sel)+`)`); got != "ltr" {
				t.Errorf("%s is drawn %s", sel, got)
			}
		}
		if got := browsertest.Eval[string](t, ctx, `document.querySelector("#msg-from .email").innerText`); got != "<alice@example.test>" {
			t.Errorf("the address box shows %q, want <alice@example.test>", got)
		}
		// Separate: the address is its own box, beside the name, not overlapping it.
		if !browsertest.Eval[bool](t, ctx, `(function () {
			const n = document.querySelector("#msg-from .name").getBoundingClientRect();
			const e = document.querySelector("#msg-from .email").getBoundingClientRect();
			return e.width > 0 && (e.left >= n.right || e.top >= n.bottom);
		})()`) {
			t.Error("the address box is not drawn apart from the name")
		}
		if got := browsertest.Eval[string](t, ctx, `document.getElementById("msg-subject").innerText`); got != "Invoice fdp.exe" {
			t.Errorf("subject reads %q, want the override removed: Invoice fdp.exe", got)
		}
		if dir != "" {
			t.Logf("spoof-rlo.png: %d bytes", browsertest.Screenshot(t, ctx, filepath.Join(dir, "spoof-rlo.png")))
		}
	})
	t.Run("name holding another address", func(t *testing.T) {
		browsertest.Do(t, ctx, "open", chromedp.Navigate(app+named), chromedp.WaitVisible(chromedp.ID("msg-from")))
		warn := browsertest.Eval[string](t, ctx, `(function () {
			const w = document.querySelector("#msg-from .spoof-warning");
			return w && w.offsetParent !== null ? w.innerText : "";
		})()`)
		if !strings.Contains(warn, "admin@postern.example") || !strings.Contains(warn, "mallory@evil.example") {
			t.Errorf("visible warning = %q, want one naming both addresses", warn)
		}
		if got := browsertest.Eval[string](t, ctx, `document.querySelector("#msg-from .email").innerText`); got != "<mallory@evil.example>" {
			t.Errorf("the address box shows %q, want <mallory@evil.example>", got)
		}
		if dir != "" {
			t.Logf("spoof-flagged.png: %d bytes", browsertest.Screenshot(t, ctx, filepath.Join(dir, "spoof-flagged.png")))
		}
	})
	t.Run("flag in the list", func(t *testing.T) {
		browsertest.Do(t, ctx, "list", chromedp.Navigate(app+"/mail/INBOX"), chromedp.WaitVisible(chromedp.ID("main")))
		if n := browsertest.Eval[float64](t, ctx, `document.querySelectorAll("table.messages .spoof-flag").length`); n < 1 {
			t.Error("the list flags no sender")
		}
		if dir != "" {
			t.Logf("spoof-list.png: %d bytes", browsertest.Screenshot(t, ctx, filepath.Join(dir, "spoof-list.png")))
		}
	})
}

func jsString(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
