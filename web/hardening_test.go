package web

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/mail"
)

// TestHTTPSCookieHasHostPrefix: on an https public URL the default cookies are __Host-postern_session and its flow
// cookie, Secure.
func TestHTTPSCookieHasHostPrefix(t *testing.T) {
	s := newStack(t)
	public, _ := url.Parse("https://mail.example.test")
	cfg := s.web.cfg
	cfg.PublicURL, cfg.CookieName = public, ""
	w, err := New(cfg, s.web.auth, s.web.tokens, s.web.mail, s.store)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://mail.example.test/login", nil))
	req := httptest.NewRequest(http.MethodGet, "https://mail.example.test/", nil)
	sess, err := w.session(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.SignIn(context.Background(), w.sessions, "grant", "user"); err != nil {
		t.Fatal(err)
	}
	rec2 := httptest.NewRecorder()
	if err := sess.s.Save(req, rec2); err != nil {
		t.Fatal(err)
	}
	cookies := append(rec.Result().Cookies(), rec2.Result().Cookies()...)
	if len(cookies) != 2 {
		t.Fatalf("cookies = %+v, want the flow and the session cookie", cookies)
	}
	for i, want := range []string{"__Host-postern_session_flow", "__Host-postern_session"} {
		if c := cookies[i]; c.Name != want || !c.Secure || c.Domain != "" || c.Path != "/" {
			t.Errorf("cookie = %+v, want a Secure %s with Path=/ and no Domain", c, want)
		}
	}
}

// TestCrossSiteViewDoesNotMarkRead: only the user's own navigation marks a message read.
func TestCrossSiteViewDoesNotMarkRead(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	uid := u.appendMsg(t, "INBOX", "bob@example.test", "Read receipts?", "No.")
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/msg/INBOX/%d", s.ts.URL, uid), nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := u.b.do(req); r.status != http.StatusOK {
		t.Fatalf("cross-site view = %d", r.status)
	}
	if m, ok := storedByUID(t, s, u.addr, "INBOX", uid); !ok || hasFlag(m, `\Seen`) {
		t.Fatalf("after a cross-site view the message is seen (found %v)", ok)
	}
	req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/msg/INBOX/%d", s.ts.URL, uid), nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	u.b.do(req)
	if m, _ := storedByUID(t, s, u.addr, "INBOX", uid); !hasFlag(m, `\Seen`) {
		t.Error("the user's own view did not mark the message read")
	}
}

// cidBomb is an HTML message that references many cid: images: refs times each of the distinct parts.
func cidBomb(distinct, refs int) []byte {
	const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
	var html, parts strings.Builder
	for i := 0; i < distinct; i++ {
		for j := 0; j < refs; j++ {
			fmt.Fprintf(&html, `<img src="cid:img%d@x">`, i)
		}
		fmt.Fprintf(&parts, "--rel\nContent-Type: image/png\nContent-ID: <img%d@x>\nContent-Transfer-Encoding: base64\n\n%s\n", i, png)
	}
	return []byte("From: bob@example.test\nTo: alice@example.test\nSubject: cid bomb\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/related; boundary=rel\n\n--rel\nContent-Type: text/html; charset=utf-8\n\n" +
		html.String() + "\n" + parts.String() + "--rel--\n")
}

// TestCIDReferencesAreBounded: thousands of references to one image cost one part fetch, and a message with more
// distinct inline images than maxInlineParts gets only that many inlined.
func TestCIDReferencesAreBounded(t *testing.T) {
	rd := newReader(t)
	t.Run("one image, 3000 references", func(t *testing.T) {
		uid := rd.deliver(t, "INBOX", cidBomb(1, 3000))
		start := time.Now()
		r := rd.get(t, fmt.Sprintf("/msg/INBOX/%d/html", uid))
		if r.status != http.StatusOK {
			t.Fatalf("frame = %d", r.status)
		}
		if n := strings.Count(r.body, "data:image/png;base64,"); n != 3000 {
			t.Errorf("%d references inlined, want all 3000 from one fetch", n)
		}
		t.Logf("3000 references to one image rendered in %v", time.Since(start))
	})
	t.Run("more distinct images than the cap", func(t *testing.T) {
		uid := rd.deliver(t, "INBOX", cidBomb(maxInlineParts+30, 1))
		r := rd.get(t, fmt.Sprintf("/msg/INBOX/%d/html", uid))
		if n := strings.Count(r.body, "data:image/png;base64,"); n != maxInlineParts {
			t.Errorf("%d distinct images inlined, want the cap %d", n, maxInlineParts)
		}
	})
}

// TestUploadStashCannotBeFilledByOneUser: one user's failed forms evict its own older files, and a full stash evicts
// the oldest files rather than refusing the next user's attachment.
func TestUploadStashCannotBeFilledByOneUser(t *testing.T) {
	const max = 1000
	u := newUploadStash(max)
	file := func(n int) mail.Attachment { return mail.Attachment{Filename: "f", Data: make([]byte, n)} }
	var alice []keptFile
	for i := 0; i < 10; i++ {
		k, ok := u.put("alice", "alice-grant", file(600))
		if !ok {
			t.Fatalf("put %d for alice refused", i)
		}
		alice = append(alice, k)
	}
	if got := u.users["alice"].size; got > u.perUser {
		t.Errorf("alice holds %d bytes, over the per-user bound %d", got, u.perUser)
	}
	if _, ok := u.get("alice-grant", alice[len(alice)-1].ID); !ok {
		t.Error("alice's newest file was evicted")
	}
	if _, ok := u.get("alice-grant", alice[0].ID); ok {
		t.Error("alice's oldest file survived ten forms")
	}
	for _, g := range []string{"bob", "carol", "dave"} {
		if _, ok := u.put(g, g, file(900)); !ok {
			t.Fatalf("put for %s refused with the stash full of others' files", g)
		}
	}
	if u.size > u.limit {
		t.Errorf("stash holds %d bytes, over its bound %d", u.size, u.limit)
	}
	if _, ok := u.put("erin", "erin", file(2*max+1)); ok {
		t.Error("a file over the per-user bound was stashed")
	}
}

func TestWatchLimiterBoundsAllStreams(t *testing.T) {
	l := newWatchLimiter(2, 3)
	for _, g := range []string{"a", "a", "b"} {
		if !l.acquire(g) {
			t.Fatalf("acquire(%s) refused below the limits", g)
		}
	}
	if l.acquire("a") {
		t.Error("a third stream for one grant was allowed")
	}
	if l.acquire("c") {
		t.Error("a stream over the total was allowed")
	}
	l.release("b")
	if !l.acquire("c") {
		t.Error("a released slot was not reusable")
	}
}

// TestLargeAttachmentStreams: an attachment bigger than mail.MaxPartSize (what Part would hold in memory) downloads
// whole, decoded, through the streaming path.
func TestLargeAttachmentStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 45 MB through the dev mail server")
	}
	rd := newReader(t)
	data := make([]byte, mail.MaxPartSize+1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b64 := base64.StdEncoding.EncodeToString(data)
	var body strings.Builder
	for i := 0; i < len(b64); i += 76 {
		body.WriteString(b64[i:min(i+76, len(b64))])
		body.WriteString("\r\n")
	}
	raw := "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: big file\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"big.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + body.String() + "--b--\r\n"
	uid := rd.deliver(t, "INBOX", []byte(raw))
	r := rd.get(t, fmt.Sprintf("/msg/INBOX/%d/part/2", uid))
	if r.status != http.StatusOK {
		t.Fatalf("download = %d: %.200s", r.status, r.body)
	}
	checkPartHeaders(t, "big attachment", r)
	if len(r.body) != len(data) || r.body != string(data) {
		t.Errorf("downloaded %d bytes, want the %d decoded bytes of the attachment", len(r.body), len(data))
	}
}
