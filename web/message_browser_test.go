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
	"context"
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

// colouredInvoice is the invoice with colours of its own: a cream table and dark grey text, designed for white.
func colouredInvoice() string {
	return strings.Replace(invoiceMail(40<<10), "<p>Hello Alice,</p>",
		`<table bgcolor="#fdf6e3" width="560"><tr><td style="color:#333333">Hello Alice,</td></tr></table>`, 1)
}

// longMail is the invoice with eight long paragraphs.
func longMail() string {
	return strings.Replace(invoiceMail(1), "<p>please find invoice 2026-117 attached.</p>",
		strings.Repeat("<p>"+strings.Repeat("A long line of text. ", 30)+"</p>", 8), 1)
}

// TestBrowserMessageReading checks the reading page of issue 15 in Chromium: the invoice case (three lines of HTML
// and a PDF) at 1280×800 shows its attachment without scrolling, in a frame sized to the mail rather than a 600 px
// slab; the frame's text is a readable sans-serif; a mail without colours follows dark mode and one with colours
// stays on light paper; app.js resizes the frame for a phone without reading the frame; an image opens in the
// browser's viewer under Postern's CSP; and a PDF part is never shown in the browser's PDF viewer (whose script
// would run, TestBrowserPDFViewerDecision). It writes docs/screenshots/message-attachments.png.
func TestBrowserMessageReading(t *testing.T) {
	rd := newReader(t)
	invoice := messagePath("INBOX", rd.deliver(t, "INBOX", []byte(invoiceMail(40<<10))))
	coloured := messagePath("INBOX", rd.deliver(t, "INBOX", []byte(colouredInvoice())))
	long := messagePath("INBOX", rd.deliver(t, "INBOX", []byte(longMail())))
	files := messagePath("INBOX", rd.deliver(t, "INBOX", []byte(attachmentsMail())))
	scripted := messagePath("INBOX", rd.deliver(t, "INBOX", []byte(strings.Replace(attachmentsMail(),
		"/JavaScript (app.alert(1))", strings.TrimPrefix(scriptedPDF("postern-pdf-script"), "%PDF-1.4\n"), 1))))

	ctx, rec := browsertest.Start(t)
	signInBrowser(t, ctx, rd.s, "alice")
	app := rd.s.ts.URL
	open := func(t *testing.T, width, height int64, scheme, path string) {
		t.Helper()
		browsertest.Do(t, ctx, "open "+path, browsertest.Emulate(width, height, width < 700, scheme), chromedp.Navigate(app+path))
		browsertest.WaitTrue(t, ctx, path, `document.readyState === "complete" && !!document.getElementById("msg-html")`)
		// The frame's document: DevTools may read it (FrameEval), the page may not.
		for i := 0; i < 50; i++ {
			if ok, found := browsertest.FrameEval[bool](t, ctx, `document.readyState === "complete" && !!document.body`); found && ok {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: the frame did not load", path)
	}
	frameBox := func(t *testing.T) (height, content float64) {
		t.Helper()
		height = browsertest.Eval[float64](t, ctx, `document.getElementById("msg-html").getBoundingClientRect().height`)
		// The body's own box: the root's scrollHeight is never less than the frame's viewport.
		content, _ = browsertest.FrameEval[float64](t, ctx, `Math.ceil(document.body.getBoundingClientRect().height)`)
		return height, content
	}

	t.Run("InvoiceAtDesktop", func(t *testing.T) {
		open(t, 1280, 800, "light", invoice)
		bottom := browsertest.Eval[float64](t, ctx, `document.querySelector(".attachments").getBoundingClientRect().bottom`)
		if bottom <= 0 || bottom > 800 {
			t.Errorf("the attachment list ends at %.0f px, want it within the 800 px viewport", bottom)
		}
		if name := browsertest.Eval[string](t, ctx, `document.querySelector(".attachments .att-name").textContent`); name != "invoice-2026-117.pdf" {
			t.Errorf("first attachment = %q", name)
		}
		h, content := frameBox(t)
		t.Logf("invoice: frame %.0f px, content %.0f px", h, content)
		if h > 250 {
			t.Errorf("the frame of a three-line mail is %.0f px tall, want at most 250 (the old frame was 600)", h)
		}
		if content > h+2 {
			t.Errorf("the frame (%.0f px) is shorter than its content (%.0f px): a scroll bar inside", h, content)
		}
		font, _ := browsertest.FrameEval[string](t, ctx, `getComputedStyle(document.body).fontFamily + " " + getComputedStyle(document.body).fontSize`)
		if !strings.Contains(font, "system-ui") || !strings.HasSuffix(font, " 15px") {
			t.Errorf("frame font = %q, want system-ui at 15px", font)
		}
		if n := browsertest.Screenshot(t, ctx, filepath.Join("..", "docs", "screenshots", "message-attachments.png")); n == 0 {
			t.Error("empty screenshot")
		}
	})

	t.Run("DarkModeWithoutColours", func(t *testing.T) {
		open(t, 1280, 800, "dark", invoice)
		bg, _ := browsertest.FrameEval[string](t, ctx, `getComputedStyle(document.body).backgroundColor`)
		fg, _ := browsertest.FrameEval[string](t, ctx, `getComputedStyle(document.body).color`)
		if bg != "rgb(30, 33, 37)" || fg != "rgb(230, 231, 232)" {
			t.Errorf("dark mode, mail without colours: frame %s on %s, want rgb(230, 231, 232) on rgb(30, 33, 37)", fg, bg)
		}
	})

	t.Run("DarkModeWithColours", func(t *testing.T) {
		open(t, 1280, 800, "dark", coloured)
		bg, _ := browsertest.FrameEval[string](t, ctx, `getComputedStyle(document.body).backgroundColor`)
		table, _ := browsertest.FrameEval[string](t, ctx, `getComputedStyle(document.querySelector("table")).backgroundColor`)
		text, _ := browsertest.FrameEval[string](t, ctx, `getComputedStyle(document.querySelector("td")).color`)
		if bg != "rgb(255, 255, 255)" || table != "rgb(253, 246, 227)" || text != "rgb(51, 51, 51)" {
			t.Errorf("dark mode, mail with colours: paper %s, table %s, text %s; want the mail's own light design", bg, table, text)
		}
		if c := browsertest.Eval[string](t, ctx, `document.getElementById("msg-html").className`); c != "msg-html msg-paper" {
			t.Errorf("frame class = %q, want msg-html msg-paper", c)
		}
	})

	t.Run("ResizedForPhone", func(t *testing.T) {
		open(t, 1280, 800, "light", long)
		desk, content := frameBox(t)
		t.Logf("desktop: frame %.0f px, content %.0f px", desk, content)
		if content > desk+2 || desk > content*1.3+40 {
			t.Errorf("desktop: frame %.0f px for content of %.0f px", desk, content)
		}
		open(t, 390, 844, "light", long)
		phone, content := frameBox(t)
		t.Logf("phone: frame %.0f px, content %.0f px", phone, content)
		if phone <= desk {
			t.Errorf("phone: frame %.0f px, not taller than on the desktop (%.0f px)", phone, desk)
		}
		if content > phone+2 || phone > content*1.3+40 {
			t.Errorf("phone: frame %.0f px for content of %.0f px", phone, content)
		}
	})

	t.Run("ImageView", func(t *testing.T) {
		open(t, 1280, 800, "light", files)
		view := browsertest.Eval[string](t, ctx, `document.querySelector(".att-view").getAttribute("href")`)
		browsertest.Do(t, ctx, "view image", chromedp.Navigate(app+view))
		browsertest.WaitTrue(t, ctx, "image viewer", `document.images.length === 1 && document.images[0].complete`)
		if w := browsertest.Eval[int](t, ctx, `document.images[0].naturalWidth`); w != 1 {
			t.Errorf("the viewed image has naturalWidth %d, want 1", w)
		}
	})

	t.Run("PDFNeverInViewer", func(t *testing.T) {
		open(t, 1280, 800, "light", scripted)
		links := browsertest.Eval[[]string](t, ctx, `Array.from(document.querySelectorAll(".att-name")).filter(a => a.textContent === "report.pdf").map(a => a.getAttribute("href"))`)
		if len(links) != 1 {
			t.Fatalf("report.pdf links = %v", links)
		}
		base, _, _ := strings.Cut(links[0], "?")
		for _, u := range []string{links[0], base} {
			rec.Reset()
			nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_ = chromedp.Do(nctx, chromedp.Navigate(app+u)) // a download aborts the navigation
			cancel()
			time.Sleep(2 * time.Second)
			if _, _, dialogs := rec.Snapshot(); len(dialogs) > 0 {
				t.Errorf("GET %s: the PDF's script ran (dialogs %q)", u, dialogs)
			}
			if ct := browsertest.Eval[string](t, ctx, `document.contentType`); ct == "application/pdf" {
				t.Errorf("GET %s: Chromium shows the PDF in its viewer", u)
			}
		}
	})
}
