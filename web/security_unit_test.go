package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/mail"
)

func TestClientIP(t *testing.T) {
	s := &Server{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}}
	for _, tc := range []struct {
		name, peer, xff, want string
	}{
		{"direct client", "192.0.2.7:1234", "", "192.0.2.7"},
		{"untrusted peer's header is ignored", "192.0.2.7:1234", "203.0.113.9", "192.0.2.7"},
		{"one trusted proxy", "10.1.2.3:1234", "203.0.113.9", "203.0.113.9"},
		{"forged left-most entry", "10.1.2.3:1234", "198.51.100.1, 203.0.113.9", "203.0.113.9"},
		{"chain of trusted proxies", "10.1.2.3:1234", "203.0.113.9, 10.9.9.9", "203.0.113.9"},
		{"garbled entry stops the walk", "10.1.2.3:1234", "203.0.113.9, junk", "10.1.2.3"},
		{"trusted peer without header", "[::1]:1234", "", "::1"},
		{"IPv4-mapped peer", "[::ffff:192.0.2.7]:1234", "", "192.0.2.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.peer
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := s.clientIP(r); got != tc.want {
				t.Errorf("clientIP(peer %s, XFF %q) = %s, want %s", tc.peer, tc.xff, got, tc.want)
			}
		})
	}
}

// TestBrowserSessionCookie: with the option, the session cookie has neither Max-Age nor Expires.
func TestBrowserSessionCookie(t *testing.T) {
	for _, browserSession := range []bool{false, true} {
		st := newServerStore(memSessions{}, make([]byte, 32), "postern_session", false, time.Hour, 24*time.Hour, browserSession)
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		raw, _ := st.New(req, "postern_session")
		sess := session{s: raw}
		if err := sess.SignIn(context.Background(), st, "g", "u"); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		if err := st.Save(req, rec, raw); err != nil {
			t.Fatal(err)
		}
		c := rec.Result().Cookies()[0]
		if persistent := c.MaxAge > 0 || !c.Expires.IsZero(); persistent == browserSession {
			t.Errorf("browserSession=%v: cookie Max-Age=%d Expires=%v", browserSession, c.MaxAge, c.Expires)
		}
	}
}

// TestUploadStashExpiresInOrderAndCountsPerUser: entries expire oldest first without a scan, and per-user counts
// follow puts, drops and expiry.
func TestUploadStashExpiresInOrderAndCountsPerUser(t *testing.T) {
	u := newUploadStash(1 << 20)
	now := time.Unix(1_000_000, 0)
	u.now = func() time.Time { return now }
	a := mail.Attachment{Filename: "f"}
	first, _ := u.put("alice", "g1", a)
	now = now.Add(stashTTL / 2)
	second, _ := u.put("alice", "g2", a)
	if mine, all := u.count("alice"); mine != 2 || all != 2 {
		t.Fatalf("count = %d, %d; want 2, 2", mine, all)
	}
	if _, ok := u.get("g2", first.ID); ok {
		t.Error("another grant of the same user read an entry")
	}
	now = now.Add(stashTTL/2 + time.Second)
	u.put("bob", "g3", a) // any put expires what is due
	if _, ok := u.get("g1", first.ID); ok {
		t.Error("an entry outlived stashTTL")
	}
	if _, ok := u.get("g2", second.ID); !ok {
		t.Error("a younger entry expired with the older one")
	}
	u.drop("g2", []string{second.ID})
	if mine, all := u.count("alice"); mine != 0 || all != 1 {
		t.Errorf("after expiry and drop, count = %d, %d; want 0, 1", mine, all)
	}
	for i := 0; i < 3*maxStashPerUser; i++ {
		u.put("mallory", "g4", a)
	}
	if mine, _ := u.count("mallory"); mine != maxStashPerUser {
		t.Errorf("mallory keeps %d files, want the bound %d", mine, maxStashPerUser)
	}
}

// memSessions is a SessionStore that keeps nothing.
type memSessions struct{}

func (memSessions) SaveSession(context.Context, store.Session) error { return nil }
func (memSessions) Session(context.Context, string) (store.Session, error) {
	return store.Session{}, store.ErrNotFound
}
func (memSessions) DeleteSession(context.Context, string) error { return nil }

func TestPeopleWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, email string
		warn        bool
		ascii       string
	}{
		{"Alice Liddell", "alice@example.com", false, ""},
		{"Dr. J. Smith", "js@example.com", false, ""},
		{"J.Smith", "js@example.com", false, ""},
		{"Amazon.com", "shipment-tracking@amazon.com", false, ""},
		{"support@bank.com", "support@bank.com", false, ""},
		{"SUPPORT@BANK.COM", "support@bank.com", false, ""},
		{"Admin <admin@postern.example>", "mallory@evil.example", true, ""},
		{"PayPal via paypal.com", "noreply@paypa1.net", true, ""},
		{"Müller GmbH", "info@müller.de", false, "info@xn--mller-kva.de"},
		{"PayPal", "service@p\u0430ypal.com", true, "service@xn--pypal-4ve.com"},
		{"東京", "info@東京ガス.jp", false, "info@xn--mck0a582qx5v.jp"},
		{"אליס", "alice@example.com", false, ""},
	} {
		p := people([]mail.Address{{Name: tc.name, Email: tc.email}}, true)[0]
		if (p.Warn != "") != tc.warn {
			t.Errorf("%q <%s>: warning %q, want one: %v", tc.name, tc.email, p.Warn, tc.warn)
		}
		if p.ASCII != tc.ascii {
			t.Errorf("%q <%s>: ASCII form %q, want %q", tc.name, tc.email, p.ASCII, tc.ascii)
		}
	}
}

func TestTextStripsInvisibles(t *testing.T) {
	for in, want := range map[string]string{
		"Invoice \u202efdp.exe":       "Invoice fdp.exe",
		"a\u200bb\u2060c\ufeffd":      "abcd",
		"\u2066x\u2069 \u200e\u200fy": "x y",
		"👩\u200d👩\u200d👧":             "👩\u200d👩\u200d👧", // ZWJ emoji sequences survive
		"می\u200cخواهم":               "می\u200cخواهم",   // so does Persian ZWNJ
		"tab\tand\u0085nel":           "tabandnel",
	} {
		if got := text(in); got != want {
			t.Errorf("text(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStreamOutlivesReadTimeout: the live-update stream is not cut when the server's ReadTimeout (4 s in tests)
// passes (net/http clears the read deadline once the request's body is read; this pins that ConfigureTimeouts relies
// on it).
func TestStreamOutlivesReadTimeout(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	req, _ := http.NewRequest(http.MethodGet, s.ts.URL+"/events/INBOX", nil)
	hc := *u.b.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events/INBOX = %v, %v", resp, err)
	}
	defer resp.Body.Close()
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Fatalf("the stream ended after less than twice the ReadTimeout: %v", err)
	case <-time.After(2 * s.ts.Config.ReadTimeout):
	}
}
