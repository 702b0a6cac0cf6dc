package web

import (
	"encoding/base64"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/postern/postern/internal/sanitize"
)

// attachmentsMail has one attachment of each kind the list treats differently: a raster image (viewable), an SVG
// (an image that is a scripting context: download only), a PDF (download only), a Word file sent as
// application/octet-stream (named by its extension) and a ZIP.
func attachmentsMail() string {
	part := func(ctype, name, body string) string {
		return "--mixed\nContent-Type: " + ctype + "; name=\"" + name + "\"\nContent-Disposition: attachment; filename=\"" + name +
			"\"\nContent-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString([]byte(body)) + "\n"
	}
	png, _ := base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
	return `From: Bob <bob@example.test>
To: Alice <alice@example.test>
Date: Fri, 4 Dec 2026 09:00:00 +0000
Subject: Files
Message-ID: <files@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: text/html; charset=utf-8

<p>Files attached.</p>
` + part("image/png", "pixel.png", string(png)) +
		part("image/svg+xml", "logo.svg", `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`) +
		part("application/pdf", "report.pdf", "%PDF-1.4\n/JavaScript (app.alert(1))\n") +
		part("application/octet-stream", "cv.docx", "PK\x03\x04 not really") +
		part("application/zip", "photos.zip", "PK\x03\x04") + "--mixed--\n"
}

func TestAttachmentList(t *testing.T) {
	rd := newReader(t)
	uid := rd.deliver(t, "INBOX", []byte(attachmentsMail()))
	self := messagePath("INBOX", uid)
	page := rd.get(t, self)
	if page.status != http.StatusOK {
		t.Fatalf("GET message = %d", page.status)
	}
	// Above the body: the list comes before the frame in the document (and so on screen).
	if a, f := strings.Index(page.body, `class="attachments"`), strings.Index(page.body, `<iframe`); a < 0 || f < 0 || a > f {
		t.Errorf("attachments at %d, frame at %d: want the list above the body", a, f)
	}
	for _, want := range []string{
		`<span class="att-badge att-image" aria-hidden="true">PNG</span>`, `PNG image · 70 B`,
		`<span class="att-badge att-image" aria-hidden="true">SVG</span>`, `SVG image`,
		`<span class="att-badge att-pdf" aria-hidden="true">PDF</span>`, `PDF document`,
		`<span class="att-badge att-doc" aria-hidden="true">DOC</span>`, `Word document`,
		`<span class="att-badge att-archive" aria-hidden="true">ZIP</span>`, `ZIP archive`,
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("message page lacks %q", want)
		}
	}
	for _, raw := range []string{"image/png", "application/pdf", "application/octet-stream", "application/zip", "image/svg+xml"} {
		if strings.Contains(page.body, raw) {
			t.Errorf("message page shows the raw type %q", raw)
		}
	}
	// "View" is offered for the raster image only.
	views := regexp.MustCompile(`class="att-view" href="([^"]+)"`).FindAllStringSubmatch(page.body, -1)
	if len(views) != 1 {
		t.Fatalf("View links = %v, want one (the PNG)", views)
	}
	v := rd.get(t, views[0][1])
	if v.status != http.StatusOK {
		t.Fatalf("GET %s = %d", views[0][1], v.status)
	}
	h := v.header
	if disp, _, _ := mime.ParseMediaType(h.Get("Content-Disposition")); disp != "inline" || h.Get("Content-Type") != "image/png" {
		t.Errorf("View: %q, %q; want inline image/png", h.Get("Content-Disposition"), h.Get("Content-Type"))
	}
	if got := h.Get("Content-Security-Policy"); got != "default-src 'none'; img-src 'self'; sandbox" {
		t.Errorf("View CSP = %q", got)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("View lacks nosniff")
	}

	// Every part, downloaded or asked for without ?download=1: only the PNG is ever inline; SVG and PDF are
	// attachments with the inert headers.
	for _, l := range partLinks(t, page.body, self) {
		base, _, _ := strings.Cut(l, "?")
		for _, u := range []string{l, base} {
			r := rd.get(t, u)
			if r.status != http.StatusOK {
				t.Errorf("GET %s = %d", u, r.status)
				continue
			}
			checkPartHeaders(t, u, r)
			disp, params, _ := mime.ParseMediaType(r.header.Get("Content-Disposition"))
			inline := params["filename"] == "pixel.png" && u == base
			if (disp == "inline") != inline {
				t.Errorf("GET %s: disposition %q, want inline only for the PNG's view", u, disp)
			}
			switch params["filename"] {
			case "logo.svg":
				if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
					t.Errorf("SVG served as %q, want application/octet-stream", ct)
				}
			case "report.pdf":
				if got := r.header.Get("Content-Security-Policy"); got != "default-src 'none'; sandbox" {
					t.Errorf("PDF CSP = %q, want default-src 'none'; sandbox", got)
				}
			}
		}
	}
}

// TestMessageFrameSizing: the invoice of issue 15 gets a small frame (the server's estimate, in the height
// attribute), a long message a tall one; the frame's own document gets the readable stylesheet; a message that sets
// its own colours is on light paper, one that does not follows the reader's theme.
func TestMessageFrameSizing(t *testing.T) {
	rd := newReader(t)
	invoice := rd.deliver(t, "INBOX", []byte(invoiceMail(40<<10)))
	long := rd.deliver(t, "INBOX", []byte(strings.Replace(invoiceMail(1),
		"<p>please find invoice 2026-117 attached.</p>", strings.Repeat("<p>"+strings.Repeat("A long line of text. ", 30)+"</p>", 40), 1)))
	coloured := rd.deliver(t, "INBOX", []byte(strings.Replace(invoiceMail(1),
		"<p>Hello Alice,</p>", `<table bgcolor="#fdf6e3" width="600"><tr><td style="color:#333">Hello Alice,</td></tr></table>`, 1)))

	height := regexp.MustCompile(`<iframe class="msg-html ([a-z-]+)"[^>]* height="(\d+)" data-heights="([0-9 ]+)"`)
	frame := func(uid uint32) (class string, h int, heights string) {
		t.Helper()
		r := rd.get(t, messagePath("INBOX", uid))
		m := height.FindStringSubmatch(r.body)
		if m == nil {
			t.Fatalf("message %d: no sized frame in the page", uid)
		}
		h, _ = strconv.Atoi(m[2])
		return m[1], h, m[3]
	}
	class, h, heights := frame(invoice)
	if h < 96 || h > 250 {
		t.Errorf("invoice frame height = %d, want a small frame (96–250), not the old 600", h)
	}
	if class != "msg-adaptive" {
		t.Errorf("invoice frame class = %q, want msg-adaptive", class)
	}
	if f := strings.Fields(heights); len(f) != 6 || f[0] != "360" || f[4] != "960" || f[5] != strconv.Itoa(h) {
		t.Errorf("data-heights = %q, want 3 width/height pairs ending with 960 %d", heights, h)
	}
	if _, h, _ := frame(long); h < 1000 {
		t.Errorf("long message frame height = %d, want over 1000", h)
	}
	if class, _, _ := frame(coloured); class != "msg-paper" {
		t.Errorf("coloured message frame class = %q, want msg-paper", class)
	}

	doc := rd.get(t, messagePath("INBOX", invoice)+"/html")
	if !strings.Contains(doc.body, "<html><head>") || !strings.Contains(doc.body, sanitize.FrameCSS) {
		t.Errorf("frame document lacks the adaptive root or the frame stylesheet:\n%.300s", doc.body)
	}
	doc = rd.get(t, messagePath("INBOX", coloured)+"/html")
	if !strings.Contains(doc.body, `<html class="paper"><head>`) {
		t.Errorf("coloured frame document is not on paper:\n%.300s", doc.body)
	}
}
