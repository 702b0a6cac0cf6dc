package mail

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/postern/postern/internal/devstack/mailserver"
)

func testMessage(from, to, subject string) string {
	return strings.ReplaceAll(fmt.Sprintf("From: %s\nTo: %s\nSubject: %s\nDate: Fri, 20 Nov 2026 09:00:00 +0000\nMessage-ID: <%s@example.test>\n\nHello Bob.\n",
		from, to, subject, strings.ReplaceAll(subject, " ", "-")), "\n", "\r\n")
}

func TestSend(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	e.srv.Seed(bobAddr)
	for _, mode := range []TLSMode{TLSNone, TLSStartTLS, TLSImplicit} {
		for _, mech := range []Mechanism{MechOAuthBearer, MechXOAuth2} {
			t.Run(string(mode)+"/"+string(mech), func(t *testing.T) {
				ctx := ctxT(t)
				subject := "hello via " + string(mode) + " " + string(mech)
				before, _ := e.srv.MailboxCount(bobAddr, "INBOX")
				err := Send(ctx, e.smtpServer(mode, mech), Credentials{alice, aliceToken}, alice, []string{bobAddr},
					strings.NewReader(testMessage(alice, bobAddr, subject)))
				if err != nil {
					t.Fatalf("Send() error = %v", err)
				}
				msgs, err := e.srv.Messages(bobAddr, "INBOX")
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) != before+1 {
					t.Fatalf("bob's INBOX has %d messages, want %d", len(msgs), before+1)
				}
				last := msgs[len(msgs)-1]
				if !strings.Contains(string(last.Raw), "Subject: "+subject+"\r\n") {
					t.Errorf("newest message in bob's INBOX is not ours:\n%s", last.Raw)
				}
				if len(last.Flags) != 0 {
					t.Errorf("delivered message flags = %v, want none (unseen)", last.Flags)
				}
			})
		}
	}
	if got := e.srv.Stats().Delivered; got != 6 {
		t.Errorf("Delivered = %d, want 6", got)
	}
}

func TestSendErrors(t *testing.T) {
	tests := []struct {
		name     string
		opts     mailserver.Options
		token    string
		from     string
		to       []string
		idpDown  int   // 1: userinfo answers 503, 2: it drops the connection
		want     error // sentinel, or nil to check wantCode
		wantCode int   // SMTP reply code when want is nil
		wantAcks int64
		wantRcpt string // the refused recipient the SendError names
	}{
		{"wrong sender", mailserver.Options{}, aliceToken, bobAddr, []string{bobAddr}, 0, ErrSenderRefused, 501, 0, ""},
		{"unknown domain", mailserver.Options{}, aliceToken, alice, []string{bobAddr, "someone@elsewhere.example"}, 0, ErrRecipientRefused, 550, 0, "someone@elsewhere.example"},
		{"bad token", mailserver.Options{}, "wrong", alice, []string{bobAddr}, 0, ErrAuthFailed, 0, 0, ""},
		{"idp 503", mailserver.Options{}, aliceToken, alice, []string{bobAddr}, 1, ErrAuthUnavailable, 0, 0, ""},
		{"idp unreachable", mailserver.Options{}, aliceToken, alice, []string{bobAddr}, 2, ErrAuthUnavailable, 0, 0, ""},
		{"dovecot bad token", mailserver.Options{ErrorChallenge: true}, "wrong", alice, []string{bobAddr}, 0, ErrAuthFailed, 0, 1, ""},
		{"xoauth2 not offered", mailserver.Options{Mechanisms: []string{"OAUTHBEARER"}}, aliceToken, alice, []string{bobAddr}, 0, nil, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			e.srv.Seed(bobAddr)
			e.idp.down.Store(tt.idpDown == 1)
			e.idp.gone.Store(tt.idpDown == 2)
			mech := MechOAuthBearer
			if tt.name == "xoauth2 not offered" {
				mech = MechXOAuth2
			}
			err := Send(ctxT(t), e.smtpServer(TLSNone, mech), Credentials{alice, tt.token}, tt.from, tt.to,
				strings.NewReader(testMessage(tt.from, bobAddr, tt.name)))
			if err == nil {
				t.Fatal("Send() succeeded")
			}
			if strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q contains the token", err)
			}
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Errorf("Send() error = %v, want %v", err, tt.want)
				}
			} else if errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrAuthUnavailable) {
				t.Errorf("Send() error = %v, want no auth sentinel", err)
			}
			if tt.wantCode != 0 {
				var se *SendError
				if !errors.As(err, &se) || se.Code != tt.wantCode || se.Recipient != tt.wantRcpt {
					t.Errorf("Send() error = %v, want SMTP %d naming recipient %q", err, tt.wantCode, tt.wantRcpt)
				}
			}
			if got := e.srv.Stats().ChallengeAcks; got != tt.wantAcks {
				t.Errorf("server saw %d error-challenge acks, want %d", got, tt.wantAcks)
			}
			if got := e.srv.Stats().Delivered; got != 0 {
				t.Errorf("Delivered = %d, want 0", got)
			}
		})
	}
}

func TestSendNoRecipients(t *testing.T) {
	err := Send(ctxT(t), Server{Host: "127.0.0.1", Port: 1}, Credentials{alice, aliceToken}, alice, nil, strings.NewReader(""))
	if err == nil || !strings.Contains(err.Error(), "no recipients") {
		t.Errorf("Send() without recipients = %v, want a 'no recipients' error", err)
	}
}
