//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/mail"
)

const (
	alice = "alice@example.test"
	bob   = "bob@example.test"
)

// mailServer describes one of the testbed's listeners for the mail package.
// The host is 127.0.0.1, which the server certificate names as an IP SAN.
func (tb *testbed) mailServer(port int, mode mail.TLSMode, mech mail.Mechanism) mail.Server {
	return mail.Server{
		Host: tb.MailHost, Port: port, TLS: mode, TLSConfig: tb.tlsConfig(),
		Mechanism: mech, DialTimeout: 10 * time.Second,
	}
}

// dial logs in to IMAP and lists the mailboxes, the least a session must
// be able to do.
func dial(ctx context.Context, srv mail.Server, c mail.Credentials) ([]mail.Mailbox, error) {
	s, err := mail.Dial(ctx, srv, c)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Mailboxes(ctx)
}

// resetPenalty logs in once with a good token. Dovecot's anvil delays every
// authentication from an IP after a failure with a different credential
// (0.5 s, then 4.5, 8.5, 15.5 s; docs/testbed.md pitfall 2), and a success
// resets it. mail.Dial has no way to choose the local address, so negative
// tests cannot use their own 127.0.0.N as the testbed notes suggest; they
// clear the penalty this way instead.
func resetPenalty(t *testing.T, tb *testbed, good mail.Credentials) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := dial(ctx, tb.mailServer(tb.IMAPPort, mail.TLSImplicit, mail.MechOAuthBearer), good); err != nil {
		t.Fatalf("login with a good token to reset the penalty: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Logf("penalty reset took %v", d.Round(time.Millisecond))
	}
}

// imapModes are the two ways to protect an IMAP connection.
func (tb *testbed) imapModes() []struct {
	name string
	port int
	mode mail.TLSMode
} {
	return []struct {
		name string
		port int
		mode mail.TLSMode
	}{
		{"starttls", tb.IMAPStartTLSPort, mail.TLSStartTLS},
		{"tls", tb.IMAPPort, mail.TLSImplicit},
	}
}

var mechanisms = []mail.Mechanism{mail.MechOAuthBearer, mail.MechXOAuth2}

// TestIMAPSASL logs in to Dovecot with the mail package, both mechanisms over
// STARTTLS and implicit TLS, with an access token Hydra issued; Dovecot checks
// it at Hydra's userinfo, as Stalwart does at Authelia's.
func TestIMAPSASL(t *testing.T) {
	tb := peers(t)
	tok := tb.directLogin(t, tb.postern(), "alice", "alice-password")
	good := mail.Credentials{Address: alice, Token: tok.Access}

	for _, m := range tb.imapModes() {
		for _, mech := range mechanisms {
			t.Run(fmt.Sprintf("%s/%s", mech, m.name), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				start := time.Now()
				boxes, err := dial(ctx, tb.mailServer(m.port, m.mode, mech), good)
				if err != nil {
					t.Fatalf("Dial = %v, want a session", err)
				}
				if !slices.ContainsFunc(boxes, func(b mail.Mailbox) bool { return b.Name == "INBOX" }) {
					t.Errorf("Mailboxes = %v, want INBOX among them", boxes)
				}
				t.Logf("login and LIST in %v", time.Since(start).Round(time.Millisecond))
			})
		}
	}

	// The address in the SASL message is case-insensitive at Dovecot
	// (auth_username_format %Lu); Postern lower-cases it anyway.
	t.Run("address-case", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c := mail.Credentials{Address: "Alice@Example.Test", Token: tok.Access}
		if _, err := dial(ctx, tb.mailServer(tb.IMAPPort, mail.TLSImplicit, mail.MechOAuthBearer), c); err != nil {
			t.Errorf("Dial with a mixed-case address = %v, want a session", err)
		}
	})
}

// TestIMAPSASLRefused checks that every token Dovecot must refuse comes back
// as mail.ErrAuthFailed (a refused token: sign in again), never as
// ErrAuthUnavailable (a temporary failure) or a generic error.
func TestIMAPSASLRefused(t *testing.T) {
	tb := peers(t)
	aliceTok := tb.directLogin(t, tb.postern(), "alice", "alice-password")
	bobTok := tb.directLogin(t, tb.postern(), "bob", "bob-password")
	good := mail.Credentials{Address: alice, Token: aliceTok.Access}

	// A second grant for alice, revoked at Hydra (RFC 7009): revoking the
	// refresh token kills the grant's access token too.
	revoked := tb.directLogin(t, tb.postern(), "alice", "alice-password")
	tb.revoke(t, tb.postern(), revoked.Refresh)
	if in := tb.introspect(t, revoked.Access); in.Active {
		t.Fatalf("access token still active after revoking its refresh token")
	}

	// Each case costs about 4.5 s: the refusal, then the penalty that the
	// next login pays (see resetPenalty). Four cover both mechanisms, both
	// TLS modes and the three reasons.
	cases := []struct {
		name  string
		port  int
		mode  mail.TLSMode
		mech  mail.Mechanism
		creds mail.Credentials
	}{
		{"garbage/oauthbearer/tls", tb.IMAPPort, mail.TLSImplicit, mail.MechOAuthBearer, mail.Credentials{Address: alice, Token: "ory_at_not-a-token." + randomString()}},
		{"revoked/xoauth2/starttls", tb.IMAPStartTLSPort, mail.TLSStartTLS, mail.MechXOAuth2, mail.Credentials{Address: alice, Token: revoked.Access}},
		{"revoked/oauthbearer/starttls", tb.IMAPStartTLSPort, mail.TLSStartTLS, mail.MechOAuthBearer, mail.Credentials{Address: alice, Token: revoked.Access}},
		{"other-user/xoauth2/tls", tb.IMAPPort, mail.TLSImplicit, mail.MechXOAuth2, mail.Credentials{Address: alice, Token: bobTok.Access}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			_, err := dial(ctx, tb.mailServer(tc.port, tc.mode, tc.mech), tc.creds)
			elapsed := time.Since(start)
			if !errors.Is(err, mail.ErrAuthFailed) {
				t.Errorf("Dial = %v, want mail.ErrAuthFailed", err)
			}
			if errors.Is(err, mail.ErrAuthUnavailable) {
				t.Errorf("Dial = %v: a refused token must not look temporary", err)
			}
			if err != nil && strings.Contains(err.Error(), tc.creds.Token) {
				t.Errorf("the error quotes the token")
			}
			t.Logf("refused in %v: %v", elapsed.Round(time.Millisecond), err)
			resetPenalty(t, tb, good)
		})
	}
}

// message builds a small RFC 5322 message.
func message(from, to, subject string) string {
	return strings.ReplaceAll(fmt.Sprintf(`From: %s
To: %s
Subject: %s
Date: %s
Message-ID: <%s@e2e.postern.test>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Sent by Postern's end-to-end suite.
`, from, to, subject, time.Now().Format(time.RFC1123Z), randomString()), "\n", "\r\n")
}

// send submits a message from bob to alice with bob's token.
func send(ctx context.Context, srv mail.Server, token, subject string) error {
	return mail.Send(ctx, srv, mail.Credentials{Address: bob, Token: token}, bob, []string{alice}, strings.NewReader(message(bob, alice, subject)))
}

// waitForSubjects polls alice's INBOX over IMAP until every subject is there:
// delivery goes through Postfix and Dovecot LMTP, which takes a few tens of
// milliseconds.
func waitForSubjects(t *testing.T, tb *testbed, aliceToken string, subjects ...string) {
	t.Helper()
	srv := tb.mailServer(tb.IMAPPort, mail.TLSImplicit, mail.MechOAuthBearer)
	var missing []string
	err := eventually(15*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := mail.Dial(ctx, srv, mail.Credentials{Address: alice, Token: aliceToken})
		if err != nil {
			return err
		}
		defer s.Close()
		sums, err := s.Summaries(ctx, "INBOX", 200)
		if err != nil {
			return err
		}
		missing = missing[:0]
		for _, want := range subjects {
			if !slices.ContainsFunc(sums, func(s mail.Summary) bool { return s.Subject == want }) {
				missing = append(missing, want)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not delivered yet: %q", missing)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("alice's INBOX: %v", err)
	}
}

// TestSubmission sends mail with mail.Send through both submission paths of
// the testbed (Dovecot submission relaying to Postfix, and Postfix with
// Dovecot SASL) and finds it in the recipient's INBOX over IMAP.
func TestSubmission(t *testing.T) {
	tb := peers(t)
	bobTok := tb.directLogin(t, tb.postern(), "bob", "bob-password")
	aliceTok := tb.directLogin(t, tb.postern(), "alice", "alice-password")

	paths := []struct {
		name string
		srv  mail.Server
	}{
		{"dovecot/starttls/oauthbearer", tb.mailServer(tb.SubmissionStartTLSPort, mail.TLSStartTLS, mail.MechOAuthBearer)},
		{"dovecot/tls/xoauth2", tb.mailServer(tb.SubmissionPort, mail.TLSImplicit, mail.MechXOAuth2)},
		{"dovecot/tls/oauthbearer", tb.mailServer(tb.SubmissionPort, mail.TLSImplicit, mail.MechOAuthBearer)},
		// Postfix's submission port has no TLS in the testbed; the token
		// crosses loopback only.
		{"postfix/none/oauthbearer", tb.mailServer(tb.PostfixSubmissionPort, mail.TLSNone, mail.MechOAuthBearer)},
		{"postfix/none/xoauth2", tb.mailServer(tb.PostfixSubmissionPort, mail.TLSNone, mail.MechXOAuth2)},
	}
	var subjects []string
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			subject := "e2e " + p.name + " " + randomString()[:8]
			start := time.Now()
			if err := send(ctx, p.srv, bobTok.Access, subject); err != nil {
				t.Fatalf("Send = %v", err)
			}
			t.Logf("submitted in %v", time.Since(start).Round(time.Millisecond))
			subjects = append(subjects, subject)
		})
	}
	waitForSubjects(t, tb, aliceTok.Access, subjects...)

	good := mail.Credentials{Address: alice, Token: aliceTok.Access}
	for _, p := range []struct {
		name string
		srv  mail.Server
	}{
		{"refused/dovecot/tls", paths[2].srv},
		{"refused/postfix/none", paths[3].srv},
	} {
		t.Run(p.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := send(ctx, p.srv, "ory_at_not-a-token."+randomString(), "never delivered")
			if !errors.Is(err, mail.ErrAuthFailed) {
				t.Errorf("Send with a garbage token = %v, want mail.ErrAuthFailed", err)
			}
			t.Logf("refused: %v", err)
			resetPenalty(t, tb, good)
		})
	}
}
