package web

// Tests for the findings of the security review (issue 10). Each one fails on the reviewed code and passes now;
// docs/security.md maps every threat to the test that proves its mitigation. They drive Postern only through HTTP,
// as the reviewer did, so that they run unchanged against the reviewed code.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	netmail "net/mail"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
)

// rawPart is one part of a hand-built multipart form: its headers exactly as given.
type rawPart struct {
	header map[string]string
	body   string
}

func (b *browser) postParts(u string, parts []rawPart) response {
	b.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		for k, v := range p.header {
			h.Set(k, v)
		}
		w, _ := mw.CreatePart(h)
		_, _ = w.Write([]byte(p.body))
	}
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, u, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(req)
}

func field(name, value string) rawPart {
	return rawPart{header: map[string]string{"Content-Disposition": fmt.Sprintf(`form-data; name=%q`, name)}, body: value}
}

func file(disposition, body string) rawPart {
	return rawPart{header: map[string]string{"Content-Disposition": disposition, "Content-Type": "application/octet-stream"}, body: body}
}

// emptyFiles is a compose form with no recipient (so /send shows it again and stashes its files) and n zero-byte
// attachments.
func emptyFiles(n int, keep ...string) []rawPart {
	parts := []rawPart{field("to", ""), field("subject", "flood"), field("body", "x")}
	for _, k := range keep {
		parts = append(parts, field("keep", k))
	}
	for i := 0; i < n; i++ {
		parts = append(parts, file(fmt.Sprintf(`form-data; name="attach"; filename="f%d.txt"`, i), ""))
	}
	return parts
}

// TestFinding1StashFloodIsBounded: a form of thousands of zero-byte files is refused with a reason, and one user's
// stashed files are bounded in number across all their sign-ins (the oldest go first), not only in bytes per grant.
func TestFinding1StashFloodIsBounded(t *testing.T) {
	s := newStack(t)
	a1 := signedInAs(t, s, "alice")
	a2 := signedInAs(t, s, "alice") // a second sign-in: a second grant of the same user

	t.Run("parts per request", func(t *testing.T) {
		r := a1.b.postParts(s.ts.URL+"/send", emptyFiles(2000))
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "At most 32 files") {
			t.Fatalf("POST /send with 2000 files = %d, want 400 naming the limit: %.300s", r.status, r.body)
		}
	})
	t.Run("entries per user", func(t *testing.T) {
		r := a1.b.postParts(s.ts.URL+"/send", emptyFiles(30))
		first := keepRe.FindAllStringSubmatch(r.body, -1)
		if r.status != http.StatusBadRequest || len(first) != 30 {
			t.Fatalf("first form = %d with %d kept files, want 400 with 30", r.status, len(first))
		}
		for i := 0; i < 4; i++ {
			if r := a2.b.postParts(s.ts.URL+"/send", emptyFiles(30)); r.status != http.StatusBadRequest {
				t.Fatalf("form %d from the second sign-in = %d", i, r.status)
			}
		}
		r = a1.b.postParts(s.ts.URL+"/send", emptyFiles(0, first[0][1]))
		if !strings.Contains(r.body, "has expired") {
			t.Errorf("the oldest of 150 empty files of one user is still stashed; want it evicted: %.300s", r.body)
		}
	})
}

// TestFinding8UnparseableFilenameIsRefused: a file part whose name does not parse is refused with a reason instead
// of vanishing from the message.
func TestFinding8UnparseableFilenameIsRefused(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	for _, disp := range []string{
		`form-data; name="attach"; filename="report.pdf`,           // unterminated quote
		`form-data; name="attach"; filename*=utf-8''%ZZreport.pdf`, // broken RFC 2231 encoding
		`form-data; name="attach"`,                                 // data without a file name
	} {
		parts := []rawPart{field("to", "bob@example.test"), field("subject", "report"), field("body", "attached"), file(disp, "%PDF-1.4 data")}
		r := u.b.postParts(s.ts.URL+"/drafts", parts)
		if r.status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(r.body), "attached file") {
			t.Errorf("%s: POST /drafts = %d, want 400 saying the file could not be read: %.300s", disp, r.status, r.body)
		}
	}
}

// spoofMail is a message from `from` (a raw From header value) with the given subject (raw header value).
func spoofMail(from, subject string) []byte {
	return []byte("From: " + from + "\nTo: alice@example.test\nSubject: " + subject +
		"\nDate: Mon, 2 Nov 2026 10:00:00 +0000\nMessage-ID: <spoof@evil.example>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nPay now.\n")
}

// b64 is an RFC 2047 encoded word (B encoding) for s.
func b64(s string) string { return "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }

var isolatedEmail = regexp.MustCompile(`<bdi class="email" dir="ltr">&lt;([^&<]+)&gt;</bdi>`)

// TestFinding3SendersCannotPassForOthers: bidi and invisible characters from a sender never reach the page, the
// real address stands in an isolated box of its own, and names that show another address or domain, or sender
// domains mixing scripts, are flagged on the message page and in the list.
func TestFinding3SendersCannotPassForOthers(t *testing.T) {
	rd := newReader(t)
	for _, tc := range []struct {
		name, from, subject string
		addr                string // the real address, as the isolated box must show it
		warn                string // part of the warning, "" for none
	}{
		{"RLO in name", b64("\u202emoc.knab@ytiruces") + " <alice@example.test>", b64("Invoice \u202efdp.exe"), "alice@example.test", ""},
		{"isolates and zero-width", b64("Support\u2067\u200b Team\u2069") + " <help@example.test>", b64("Re\u200b: your \u2066account\u2069"), "help@example.test", ""},
		{"name is another address", `"Admin <admin@postern.example>" <mallory@evil.example>`, "Password reset", "mallory@evil.example", "shows the address admin@postern.example"},
		{"name names another domain", `"Security team, bank.com" <alerts@evil-bank.net>`, "Unusual sign-in", "alerts@evil-bank.net", "mentions bank.com"},
		{"mixed-script domain", "PayPal <service@" + "p\u0430ypal.com" + ">", "Receipt", "service@p\u0430ypal.com", "mixes Cyrillic and Latin"},
		{"honest sender", `"Bank.com Alerts" <alerts@mail.bank.com>`, "Statement", "alerts@mail.bank.com", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid := rd.deliver(t, "INBOX", spoofMail(tc.from, tc.subject))
			page := rd.get(t, fmt.Sprintf("/msg/INBOX/%d", uid))
			list := rd.get(t, "/mail/INBOX")
			for what, body := range map[string]string{"message page": page.body, "list": list.body} {
				if i := strings.IndexFunc(body, func(r rune) bool {
					return r == '\u202e' || r == '\u202d' || (r >= '\u2066' && r <= '\u2069') || r == '\u200b'
				}); i >= 0 {
					t.Errorf("%s carries the invisible control %U from the message", what, []rune(body[i:])[0])
				}
			}
			m := isolatedEmail.FindStringSubmatch(page.body)
			if m == nil || html.UnescapeString(m[1]) != tc.addr {
				t.Errorf("message page shows no isolated address box with %q; got %v", tc.addr, m)
			}
			warned := strings.Contains(html.UnescapeString(page.body), tc.warn)
			if tc.warn != "" && !warned {
				t.Errorf("message page lacks the warning %q", tc.warn)
			}
			flagged := strings.Contains(page.body, `class="spoof-warning"`)
			if tc.warn == "" && flagged {
				t.Errorf("an honest sender is flagged: %s", page.body)
			}
		})
	}
	t.Run("punycode shown", func(t *testing.T) {
		uid := rd.deliver(t, "INBOX", spoofMail("PayPal <service@p\u0430ypal.com>", "Receipt again"))
		if page := rd.get(t, fmt.Sprintf("/msg/INBOX/%d", uid)); !strings.Contains(page.body, "service@xn--pypal-4ve.com") {
			t.Error("the mixed-script domain's ASCII form is not shown")
		}
		if list := rd.get(t, "/mail/INBOX"); !strings.Contains(list.body, `class="spoof-flag"`) {
			t.Error("the list does not flag the spoofing senders")
		}
	})
}

// sessionRows counts the session rows in the stack's database, read directly as an operator would.
func sessionRows(t *testing.T, s *stack) int {
	t.Helper()
	db, err := sql.Open("sqlite", s.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sessions`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFinding6AnonymousLoginWritesNoRow: anonymous GET /login requests, however many, write nothing to the
// database; the sign-in still works, and only it makes a row.
func TestFinding6AnonymousLoginWritesNoRow(t *testing.T) {
	s := newStack(t)
	before := sessionRows(t, s)
	for i := 0; i < 50; i++ {
		s.startLogin(newBrowser(t), "/mail/INBOX")
	}
	if n := sessionRows(t, s) - before; n != 0 {
		t.Errorf("50 anonymous GET /login wrote %d session rows, want 0", n)
	}
	if r := s.signIn(newBrowser(t), "alice", "/mail/INBOX"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in = %d: %s", r.status, r.body)
	}
	if n := sessionRows(t, s) - before; n != 1 {
		t.Errorf("a sign-in wrote %d session rows, want 1", n)
	}
}

// TestFinding8CrossSiteCallbackKeepsTheFlow: a /callback?state=x that another site makes the browser load is refused
// and leaves the sign-in in progress intact.
func TestFinding8CrossSiteCallbackKeepsTheFlow(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	authURL := s.startLogin(b, "/mail/INBOX")
	if r := b.get(s.ts.URL + "/callback?state=x&code=y"); r.status != http.StatusBadRequest {
		t.Fatalf("forged callback = %d, want 400", r.status)
	}
	cb, err := idp.SignIn(context.Background(), b.hc, authURL, "alice", "alice-password", true)
	if err != nil {
		t.Fatal(err)
	}
	if r := b.get(cb.String()); r.status != http.StatusSeeOther || r.location != "/mail/INBOX" {
		t.Errorf("the real callback after a forged one = %d to %q, want 303 to /mail/INBOX: %.300s", r.status, r.location, r.body)
	}
}

// slowClient opens a raw connection and sends head (a partial or complete request head, never a body), then reports
// whether the server closed the connection before the client gave up after wait.
func slowClient(t *testing.T, s *stack, head string, wait time.Duration) (closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", s.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestFinding4SlowClientsAreCut: a request whose headers never end, or whose body never comes, is closed by the
// server instead of being held for ever. The stack's server has cmd's timeouts shortened to 2 s (headers) and 4 s
// (headers and body); the client waits three times as long.
func TestFinding4SlowClientsAreCut(t *testing.T) {
	s := newStack(t)
	host := s.ts.Listener.Addr().String()
	for name, head := range map[string]string{
		"headers never end":        "GET /login HTTP/1.1\r\nHost: " + host + "\r\nX-Slow: 1\r\n",
		"body never comes":         "POST /logout HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1\r\n\r\n",
		"GET body never comes":     "GET /login HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 1\r\n\r\n",
		"anonymous compose upload": "POST /send HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000\r\n\r\n--x\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !slowClient(t, s, head, 12*time.Second) {
				t.Error("the server still holds the connection of a client that stopped sending")
			}
		})
	}
}

// TestFinding4SlowUploadOfSignedInUserFits: the compose form's read deadline is extended for a signed-in user, so an
// upload that pauses longer than the server's ReadTimeout (here 4 s) still arrives; the extension scales with
// Config.MaxUpload.
func TestFinding4SlowUploadOfSignedInUserFits(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		_ = mw.WriteField("to", "")
		_ = mw.WriteField("subject", "slow link")
		_ = mw.WriteField("body", "typed on a train")
		time.Sleep(6 * time.Second) // a tunnel: longer than the server's ReadTimeout
		_ = mw.Close()
		_ = pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, s.ts.URL+"/drafts", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	r := u.b.do(req)
	if r.status != http.StatusSeeOther {
		t.Errorf("slow draft save = %d, want 303: %.300s", r.status, r.body)
	}
}

// openStream opens the live-update stream of INBOX and returns its status; a 200 stream stays open until the test
// ends.
func openStream(t *testing.T, b *browser, base string) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events/INBOX", nil)
	hc := *b.hc
	hc.Timeout = 0 // a stream has no end
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET /events/INBOX: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp.StatusCode
}

// TestFinding5StreamsAreCountedPerUser: one user signed in four times cannot open more live-update streams than
// the per-user bound, however many grants they hold, and another user still gets one.
func TestFinding5StreamsAreCountedPerUser(t *testing.T) {
	s := newStack(t)
	open := 0
	for i := 0; i < 4; i++ {
		u := signedInAs(t, s, "alice")
		for j := 0; j < 2; j++ {
			switch st := openStream(t, u.b, s.ts.URL); st {
			case http.StatusOK:
				open++
			case http.StatusTooManyRequests:
			default:
				t.Fatalf("stream %d of sign-in %d = %d", j, i, st)
			}
		}
	}
	if open > 3 {
		t.Errorf("one user holds %d live-update streams over 4 sign-ins, want at most 3", open)
	}
	if st := openStream(t, signedInAs(t, s, "bob").b, s.ts.URL); st != http.StatusOK {
		t.Errorf("another user's stream = %d, want 200", st)
	}
}

// TestFinding7EveryResponseRefusesCrossOriginLoads: Cross-Origin-Resource-Policy: same-origin on every response,
// signed in or not, page, part, stream, asset, probe or error.
func TestFinding7EveryResponseRefusesCrossOriginLoads(t *testing.T) {
	rd := newReader(t)
	uid := rd.deliver(t, "INBOX", []byte("From: bob@example.test\nTo: alice@example.test\nSubject: pic\nMIME-Version: 1.0\n"+
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee\n--b\nContent-Type: image/png\n"+
		"Content-Disposition: attachment; filename=p.png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--b--\n"))
	msg := fmt.Sprintf("/msg/INBOX/%d", uid)
	anon := newBrowser(t)
	for _, path := range []string{"/", "/mail/INBOX", msg, msg + "/html", msg + "/part/2", msg + "/raw", "/msg/INBOX/999999",
		"/compose", "/folders", "/session", "/healthz", "/readyz", "/static/style.css", "/no-such-page"} {
		r := rd.get(t, path)
		if got := r.header.Get("Cross-Origin-Resource-Policy"); got != "same-origin" {
			t.Errorf("GET %s (%d): Cross-Origin-Resource-Policy = %q, want same-origin", path, r.status, got)
		}
	}
	// The stream: headers only, it does not end.
	req, _ := http.NewRequest(http.MethodGet, rd.s.ts.URL+"/events/INBOX", nil)
	if resp, err := rd.b.hc.Do(req); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if got := resp.Header.Get("Cross-Origin-Resource-Policy"); got != "same-origin" {
			t.Errorf("GET /events/INBOX (%d): Cross-Origin-Resource-Policy = %q, want same-origin", resp.StatusCode, got)
		}
	}
	for _, path := range []string{"/", "/login", "/callback?state=x", "/mail/INBOX", "/signed-out"} {
		r := anon.get(rd.s.ts.URL + path)
		if got := r.header.Get("Cross-Origin-Resource-Policy"); got != "same-origin" {
			t.Errorf("anonymous GET %s (%d): Cross-Origin-Resource-Policy = %q, want same-origin", path, r.status, got)
		}
	}
}

// TestFinding8CustomCookieNameOnHTTPS: a custom cookie name on an https public URL gets the __Host- prefix too.
func TestFinding8CustomCookieNameOnHTTPS(t *testing.T) {
	s := newStack(t)
	cfg := s.web.cfg
	cfg.PublicURL, cfg.CookieName = mustURL("https://mail.example.test"), "webmail"
	w, err := New(cfg, s.web.auth, s.web.tokens, s.web.mail, s.store)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://mail.example.test/login", nil))
	cookies := rec.Result().Cookies()
	if len(cookies) == 0 {
		t.Fatal("no cookie from /login")
	}
	for _, c := range cookies {
		if !strings.HasPrefix(c.Name, "__Host-webmail") || !c.Secure {
			t.Errorf("cookie %s (Secure=%v): want the __Host- prefix and Secure on https", c.Name, c.Secure)
		}
	}
}

// TestFinding8FolderNamesRefuseInvisibleCharacters: C1 controls, bidi controls and zero-width characters cannot go
// into a new folder's name.
func TestFinding8FolderNamesRefuseInvisibleCharacters(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	for _, name := range []string{"Invo\u0085ices", "In\u009bvoices", "\u202eevihcrA", "Pay\u200bments", "a\u2066b\u2069"} {
		r := u.b.post(s.ts.URL+"/folders", url.Values{"action": {"create"}, "name": {name}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "cannot contain") {
			t.Errorf("create %q = %d, want 400 refusing the name", name, r.status)
		}
	}
}

// TestFinding8ImpossibleFolderNameIs404: a folder name no mailbox can have is a missing page, not a mail-server
// failure.
func TestFinding8ImpossibleFolderNameIs404(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	for _, p := range []string{"/msg/a%00b/1", "/msg/a%0D%0Ab/1", "/msg/a%09b/1", "/msg/" + strings.Repeat("a", 3000) + "/1", "/mail/a%00b", "/mail/%FF"} {
		if r := u.b.get(s.ts.URL + p); r.status != http.StatusNotFound {
			t.Errorf("GET %.40s = %d, want 404", p, r.status)
		}
	}
}

// TestFinding8AccessLogHasClientIP: every access-log line names the client.
func TestFinding8AccessLogHasClientIP(t *testing.T) {
	s := newStack(t)
	var buf syncBuffer
	cfg := s.web.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	w, err := New(cfg, s.web.auth, s.web.tokens, s.web.mail, s.store)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	w.ServeHTTP(httptest.NewRecorder(), req)
	if line := buf.String(); !strings.Contains(line, "client_ip=192.0.2.7") {
		t.Errorf("access log = %q, want client_ip=192.0.2.7", line)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestFinding8EncodedWordSubjectIsSentAsText: a subject typed as an RFC 2047 encoded word arrives as the text typed,
// not decoded into a line break at the recipient.
func TestFinding8EncodedWordSubjectIsSentAsText(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	typed := "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("Hello\r\nBcc: victim@example.test")) + "?="
	r := u.b.postMultipart(s.ts.URL+"/send", [][2]string{{"to", "bob@example.test"}, {"subject", typed}, {"body", "hi"}}, nil)
	if r.status != http.StatusSeeOther {
		t.Fatalf("POST /send = %d: %.300s", r.status, r.body)
	}
	msgs := stored(t, s, "bob@example.test", "INBOX")
	m, err := netmail.ReadMessage(bytes.NewReader(msgs[len(msgs)-1].Raw))
	if err != nil {
		t.Fatal(err)
	}
	got, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil || got != typed {
		t.Errorf("the recipient reads the subject as %q (%v), want the typed %q", got, err, typed)
	}
}
