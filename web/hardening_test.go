package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// TestPreLoginSessionIsShortLived: an anonymous /login leaves a row that expires with the flow, not a day later.
func TestPreLoginSessionIsShortLived(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	s.startLogin(b, "/mail/INBOX")
	var raw []byte
	if err := s.web.sessions.codec.Decode(s.web.cfg.CookieName, sessionCookie(t, b, s), &raw); err != nil {
		t.Fatal(err)
	}
	row, err := s.store.Session(context.Background(), rowID(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(row.ExpiresAt); left > preLoginLifetime || left < preLoginLifetime-time.Minute {
		t.Errorf("pre-login session expires in %v, want about %v", left, preLoginLifetime)
	}
	// Signed in, the same browser's session gets the idle timeout.
	s.signIn(b, "alice", "/mail/INBOX")
	if err := s.web.sessions.codec.Decode(s.web.cfg.CookieName, sessionCookie(t, b, s), &raw); err != nil {
		t.Fatal(err)
	}
	row, err = s.store.Session(context.Background(), rowID(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(row.ExpiresAt); left < s.web.cfg.IdleTimeout-time.Minute {
		t.Errorf("signed-in session expires in %v, want the idle timeout %v", left, s.web.cfg.IdleTimeout)
	}
}

// TestHTTPSCookieHasHostPrefix: on an https public URL the default cookie is __Host-postern_session and Secure.
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
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != "__Host-postern_session" || !cookies[0].Secure || cookies[0].Domain != "" || cookies[0].Path != "/" {
		t.Fatalf("cookies = %+v, want one Secure __Host-postern_session with Path=/ and no Domain", cookies)
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
