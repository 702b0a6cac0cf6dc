package web

import (
	"bytes"
	"context"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/mail"
)

// reader is a signed-in browser plus a way to put messages into the user's mailbox through Postern's own mail
// session (IMAP APPEND), so that each test controls exactly what it reads.
type reader struct {
	s     *stack
	b     *browser
	grant string
}

func newReader(t *testing.T) *reader {
	t.Helper()
	s := newStack(t)
	b := newBrowser(t)
	if r := s.signIn(b, "alice", "/mail/INBOX"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in callback = %d: %s", r.status, r.body)
	}
	ids, err := s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject("alice"))
	if err != nil || len(ids) != 1 {
		t.Fatalf("grants of alice = %v, %v; want one", ids, err)
	}
	return &reader{s: s, b: b, grant: ids[0]}
}

// deliver appends raw (LF or CRLF line ends) to box, unseen, and returns its UID.
func (rd *reader) deliver(t *testing.T, box string, raw []byte) uint32 {
	t.Helper()
	raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	var uid uint32
	_, err := rd.s.web.withMail(context.Background(), rd.grant, func(ms *mail.Session) error {
		if err := ms.Append(context.Background(), box, nil, raw); err != nil {
			return err
		}
		p, err := ms.List(context.Background(), box, 0, 1)
		if err != nil {
			return err
		}
		if len(p.Summaries) == 0 {
			t.Fatalf("no message in %s after APPEND", box)
		}
		uid = p.Summaries[0].UID
		return nil
	})
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	return uid
}

// deliverAlone puts raw alone into a new mailbox and returns its UID, 1 (the dev server numbers a new mailbox's
// messages from 1). It needs no listing, which matters for messages whose structure the dev server describes in a
// BODYSTRUCTURE that go-imap's client cannot parse (a multipart without parts): one such message would break every
// listing of its mailbox.
func (rd *reader) deliverAlone(t *testing.T, box string, raw []byte) uint32 {
	t.Helper()
	raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	_, err := rd.s.web.withMail(context.Background(), rd.grant, func(ms *mail.Session) error {
		if err := ms.CreateMailbox(context.Background(), box); err != nil {
			return err
		}
		return ms.Append(context.Background(), box, nil, raw)
	})
	if err != nil {
		t.Fatalf("deliver to %s: %v", box, err)
	}
	return 1
}

func (rd *reader) summary(t *testing.T, box string, uid uint32) mail.Summary {
	t.Helper()
	var sum mail.Summary
	_, err := rd.s.web.withMail(context.Background(), rd.grant, func(ms *mail.Session) error {
		p, err := ms.List(context.Background(), box, uid+1, 1)
		if err != nil {
			return err
		}
		if len(p.Summaries) == 0 || p.Summaries[0].UID != uid {
			t.Fatalf("message %d not listed in %s", uid, box)
		}
		sum = p.Summaries[0]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func (rd *reader) get(t *testing.T, path string) response {
	t.Helper()
	return rd.b.get(rd.s.ts.URL + path)
}

const dotGIF = "R0lGODlhAQABAIAAAP///wAAACwAAAAAAQABAAACAkQBADs="

const htmlWithImage = `From: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_Team?= <team@example.org>
To: Alice <alice@example.test>, bob@example.test
Cc: Carol <carol@example.test>
Date: Fri, 20 Nov 2026 10:00:00 +0000
Subject: =?UTF-8?B?w5xiZXJzaWNodCA8Yj5RNDwvYj4=?=
Message-ID: <html-image@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<html><body><p>Our badge: <img src="cid:dot@example.org" alt="dot"></p>
<img src="https://tracker.example/open.gif"><script>document.title='PWNED'</script>
<a href="https://example.org/more">more</a></body></html>
--rel
Content-Type: image/gif
Content-ID: <dot@example.org>
Content-Disposition: inline; filename="dot.gif"
Content-Transfer-Encoding: base64

` + dotGIF + `
--rel--
--mixed
Content-Type: text/html; name="page.html"
Content-Disposition: attachment; filename="page.html"

<script>alert(1)</script>
--mixed
Content-Type: application/pdf; name="Rechnung März.pdf"
Content-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--mixed--
`

const plainText = `From: Bob <bob@example.test>
To: Alice <alice@example.test>
Date: Fri, 20 Nov 2026 11:00:00 +0000
Subject: Plain <b>text</b>
Message-ID: <plain@example.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hi Alice,

see https://example.org/a?b=1&c=2. Or (https://en.wikipedia.org/wiki/Go_(programming_language)).
Not a link: javascript:alert(1) nor <script>alert(2)</script>.
Write to mailto:carol@example.test!

On Thursday Carol wrote:
> first quoted line
> second https://example.org/quoted
Bye
`

func TestMessagePlainText(t *testing.T) {
	rd := newReader(t)
	uid := rd.deliver(t, "INBOX", []byte(plainText))
	if rd.summary(t, "INBOX", uid).Seen {
		t.Fatal("a delivered message is already \\Seen")
	}
	r := rd.get(t, messagePath("INBOX", uid))
	if r.status != http.StatusOK {
		t.Fatalf("GET message = %d: %s", r.status, r.body)
	}
	for _, want := range []string{
		`Plain &lt;b&gt;text&lt;/b&gt;`, // subject escaped, in the heading and the title
		`<title>Plain &lt;b&gt;text&lt;/b&gt; · Postern</title>`,
		`<span class="person"><bdi class="name">Bob</bdi> <bdi class="email" dir="ltr">&lt;bob@example.test&gt;</bdi></span>`,
		`<a href="https://example.org/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">https://example.org/a?b=1&amp;c=2</a>.`,
		`<a href="https://en.wikipedia.org/wiki/Go_%28programming_language%29" target="_blank" rel="noopener noreferrer">https://en.wikipedia.org/wiki/Go_(programming_language)</a>).`,
		`<a href="mailto:carol@example.test" target="_blank" rel="noopener noreferrer">mailto:carol@example.test</a>!`,
		`javascript:alert(1) nor &lt;script&gt;alert(2)&lt;/script&gt;`,
		`<details class="quote"><summary>Quoted text (2 lines)</summary>`,
		`<a href="https://example.org/quoted"`,
		`Bye`,
		`href="` + messagePath("INBOX", uid) + `/raw"`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("message page lacks %q", want)
		}
	}
	if strings.Contains(r.body, "<iframe") {
		t.Error("a text/plain message is shown in a frame")
	}
	if got := r.header.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("message page X-Frame-Options = %q, want the site-wide DENY", got)
	}
	if !rd.summary(t, "INBOX", uid).Seen {
		t.Error("reading the message did not mark it \\Seen")
	}
}

func TestMessageHTMLIsFramed(t *testing.T) {
	rd := newReader(t)
	uid := rd.deliver(t, "INBOX", []byte(htmlWithImage))
	self := messagePath("INBOX", uid)

	r := rd.get(t, self)
	if r.status != http.StatusOK {
		t.Fatalf("GET message = %d: %s", r.status, r.body)
	}
	for _, want := range []string{
		`<iframe class="msg-html msg-adaptive" id="msg-html" title="Message content" src="` + self + `/html" sandbox="allow-popups allow-popups-to-escape-sandbox"`,
		`Übersicht &lt;b&gt;Q4&lt;/b&gt;`,
		`<span class="person"><bdi class="name">Grüße Team</bdi> <bdi class="email" dir="ltr">&lt;team@example.org&gt;</bdi></span>`,
		`<span class="person"><bdi class="name">Alice</bdi> <bdi class="email" dir="ltr">&lt;alice@example.test&gt;</bdi></span>, <span class="person"><bdi class="email" dir="ltr">&lt;bob@example.test&gt;</bdi></span>`,
		`<span class="person"><bdi class="name">Carol</bdi> <bdi class="email" dir="ltr">&lt;carol@example.test&gt;</bdi></span>`,
		`1 remote reference was blocked`,
		`href="` + self + `?remote=1" id="show-remote"`,
		`page.html`, `Rechnung März.pdf`, `PDF document · 9 B`, `HTML document`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("message page lacks %q", want)
		}
	}
	for _, bad := range []string{"allow-scripts", "allow-same-origin", "PWNED", "tracker.example"} {
		if strings.Contains(r.body, bad) {
			t.Errorf("message page contains %q", bad)
		}
	}

	f := rd.get(t, self+"/html")
	if f.status != http.StatusOK {
		t.Fatalf("GET frame = %d: %s", f.status, f.body)
	}
	csp := f.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "img-src data: 'self';", "style-src 'unsafe-inline'", "frame-ancestors 'self'", "sandbox allow-popups"} {
		if !strings.Contains(csp, want) {
			t.Errorf("frame CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "script") || strings.Contains(csp, "http:") {
		t.Errorf("frame CSP %q allows scripts or remote content", csp)
	}
	if got := f.header.Get("X-Frame-Options"); got != "SAMEORIGIN" {
		t.Errorf("frame X-Frame-Options = %q, want SAMEORIGIN", got)
	}
	if got := f.header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("frame Referrer-Policy = %q, want no-referrer", got)
	}
	if !strings.Contains(f.body, `<img src="data:image/gif;base64,`+dotGIF+`" alt="dot"/>`) {
		t.Errorf("frame does not inline the cid: image as a data: URL:\n%s", f.body)
	}
	for _, bad := range []string{"<script", "PWNED", "tracker.example"} {
		if strings.Contains(f.body, bad) {
			t.Errorf("frame contains %q:\n%s", bad, f.body)
		}
	}
	if !strings.Contains(f.body, `<a href="https://example.org/more" target="_blank" rel="noopener noreferrer">more</a>`) {
		t.Errorf("frame link not rewritten:\n%s", f.body)
	}

	// Remote content: only the frame's CSP and allowlist change; the server fetches nothing.
	rr := rd.get(t, self+"?remote=1")
	if !strings.Contains(rr.body, `src="`+self+`/html?remote=1"`) || strings.Contains(rr.body, "show-remote") {
		t.Error("?remote=1 does not point the frame at the remote variant")
	}
	fr := rd.get(t, self+"/html?remote=1")
	if csp := fr.header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src data: 'self' https: http:;") {
		t.Errorf("remote frame CSP = %q, want http(s) images allowed", csp)
	}
	if !strings.Contains(fr.body, `src="https://tracker.example/open.gif"`) {
		t.Errorf("remote frame lacks the remote image:\n%s", fr.body)
	}

	// Plain-text fallback link appears only when there is a text part; this message has none.
	if strings.Contains(r.body, `id="view-text"`) {
		t.Error("offers a plain-text view of an HTML-only message")
	}
}

func TestMessageParts(t *testing.T) {
	rd := newReader(t)
	uid := rd.deliver(t, "INBOX", []byte(htmlWithImage))
	self := messagePath("INBOX", uid)
	page := rd.get(t, self)
	links := partLinks(t, page.body, self)
	if len(links) != 2 {
		t.Fatalf("attachment links = %v, want 2", links)
	}
	for _, l := range links {
		r := rd.get(t, l)
		if r.status != http.StatusOK {
			t.Errorf("GET %s = %d", l, r.status)
			continue
		}
		checkPartHeaders(t, l, r)
		ct := r.header.Get("Content-Type")
		disp, params, _ := mime.ParseMediaType(r.header.Get("Content-Disposition"))
		switch params["filename"] {
		case "page.html":
			if ct != "application/octet-stream" || disp != "attachment" {
				t.Errorf("HTML attachment served as %q, %q; want application/octet-stream, attachment", ct, disp)
			}
			if !strings.Contains(r.body, "<script>") {
				t.Errorf("HTML attachment body = %q, want the raw content (as a download)", r.body)
			}
		case "Rechnung März.pdf":
			if ct != "application/pdf" || disp != "attachment" {
				t.Errorf("PDF served as %q, %q", ct, disp)
			}
			if !strings.Contains(r.header.Get("Content-Disposition"), "filename*=utf-8''Rechnung%20M%C3%A4rz.pdf") {
				t.Errorf("Content-Disposition = %q, want the RFC 2231 form", r.header.Get("Content-Disposition"))
			}
		default:
			t.Errorf("unexpected attachment %q", r.header.Get("Content-Disposition"))
		}
	}

	// The inline image, found through the message's structure, is served inline as an image.
	var inline mail.Part
	_, err := rd.s.web.withMail(context.Background(), rd.grant, func(ms *mail.Session) error {
		m, err := ms.Message(context.Background(), "INBOX", uid)
		if err != nil {
			return err
		}
		if len(m.Inline) != 1 {
			t.Fatalf("message has %d inline parts, want 1", len(m.Inline))
		}
		inline = m.Inline[0]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rd.get(t, self+"/part/"+inline.Path)
	checkPartHeaders(t, "inline image", r)
	if ct, disp := r.header.Get("Content-Type"), r.header.Get("Content-Disposition"); ct != "image/gif" || !strings.HasPrefix(disp, "inline") {
		t.Errorf("inline image served as %q, %q; want image/gif, inline", ct, disp)
	}
	if r = rd.get(t, self+"/part/"+inline.Path+"?download=1"); !strings.HasPrefix(r.header.Get("Content-Disposition"), "attachment") {
		t.Errorf("?download=1 gives %q, want attachment", r.header.Get("Content-Disposition"))
	}

	for _, bad := range []string{"0", "1.0", "1.-2", "1..2", "a", "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17"} {
		if r := rd.get(t, self+"/part/"+bad); r.status != http.StatusNotFound {
			t.Errorf("GET part %q = %d, want 404", bad, r.status)
		}
	}
}

func checkPartHeaders(t *testing.T, what string, r response) {
	t.Helper()
	if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options = %q", what, got)
	}
	ct := r.header.Get("Content-Type")
	disp, _, _ := mime.ParseMediaType(r.header.Get("Content-Disposition"))
	wantCSP := "default-src 'none'; sandbox"
	if disp == "inline" {
		wantCSP = imageViewCSP
	}
	if got := r.header.Get("Content-Security-Policy"); got != wantCSP {
		t.Errorf("%s: CSP = %q, want %q", what, got, wantCSP)
	}
	if strings.Contains(ct, "html") || strings.Contains(ct, "svg") || strings.Contains(ct, "xml") || strings.Contains(ct, "javascript") {
		t.Errorf("%s: Content-Type = %q", what, ct)
	}
	if _, _, err := mime.ParseMediaType(r.header.Get("Content-Disposition")); err != nil {
		t.Errorf("%s: Content-Disposition %q: %v", what, r.header.Get("Content-Disposition"), err)
	}
	if disp == "inline" && !inlineImageTypes[ct] {
		t.Errorf("%s: %s served inline", what, ct)
	}
}

// partLinks returns the attachment links of a message page.
func partLinks(t *testing.T, page, self string) []string {
	t.Helper()
	var out []string
	z := html.NewTokenizer(strings.NewReader(page))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		for _, a := range z.Token().Attr {
			if a.Key == "href" && strings.HasPrefix(a.Val, self+"/part/") {
				out = append(out, a.Val)
			}
		}
	}
	return out
}

func TestMessageSource(t *testing.T) {
	rd := newReader(t)
	uid := rd.deliver(t, "INBOX", []byte(plainText))
	r := rd.get(t, messagePath("INBOX", uid)+"/raw")
	if r.status != http.StatusOK {
		t.Fatalf("GET raw = %d", r.status)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("raw Content-Type = %q", ct)
	}
	if d := r.header.Get("Content-Disposition"); d != "inline" {
		t.Errorf("raw Content-Disposition = %q, want inline", d)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(r.header.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("raw headers = %v", r.header)
	}
	if !strings.Contains(r.body, "Subject: Plain <b>text</b>") || !strings.Contains(r.body, "<script>alert(2)</script>") {
		t.Errorf("raw body is not the source:\n%s", r.body)
	}
	d := rd.get(t, messagePath("INBOX", uid)+"/raw?download=1")
	if got := d.header.Get("Content-Disposition"); got != `attachment; filename=message-`+strconv.Itoa(int(uid))+`.eml` {
		t.Errorf("raw download Content-Disposition = %q", got)
	}
}

func TestMessageNotFound(t *testing.T) {
	rd := newReader(t)
	uid := rd.deliver(t, "INBOX", []byte(plainText))
	gone := uid + 1000
	for _, suffix := range []string{"", "/html", "/raw", "/part/1"} {
		r := rd.get(t, messagePath("INBOX", gone)+suffix)
		if r.status != http.StatusNotFound || !strings.Contains(r.body, "That message is no longer in Inbox — it may have been moved or deleted.") {
			t.Errorf("GET vanished message%s = %d, want 404 with a friendly message; body: %.300s", suffix, r.status, r.body)
		}
	}
	for _, p := range []string{"/msg/INBOX/0", "/msg/INBOX/abc", "/msg/INBOX/99999999999"} {
		if r := rd.get(t, p); r.status != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, r.status)
		}
	}
	// The mailbox is one path segment: "No/Such" arrives whole, and is reported as a missing folder.
	r := rd.get(t, messagePath("No/Such", 1))
	if r.status != http.StatusNotFound || !strings.Contains(r.body, "no folder") {
		t.Errorf("GET %s = %d, want 404 for the folder; body: %.300s", messagePath("No/Such", 1), r.status, r.body)
	}
}

func TestMessageNeedsSignIn(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	for _, p := range []string{"/msg/INBOX/1", "/msg/INBOX/1/html", "/msg/INBOX/1/part/2", "/msg/INBOX/1/raw"} {
		r := b.get(s.ts.URL + p)
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/login?return_to=") {
			t.Errorf("GET %s signed out = %d to %q, want 303 to /login", p, r.status, r.location)
		}
	}
}

// TestHostileCorpusEndToEnd reads every message of testdata/hostile through the real handlers: the page always
// renders (broken MIME included), contains no active markup, the frame passes the same checks and carries its CSP,
// and every part is served under safe headers.
func TestHostileCorpusEndToEnd(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "hostile", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("hostile corpus: %v, %d files", err, len(files))
	}
	// named are the checks particular to one message of the corpus; each message must be there, or its check would
	// silently stop running.
	named := map[string]func(t *testing.T, c shown){
		"encoded-word-headers.eml": func(t *testing.T, c shown) {
			if !strings.Contains(c.page.body, `<h1 id="msg-subject" class="boxname"><bdi>&lt;script&gt;document.title=`) {
				t.Error("the encoded-word subject is not shown decoded and escaped")
			}
		},
		"html-attachment.eml": func(t *testing.T, c shown) {
			if len(c.links) != 3 {
				t.Errorf("attachment links = %v, want 3", c.links)
			}
		},
		"cid-smuggling.eml": func(t *testing.T, c shown) {
			if n := strings.Count(c.frame, `src="data:image/gif;base64,`); n != 1 || strings.Count(c.frame, "src=") != 1 {
				t.Errorf("frame inlines %d GIFs and %d sources, want only the one real image:\n%s", n, strings.Count(c.frame, "src="), c.frame)
			}
		},
		"tracking-pixel.eml": func(t *testing.T, c shown) {
			if !strings.Contains(c.page.body, "4 remote references were blocked") {
				t.Error("the page does not say that 4 remote references were blocked")
			}
			// multipart/alternative: the plain-text version is one click away, and back.
			if !strings.Contains(c.page.body, `href="`+c.self+`?text=1" id="view-text"`) {
				t.Error("no link to the plain-text version")
			}
			txt := c.rd.get(t, c.self+"?text=1").body
			if strings.Contains(txt, "<iframe") || !strings.Contains(txt, `<a href="https://news.example/weekly?id=1"`) ||
				!strings.Contains(txt, `href="`+c.self+`" id="view-html"`) {
				t.Error("?text=1 does not show the linkified text part with a way back")
			}
		},
		"broken-boundary.eml": func(t *testing.T, c shown) {
			if !strings.Contains(c.page.body, `id="malformed"`) || !strings.Contains(c.page.body, "wrong boundary") {
				t.Error("a message with a broken MIME structure is not shown as raw text")
			}
		},
	}
	seen := map[string]bool{}
	rd := newReader(t)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		seen[name] = true
		box := "Hostile/" + strings.TrimSuffix(name, ".eml")
		uid := rd.deliverAlone(t, box, raw)
		t.Run(name, func(t *testing.T) {
			self := messagePath(box, uid)
			page := rd.get(t, self)
			if page.status != http.StatusOK {
				t.Fatalf("GET message = %d: %.500s", page.status, page.body)
			}
			if err := checkNoActiveMarkup(page.body, true); err != nil {
				t.Errorf("message page: %v", err)
			}
			if strings.Contains(page.body, "<iframe") {
				f := rd.get(t, self+"/html")
				if f.status != http.StatusOK {
					t.Fatalf("GET frame = %d", f.status)
				}
				if err := checkNoActiveMarkup(f.body, false); err != nil {
					t.Errorf("frame: %v\n%s", err, f.body)
				}
				if csp := f.header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'; img-src data: 'self';") {
					t.Errorf("frame CSP = %q", csp)
				}
			}
			links := partLinks(t, page.body, self)
			for _, l := range links {
				r := rd.get(t, l)
				checkPartHeaders(t, l, r)
				if strings.ContainsRune(r.header.Get("Content-Disposition"), '\u202e') {
					t.Errorf("%s: Content-Disposition %q keeps a bidi override", l, r.header.Get("Content-Disposition"))
				}
			}
			if strings.ContainsRune(page.body, '\u202e') {
				t.Error("the page shows a bidi override from the message")
			}
			if check, ok := named[name]; ok {
				check(t, shown{rd: rd, page: page, frame: rd.get(t, self+"/html").body, self: self, links: links})
			}
		})
	}
	for name := range named {
		if !seen[name] {
			t.Errorf("testdata/hostile/%s is missing: its named check did not run", name)
		}
	}
}

// shown is what TestHostileCorpusEndToEnd saw of one message: its page, its frame document, its path and part links.
type shown struct {
	rd          *reader
	page        response
	frame, self string
	links       []string
}

// ownAsset reports whether a link or script element loads one of Postern's static assets.
func ownAsset(attrs []html.Attribute) bool {
	for _, a := range attrs {
		if (a.Key == "src" || a.Key == "href") && strings.HasPrefix(a.Val, "/static/") {
			return true
		}
	}
	return false
}

// checkNoActiveMarkup asserts what must hold for any page showing a hostile message: no script element but the site's
// own (the frame may have none), no event handler, no script URL, no frame other than the sandboxed message
// frame, no object, embed, base, form or meta refresh, and no reference to the corpus's remote host.
func checkNoActiveMarkup(doc string, sitePage bool) error {
	z := html.NewTokenizer(strings.NewReader(doc))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		switch tok.Data {
		case "script", "object", "embed", "base", "svg", "math", "link", "frame", "applet":
			if !(sitePage && (tok.Data == "link" || tok.Data == "script") && ownAsset(tok.Attr)) { // the layout's own assets
				return fmt.Errorf("<%s> element", tok.Data)
			}
		case "iframe":
			if !sitePage {
				return fmt.Errorf("<iframe> in the frame")
			}
			for _, a := range tok.Attr {
				if a.Key == "sandbox" && a.Val != "allow-popups allow-popups-to-escape-sandbox" {
					return fmt.Errorf("iframe sandbox=%q", a.Val)
				}
			}
		case "form":
			if !sitePage {
				return fmt.Errorf("<form> in the frame")
			}
		case "meta":
			for _, a := range tok.Attr {
				if a.Key == "http-equiv" {
					return fmt.Errorf("<meta http-equiv=%q>", a.Val)
				}
			}
		}
		for _, a := range tok.Attr {
			v := strings.ToLower(strings.Join(strings.Fields(a.Val), ""))
			switch {
			case strings.HasPrefix(a.Key, "on"):
				return fmt.Errorf("<%s %s=...>", tok.Data, a.Key)
			case strings.Contains(v, "javascript:") || strings.Contains(v, "vbscript:"):
				return fmt.Errorf("<%s %s=%q>", tok.Data, a.Key, a.Val)
			case strings.Contains(v, "evil.example"):
				return fmt.Errorf("<%s %s=%q>: remote reference", tok.Data, a.Key, a.Val)
			case strings.HasPrefix(v, "data:") && !(tok.Data == "img" && a.Key == "src" && strings.HasPrefix(v, "data:image/")):
				return fmt.Errorf("<%s %s=%q>: data URL", tok.Data, a.Key, a.Val)
			}
		}
	}
	return nil
}
