package bridge

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func (e *env) dialSubmissions(t *testing.T) *smtp.Client {
	t.Helper()
	c, err := smtp.DialTLS(e.smtps, e.client)
	if err != nil {
		t.Fatalf("DialTLS: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSMTPSubmissionThroughBridge(t *testing.T) {
	e := newEnv(t, Options{})
	for _, tc := range []struct {
		name string
		dial func(t *testing.T) *smtp.Client
		auth sasl.Client
	}{
		{"implicit TLS, PLAIN", e.dialSubmissions, sasl.NewPlainClient("", alice, alicePW)},
		{"STARTTLS, LOGIN", func(t *testing.T) *smtp.Client {
			c, err := smtp.DialStartTLS(e.smtp, e.client)
			if err != nil {
				t.Fatalf("DialStartTLS: %v", err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}, sasl.NewLoginClient(alice, alicePW)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := e.stack.Mail.Messages(bob, "INBOX")
			c := tc.dial(t)
			if err := c.Auth(tc.auth); err != nil {
				t.Fatalf("Auth: %v", err)
			}
			subject := "via the bridge " + tc.name
			if err := c.SendMail(alice, []string{bob}, strings.NewReader("From: alice@example.test\r\nTo: bob@example.test\r\nSubject: "+subject+"\r\n\r\nhello\r\n")); err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			after, _ := e.stack.Mail.Messages(bob, "INBOX")
			if len(after) != len(before)+1 || !strings.Contains(string(after[len(after)-1].Raw), subject) {
				t.Errorf("bob's INBOX has %d messages (was %d), want the new one", len(after), len(before))
			}
		})
	}
}

func TestSMTPRefusesOtherSender(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.dialSubmissions(t)
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatal(err)
	}
	err := c.Mail(bob, nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("MAIL FROM another address = %v, want 550 5.7.1", err)
	}
}

func TestSMTPWrongPassword(t *testing.T) {
	e := newEnv(t, Options{})
	before := e.upstreamAuths()
	c := e.dialSubmissions(t)
	for i := 0; i < maxFailures; i++ {
		err := c.Auth(sasl.NewPlainClient("", alice, "wrong"))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 535 {
			t.Fatalf("AUTH with a wrong password = %v, want 535", err)
		}
	}
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err == nil {
		t.Error("a fourth AUTH on the connection succeeded, want the connection closed")
	}
	if got := e.upstreamAuths() - before; got != 0 {
		t.Errorf("upstream AUTHs for wrong passwords = %d, want 0", got)
	}
	if e.delays.Load() == 0 {
		t.Error("no delay before refusing a wrong password")
	}
}

func TestSMTPNoAuthInCleartext(t *testing.T) {
	e := newEnv(t, Options{})
	c, err := smtp.Dial(e.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before STARTTLS")
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Error("STARTTLS not offered")
	}
}

func TestLoginMechanism(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps [][]byte // client responses, nil for none
	}{
		{"without initial response", [][]byte{nil, []byte("alice"), []byte("pw")}},
		{"with initial response", [][]byte{[]byte("alice"), []byte("pw")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var user, pw string
			l := &loginServer{check: func(u, p string) error { user, pw = u, p; return nil }}
			var done bool
			for i, resp := range tc.steps {
				ch, d, err := l.Next(resp)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if !d && len(ch) == 0 {
					t.Fatalf("step %d: no prompt", i)
				}
				done = d
			}
			if !done || user != "alice" || pw != "pw" {
				t.Errorf("LOGIN = done %v, user %q, password %q", done, user, pw)
			}
		})
	}
}

// TestSMTPRelaysReplies: the upstream's answer to each RCPT reaches the client (550 5.1.1 for an unknown mailbox,
// while the other recipient is taken), and two messages on one connection cost one upstream AUTH.
func TestSMTPRelaysReplies(t *testing.T) {
	e := newEnv(t, Options{})
	before := e.upstreamAuths()
	c := e.dialSubmissions(t)
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := c.Mail(alice, nil); err != nil {
			t.Fatalf("MAIL FROM: %v", err)
		}
		err := c.Rcpt("nobody@nowhere.test", nil)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
			t.Errorf("RCPT TO an unknown mailbox = %v, want the upstream's 550 5.1.1", err)
		}
		if err := c.Rcpt(bob, nil); err != nil {
			t.Fatalf("RCPT TO bob: %v", err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("Subject: relayed " + itoa(i) + "\r\n\r\nhi\r\n"))
		if err := w.Close(); err != nil {
			t.Fatalf("end of data: %v", err)
		}
	}
	if got := e.upstreamAuths() - before; got != 1 {
		t.Errorf("upstream AUTHs for two messages on one connection = %d, want 1", got)
	}
}

func TestSMTPSignInAgain(t *testing.T) {
	e := newEnv(t, Options{PublicURL: "https://mail.example.test"})
	e.auth.grants["grant-alice"].ended = true
	c := e.dialSubmissions(t)
	err := c.Auth(sasl.NewPlainClient("", alice, alicePW))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 || !strings.Contains(se.Message, "sign in again at https://mail.example.test/devices") {
		t.Errorf("AUTH of a device whose grant ended = %v, want 535 with the sign-in URL", err)
	}
}

func TestSMTPCloseDevice(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.dialSubmissions(t)
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePW)); err != nil {
		t.Fatal(err)
	}
	e.bridge.CloseDevice("dev-alice")
	if err := c.Noop(); err == nil {
		t.Error("NOOP after CloseDevice succeeded, want the connection closed")
	}
}

// TestCloseBeforeServe: a listener handed to ServeSubmission(s) after Close is closed, not served forever (cmd
// stops an app that may not have started serving yet).
func TestCloseBeforeServe(t *testing.T) {
	e := newEnv(t, Options{})
	e.bridge.Close()
	for _, serve := range []func(net.Listener) error{e.bridge.ServeSubmissions, e.bridge.ServeSubmission, e.bridge.ServeIMAPS, e.bridge.ServeIMAP} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- serve(l) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			l.Close()
			t.Fatal("a listener served after Close was still accepting 5 s later")
		}
	}
}
