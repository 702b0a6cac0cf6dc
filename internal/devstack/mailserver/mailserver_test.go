package mailserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	_ "github.com/emersion/go-message/charset"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"
)

// userinfo is a fake IdP: token "good-<email>" is valid for <email>;
// "status-<n>" answers with HTTP status n; "noemail" has no email claim.
func userinfo(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case strings.HasPrefix(tok, "good-"):
			json.NewEncoder(w).Encode(map[string]string{"sub": "x", "email": strings.TrimPrefix(tok, "good-")})
		case tok == "noemail":
			json.NewEncoder(w).Encode(map[string]string{"sub": "x"})
		case tok == "status-403":
			w.WriteHeader(http.StatusForbidden)
		case tok == "status-502":
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func newServer(t *testing.T, opts Options) (*Server, *atomic.Int64) {
	t.Helper()
	idp, calls := userinfo(t)
	opts.UserinfoURL = idp.URL
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, calls
}

// bearer is a minimal OAUTHBEARER/XOAUTH2 client for these tests.
type bearer struct{ mech, user, token string }

func (b bearer) Start() (string, []byte, error) {
	if b.mech == "XOAUTH2" {
		return b.mech, []byte("user=" + b.user + "\x01auth=Bearer " + b.token + "\x01\x01"), nil
	}
	return b.mech, []byte("n,a=" + b.user + ",\x01auth=Bearer " + b.token + "\x01\x01"), nil
}
func (b bearer) Next([]byte) ([]byte, error) { return []byte{1}, nil }

func dialIMAP(t *testing.T, s *Server) *imapclient.Client {
	t.Helper()
	addr, err := s.ListenIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(addr.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNewRequiresUserinfoURL(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{}); err == nil {
		t.Error("New(Options{}) succeeded, want an error")
	}
}

func TestIMAPAuthenticate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mech     string
		user     string
		token    string
		wantCode imap.ResponseCode // "" for success
		wantUser string
	}{
		{"oauthbearer", "OAUTHBEARER", "alice@example.test", "good-alice@example.test", "", "alice@example.test"},
		{"xoauth2", "XOAUTH2", "alice@example.test", "good-alice@example.test", "", "alice@example.test"},
		// Like Stalwart, the authzid is ignored: the token decides.
		{"authzid ignored", "OAUTHBEARER", "mallory@example.test", "good-Alice@Example.Test", "", "alice@example.test"},
		{"bad token", "OAUTHBEARER", "alice@example.test", "nope", imap.ResponseCodeAuthenticationFailed, ""},
		{"userinfo 403", "OAUTHBEARER", "alice@example.test", "status-403", imap.ResponseCodeAuthenticationFailed, ""},
		{"userinfo 502", "OAUTHBEARER", "alice@example.test", "status-502", imap.ResponseCodeAuthenticationFailed, ""},
		{"no email claim", "XOAUTH2", "alice@example.test", "noemail", imap.ResponseCodeAuthenticationFailed, ""},
		{"unknown mechanism", "PLAIN", "alice@example.test", "good-alice@example.test", imap.ResponseCodeCannot, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, calls := newServer(t, Options{})
			c := dialIMAP(t, s)
			err := c.Authenticate(bearer{tt.mech, tt.user, tt.token})
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("Authenticate() = %v", err)
				}
				if got := s.Accounts(); len(got) != 1 || got[0] != tt.wantUser {
					t.Errorf("Accounts() = %v, want [%s]", got, tt.wantUser)
				}
				if _, err := c.Select("INBOX", nil).Wait(); err != nil {
					t.Errorf("Select(INBOX) = %v", err)
				}
				return
			}
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != tt.wantCode {
				t.Fatalf("Authenticate() = %v, want NO [%s]", err, tt.wantCode)
			}
			if tt.wantCode == imap.ResponseCodeCannot && calls.Load() != 0 {
				t.Error("userinfo called for an unsupported mechanism")
			}
			if len(s.Accounts()) != 0 {
				t.Errorf("account created after a failure: %v", s.Accounts())
			}
		})
	}
}

func TestIMAPDisconnectsAfterMaxFailures(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Options{})
	c := dialIMAP(t, s)
	for i := 1; i <= 3; i++ {
		err := c.Authenticate(bearer{"OAUTHBEARER", "a@example.test", "bad"})
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAuthenticationFailed {
			t.Fatalf("attempt %d: Authenticate() = %v, want NO [AUTHENTICATIONFAILED]", i, err)
		}
	}
	if err := c.Noop().Wait(); err == nil {
		t.Fatal("NOOP after three failures succeeded, want a closed connection")
	}
	if got := s.Stats(); got.AuthFailures != 3 || got.AuthAttempts != 3 {
		t.Errorf("Stats() = %+v, want 3 attempts, 3 failures", got)
	}
}

func TestIMAPRefusesLogin(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Options{})
	c := dialIMAP(t, s)
	if err := c.Login("alice@example.test", "good-alice@example.test").Wait(); err == nil {
		t.Error("LOGIN succeeded, want NO")
	}
}

func TestSMTPSubmission(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Options{})
	if err := s.Seed("bob@example.test"); err != nil {
		t.Fatal(err)
	}
	addr, err := s.ListenSMTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.Dial(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	code := func(err error) int {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se.Code
		}
		return 0
	}
	if err := c.Mail("alice@example.test", nil); code(err) != 530 {
		t.Errorf("MAIL before AUTH = %v, want 530", err)
	}
	if err := c.Auth(bearer{"OAUTHBEARER", "", "nope"}); code(err) != 535 {
		t.Errorf("AUTH with a bad token = %v, want 535", err)
	}
	if err := c.Auth(bearer{"OAUTHBEARER", "", "status-502"}); code(err) != 454 {
		t.Errorf("AUTH with the IdP failing = %v, want 454", err)
	}
	if err := c.Auth(bearer{"XOAUTH2", "", "good-alice@example.test"}); err != nil {
		t.Fatalf("AUTH = %v", err)
	}
	if err := c.Mail("bob@example.test", nil); code(err) != 501 {
		t.Errorf("MAIL FROM someone else = %v, want 501", err)
	}
	if err := c.Mail("Alice@example.test", nil); err != nil {
		t.Fatalf("MAIL FROM self = %v", err)
	}
	if err := c.Rcpt("x@elsewhere.example", nil); code(err) != 550 {
		t.Errorf("RCPT to a foreign domain = %v, want 550", err)
	}
	for _, rcpt := range []string{"bob@example.test", "new.colleague@example.test"} {
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatalf("RCPT %s = %v", rcpt, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "From: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Delivered; got != 2 {
		t.Errorf("Delivered = %d, want 2", got)
	}
	msgs, err := s.Messages("new.colleague@example.test", "INBOX")
	if err != nil || len(msgs) != 1 || !bytes.Contains(msgs[0].Raw, []byte("Subject: hi\r\n")) {
		t.Errorf("new.colleague INBOX = %d messages, %v; want the delivered one", len(msgs), err)
	}
}

func TestSMTPDisconnectsAfterMaxFailures(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Options{})
	addr, err := s.ListenSMTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.Dial(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 1; i <= 3; i++ {
		if err := c.Auth(bearer{"OAUTHBEARER", "", "bad"}); err == nil {
			t.Fatalf("attempt %d succeeded", i)
		}
	}
	if err := c.Noop(); err == nil {
		t.Error("NOOP after three failures succeeded, want a closed connection")
	}
}

func TestSeed(t *testing.T) {
	t.Parallel()
	s, calls := newServer(t, Options{})
	if err := s.Seed("alice@example.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.Seed("Alice@example.test"); err != nil { // idempotent
		t.Fatal(err)
	}
	want := map[string]int{"INBOX": 42, "Drafts": 1, "Sent": 4, "Archive": 3, "Junk": 2, "Trash": 1, "Projects": 3, "Receipts": 3}
	for box, n := range want {
		t.Run(box, func(t *testing.T) {
			msgs, err := s.Messages("alice@example.test", box)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != n {
				t.Errorf("%s has %d messages, want %d", box, len(msgs), n)
			}
			for i, m := range msgs {
				checkParses(t, m.Raw)
				if i > 0 && m.InternalDate.Before(msgs[i-1].InternalDate) {
					t.Errorf("%s: message %d arrived before message %d", box, i, i-1)
				}
			}
		})
	}
	if calls.Load() != 0 {
		t.Errorf("Seed/Messages called userinfo %d times, want 0", calls.Load())
	}

	t.Run("deterministic", func(t *testing.T) {
		other, _ := newServer(t, Options{})
		other.Seed("alice@example.test")
		a, _ := s.Messages("alice@example.test", "INBOX")
		b, _ := other.Messages("alice@example.test", "INBOX")
		if len(a) != len(b) {
			t.Fatalf("message counts differ: %d, %d", len(a), len(b))
		}
		for i := range a {
			if !bytes.Equal(a[i].Raw, b[i].Raw) || !a[i].InternalDate.Equal(b[i].InternalDate) {
				t.Fatalf("message %d differs between two seeds", i)
			}
		}
	})

	t.Run("thread", func(t *testing.T) {
		msgs, _ := s.Messages("alice@example.test", "INBOX")
		var refs []int
		for _, m := range msgs {
			h := header(t, m.Raw)
			if strings.Contains(h.Get("Subject"), "Migration plan for the mail cluster") {
				ids, _ := h.MsgIDList("References")
				refs = append(refs, len(ids))
			}
		}
		if len(refs) != 12 {
			t.Fatalf("thread has %d INBOX messages, want 12", len(refs))
		}
		for i := 1; i < len(refs); i++ {
			if refs[i] <= refs[i-1] {
				t.Errorf("References do not grow along the thread: %v", refs)
				break
			}
		}
	})

	t.Run("mix", func(t *testing.T) {
		msgs, _ := s.Messages("alice@example.test", "INBOX")
		var unseen, flagged, htmlOnly, related int
		for _, m := range msgs {
			if !containsFlag(m.Flags, imap.FlagSeen) {
				unseen++
			}
			if containsFlag(m.Flags, imap.FlagFlagged) {
				flagged++
			}
			ct := header(t, m.Raw).Get("Content-Type")
			if strings.HasPrefix(ct, "text/html") {
				htmlOnly++
			}
			if strings.HasPrefix(ct, "multipart/related") {
				related++
			}
		}
		if unseen < 3 || flagged < 2 || htmlOnly < 2 || related != 1 {
			t.Errorf("INBOX has %d unseen, %d flagged, %d HTML-only, %d multipart/related", unseen, flagged, htmlOnly, related)
		}
	})
}

func containsFlag(flags []string, f imap.Flag) bool {
	for _, x := range flags {
		if strings.EqualFold(x, string(f)) {
			return true
		}
	}
	return false
}

func header(t *testing.T, raw []byte) *gomail.Header {
	t.Helper()
	r, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return &r.Header
}

// checkParses walks every part of a message and checks the basic headers.
func checkParses(t *testing.T, raw []byte) {
	t.Helper()
	r, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if id, err := r.Header.MessageID(); err != nil || id == "" {
		t.Errorf("Message-ID = %q, %v", id, err)
	}
	if d, err := r.Header.Date(); err != nil || d.IsZero() {
		t.Errorf("Date = %v, %v", d, err)
	}
	if s, err := r.Header.Subject(); err != nil || s == "" {
		t.Errorf("Subject = %q, %v", s, err)
	}
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		if _, err := io.ReadAll(p.Body); err != nil {
			t.Errorf("read part: %v", err)
		}
	}
}

func TestListenTLSNeedsConfig(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Options{})
	for _, listen := range []func(string) (net.Addr, error){s.ListenIMAPS, s.ListenSMTPS} {
		if _, err := listen("127.0.0.1:0"); err == nil {
			t.Error("implicit TLS listener without TLSConfig succeeded")
		}
	}
}

// TestDovecotModeChecksTheSASLUser: with ErrorChallenge (Dovecot's behaviour) the a=/user= address must be the
// token's, as Dovecot's oauth2 passdb requires; the real-peer suite found this difference from Stalwart.
func TestDovecotModeChecksTheSASLUser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, mech, user string
		ok               bool
	}{
		{"oauthbearer, same address", "OAUTHBEARER", "alice@example.test", true},
		{"oauthbearer, other case", "OAUTHBEARER", "Alice@Example.Test", true},
		{"xoauth2, same address", "XOAUTH2", "alice@example.test", true},
		{"oauthbearer, other user", "OAUTHBEARER", "bob@example.test", false},
		{"xoauth2, other user", "XOAUTH2", "bob@example.test", false},
		{"oauthbearer, no authzid", "OAUTHBEARER", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newServer(t, Options{ErrorChallenge: true})
			c := dialIMAP(t, s)
			err := c.Authenticate(bearer{tt.mech, tt.user, "good-alice@example.test"})
			if tt.ok != (err == nil) {
				t.Errorf("Authenticate(%s as %q) = %v, want ok=%v", tt.mech, tt.user, err, tt.ok)
			}
		})
	}
}

// TestStall: a stalled server accepts and reads but answers nothing, not even the greeting, until it is let go.
func TestStall(t *testing.T) {
	s, _ := newServer(t, Options{})
	addr, err := s.ListenIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Stall(true)
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Nothing can arrive while stalled, however long we wait; a short wait keeps the test quick.
	_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 64)
	if n, err := conn.Read(buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from a stalled server = %d bytes, %v; want nothing", n, err)
	}
	s.Stall(false)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "* OK") {
		t.Fatalf("greeting after the stall = %q, %v", buf[:n], err)
	}
}

// With Options.Outbound (the demo), any recipient is accepted: local accounts
// get the message, one copy for all the others lands in the sender's Outbound
// folder, and only the reserved .invalid domain is refused.
func TestSMTPOutbound(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, Options{Outbound: true})
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		if err := s.Seed(u); err != nil {
			t.Fatal(err)
		}
	}
	addr, err := s.ListenSMTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.Dial(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(bearer{"OAUTHBEARER", "", "good-alice@example.test"}); err != nil {
		t.Fatalf("AUTH = %v", err)
	}
	if err := c.Mail("alice@example.test", nil); err != nil {
		t.Fatalf("MAIL FROM self = %v", err)
	}
	for _, bad := range []string{"x@nowhere.invalid", "y@INVALID"} {
		var se *smtp.SMTPError
		if err := c.Rcpt(bad, nil); !errors.As(err, &se) || se.Code != 550 {
			t.Errorf("RCPT %s = %v, want 550", bad, err)
		}
	}
	for _, rcpt := range []string{"bob@example.test", "bjorn@example.org", "taro.yamada@example.jp"} {
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatalf("RCPT %s = %v", rcpt, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "From: alice@example.test\r\nSubject: out\r\n\r\nhello\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Delivered != 1 || st.Outbound != 1 {
		t.Errorf("Delivered, Outbound = %d, %d; want 1, 1", st.Delivered, st.Outbound)
	}
	for _, where := range []struct{ who, box string }{{"bob@example.test", "INBOX"}, {"alice@example.test", OutboundFolder}} {
		msgs, err := s.Messages(where.who, where.box)
		n := 0
		for _, m := range msgs {
			if bytes.Contains(m.Raw, []byte("Subject: out\r\n")) {
				n++
			}
		}
		if err != nil || n != 1 {
			t.Errorf("%s %s holds %d copies of the message, %v; want 1", where.who, where.box, n, err)
		}
	}
	if _, err := s.Messages("bjorn@example.org", "INBOX"); err == nil {
		t.Error("an account was made for an outside address")
	}
}
