package mail

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/postern/postern/internal/devstack/mailserver"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDial(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	for _, mode := range []TLSMode{TLSNone, TLSStartTLS, TLSImplicit} {
		for _, mech := range []Mechanism{MechOAuthBearer, MechXOAuth2} {
			t.Run(string(mode)+"/"+string(mech), func(t *testing.T) {
				ctx := ctxT(t)
				before := e.idp.calls.Load()
				s, err := Dial(ctx, e.imapServer(mode, mech), Credentials{alice, aliceToken})
				if err != nil {
					t.Fatalf("Dial() error = %v", err)
				}
				if err := s.Noop(ctx); err != nil {
					t.Errorf("Noop() error = %v", err)
				}
				if err := s.Close(); err != nil {
					t.Errorf("Close() error = %v", err)
				}
				if got := e.idp.calls.Load() - before; got != 1 {
					t.Errorf("userinfo calls = %d, want 1", got)
				}
				if err := s.Noop(ctx); err == nil {
					t.Error("Noop() after Close() succeeded")
				}
			})
		}
	}
}

func TestDialUntrustedCertificate(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	srv := e.imapServer(TLSImplicit, MechOAuthBearer)
	srv.TLSConfig = nil // system roots do not include the test CA
	_, err := Dial(ctxT(t), srv, Credentials{alice, aliceToken})
	if err == nil || errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Dial() error = %v, want a certificate error", err)
	}
	if e.idp.calls.Load() != 0 {
		t.Error("the token reached the server over an unverified connection")
	}
}

func TestDialAuthErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    mailserver.Options
		mech    Mechanism
		token   string
		idpDown int // 1: userinfo answers 503, 2: it drops the connection
		want    error
		// wantAcks is how many %x01 answers to an error challenge the server saw.
		wantAcks int64
	}{
		{"stalwart bad token oauthbearer", mailserver.Options{}, MechOAuthBearer, "wrong", 0, ErrAuthFailed, 0},
		{"stalwart bad token xoauth2", mailserver.Options{}, MechXOAuth2, "wrong", 0, ErrAuthFailed, 0},
		// Stalwart maps an IdP outage to AUTHENTICATIONFAILED in IMAP.
		{"stalwart idp 503", mailserver.Options{}, MechOAuthBearer, aliceToken, 1, ErrAuthFailed, 0},
		{"stalwart idp unreachable", mailserver.Options{}, MechXOAuth2, aliceToken, 2, ErrAuthFailed, 0},
		{"dovecot bad token oauthbearer", mailserver.Options{ErrorChallenge: true}, MechOAuthBearer, "wrong", 0, ErrAuthFailed, 1},
		{"dovecot bad token xoauth2", mailserver.Options{ErrorChallenge: true}, MechXOAuth2, "wrong", 0, ErrAuthFailed, 1},
		{"dovecot idp 503", mailserver.Options{ErrorChallenge: true}, MechOAuthBearer, aliceToken, 1, ErrAuthUnavailable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			e.idp.down.Store(tt.idpDown == 1)
			e.idp.gone.Store(tt.idpDown == 2)
			_, err := Dial(ctxT(t), e.imapServer(TLSNone, tt.mech), Credentials{alice, tt.token})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Dial() error = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q contains the token", err)
			}
			if got := e.srv.Stats().ChallengeAcks; got != tt.wantAcks {
				t.Errorf("server saw %d error-challenge acks, want %d", got, tt.wantAcks)
			}
			// The failed connection was closed cleanly, not left open.
			waitFor(t, "server sessions to close", func() bool { return e.srv.Stats().Sessions == 0 })
		})
	}
}

func TestDialMechanismNotOffered(t *testing.T) {
	e := newEnv(t, mailserver.Options{Mechanisms: []string{"OAUTHBEARER"}})
	_, err := Dial(ctxT(t), e.imapServer(TLSNone, MechXOAuth2), Credentials{alice, aliceToken})
	if err == nil || errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), "AUTH=XOAUTH2") {
		t.Fatalf("Dial() error = %v, want a configuration error naming AUTH=XOAUTH2", err)
	}
	if got := e.srv.Stats().AuthAttempts; got != 0 {
		t.Errorf("server saw %d auth attempts, want 0", got)
	}
}

func TestDialCancelled(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, e.imapServer(TLSNone, MechOAuthBearer), Credentials{alice, aliceToken}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial() error = %v, want context.Canceled", err)
	}
}

func seededSession(t *testing.T, opts mailserver.Options) (*env, *Session) {
	t.Helper()
	e := newEnv(t, opts)
	if err := e.srv.Seed(alice); err != nil {
		t.Fatal(err)
	}
	s, err := Dial(ctxT(t), e.imapServer(TLSNone, MechOAuthBearer), Credentials{alice, aliceToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return e, s
}

func TestMailboxes(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts mailserver.Options
	}{
		{"list-status", mailserver.Options{}},
		{"status per mailbox", mailserver.Options{NoListStatus: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, s := seededSession(t, tt.opts)
			boxes, err := s.Mailboxes(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			var names, specials []string
			for _, b := range boxes {
				names = append(names, b.Name)
				specials = append(specials, b.Special)
				want, err := e.srv.MailboxCount(alice, b.Name)
				if err != nil {
					t.Fatal(err)
				}
				if int(b.Messages) != want {
					t.Errorf("%s: Messages = %d, want %d", b.Name, b.Messages, want)
				}
				if b.Delimiter != "/" || b.NoSelect {
					t.Errorf("%s: Delimiter, NoSelect = %q, %v, want \"/\", false", b.Name, b.Delimiter, b.NoSelect)
				}
			}
			wantNames := "INBOX Drafts Sent Archive Junk Trash Projects Receipts"
			if got := strings.Join(names, " "); got != wantNames {
				t.Errorf("Mailboxes() order = %s, want %s", got, wantNames)
			}
			wantSpecials := "inbox drafts sent archive junk trash  "
			if got := strings.Join(specials, " "); got != wantSpecials {
				t.Errorf("Special = %q, want %q", got, wantSpecials)
			}
			inbox := boxes[0]
			if inbox.Messages < 40 || inbox.Unseen == 0 || inbox.Unseen >= inbox.Messages {
				t.Errorf("INBOX counts = %d messages, %d unseen; want >= 40 with some unseen", inbox.Messages, inbox.Unseen)
			}
		})
	}
}

func TestSortMailboxesByName(t *testing.T) {
	boxes := []Mailbox{
		{Name: "zeta"}, {Name: "Trash", Special: SpecialTrash}, {Name: "Alpha"}, {Name: "INBOX", Special: SpecialInbox},
		{Name: "beta"}, {Name: "Sent", Special: SpecialSent},
	}
	sortMailboxes(boxes)
	var got []string
	for _, b := range boxes {
		got = append(got, b.Name)
	}
	if want := "INBOX Sent Trash Alpha beta zeta"; strings.Join(got, " ") != want {
		t.Errorf("sortMailboxes() = %v, want %s", got, want)
	}
}

func TestSummaries(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	all, err := s.Summaries(ctx, "INBOX", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 40 {
		t.Fatalf("Summaries(INBOX, 100) returned %d, want >= 40", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].UID >= all[i-1].UID || all[i].Date.After(all[i-1].Date) {
			t.Errorf("summary %d (uid %d, %v) not older than summary %d (uid %d, %v)",
				i, all[i].UID, all[i].Date, i-1, all[i-1].UID, all[i-1].Date)
		}
	}
	bySubject := map[string]Summary{}
	for _, m := range all {
		bySubject[m.Subject] = m
	}
	tests := []struct {
		subject        string
		fromName       string
		wantAttachment bool
		wantSeen       bool
		wantFlagged    bool
	}{
		{"Grüße aus München – Übersicht für Q4", "Grete Müller", false, true, true},
		{"会議の議事録（11月第1週）", "山田 太郎", false, true, false},
		// ISO-2022-JP subject and body.
		{"来週の予定について", "山田 太郎", false, false, false},
		// ISO-8859-1 subject and From.
		{"Rückfrage zur Rechnung Nr. 2026-118", "Jürgen Weiß", false, true, false},
		{"Your invoice INV-2026-1042 for October", "Northwind Hosting", true, true, false},
		// Only an inline cid: image, which is not an attachment.
		{"Photos from the offsite", "Carol Nguyen", false, true, false},
		{"Slides for Thursday", "Björn Lindqvist", true, false, false},
		{"The Self-Hosted Weekly #212", "The Self-Hosted Weekly", false, true, false},
		{"Backup report for 2026-11-19: FAILED", "Nightly Backup", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			m, ok := bySubject[tt.subject]
			if !ok {
				t.Fatalf("no summary with subject %q", tt.subject)
			}
			if len(m.From) != 1 || m.From[0].Name != tt.fromName {
				t.Errorf("From = %v, want name %q", m.From, tt.fromName)
			}
			if m.HasAttachment != tt.wantAttachment || m.Seen != tt.wantSeen || m.Flagged != tt.wantFlagged {
				t.Errorf("HasAttachment, Seen, Flagged = %v, %v, %v, want %v, %v, %v",
					m.HasAttachment, m.Seen, m.Flagged, tt.wantAttachment, tt.wantSeen, tt.wantFlagged)
			}
			if m.Size <= 0 || m.UID == 0 || m.Date.IsZero() || len(m.To) == 0 {
				t.Errorf("summary incomplete: %+v", m)
			}
		})
	}

	t.Run("newest n", func(t *testing.T) {
		few, err := s.Summaries(ctx, "INBOX", 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(few) != 5 || few[0].UID != all[0].UID || few[4].UID != all[4].UID {
			t.Errorf("Summaries(INBOX, 5) = %d summaries starting uid %d, want the 5 newest starting uid %d", len(few), few[0].UID, all[0].UID)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		again, err := s.Summaries(ctx, "INBOX", 100)
		if err != nil {
			t.Fatal(err)
		}
		for i := range again {
			if again[i].Seen != all[i].Seen {
				t.Errorf("uid %d: Seen changed from %v to %v by listing", again[i].UID, all[i].Seen, again[i].Seen)
			}
		}
	})
	t.Run("empty mailbox", func(t *testing.T) {
		got, err := s.Summaries(ctx, "Trash", 10)
		if err != nil || len(got) != 1 {
			t.Errorf("Summaries(Trash) = %d, %v, want 1 summary", len(got), err)
		}
	})
	t.Run("missing mailbox is not a connection error", func(t *testing.T) {
		if _, err := s.Summaries(ctx, "No such box", 10); err == nil {
			t.Fatal("Summaries(missing) succeeded")
		}
		if !s.usable() {
			t.Error("session marked unusable after a NO reply")
		}
		if err := s.Noop(ctx); err != nil {
			t.Errorf("Noop() after NO = %v", err)
		}
	})
}

func TestDialServerSilent(t *testing.T) {
	// A server that accepts but never greets must not hang Dial past ctx.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	srv := Server{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, TLS: TLSNone}
	start := time.Now()
	_, err = Dial(ctx, srv, Credentials{alice, aliceToken})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial() = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial() took %v after the deadline", d)
	}
}

func TestHasAttachment(t *testing.T) {
	leaf := func(typ, sub, disp, filename, id string) *imap.BodyStructureSinglePart {
		p := &imap.BodyStructureSinglePart{Type: typ, Subtype: sub, ID: id, Extended: &imap.BodyStructureSinglePartExt{}}
		if disp != "" {
			p.Extended.Disposition = &imap.BodyStructureDisposition{Value: disp, Params: map[string]string{"filename": filename}}
		}
		return p
	}
	multi := func(sub string, parts ...imap.BodyStructure) *imap.BodyStructureMultiPart {
		return &imap.BodyStructureMultiPart{Subtype: sub, Children: parts}
	}
	text := leaf("text", "plain", "", "", "")
	html := leaf("text", "html", "", "", "")
	tests := []struct {
		name string
		bs   imap.BodyStructure
		want bool
	}{
		{"nil", nil, false},
		{"plain", text, false},
		{"alternative", multi("alternative", text, html), false},
		{"inline cid image", multi("related", multi("alternative", text, html), leaf("image", "png", "inline", "a.png", "<a@x>")), false},
		{"cid image without disposition", multi("related", html, leaf("image", "png", "", "", "<a@x>")), false},
		{"pdf attachment", multi("mixed", text, leaf("application", "pdf", "attachment", "a.pdf", "")), true},
		{"text attachment", multi("mixed", text, leaf("text", "plain", "attachment", "notes.txt", "")), true},
		{"pdf without disposition", multi("mixed", text, leaf("application", "pdf", "", "", "")), true},
		{"forwarded message", multi("mixed", text, leaf("message", "rfc822", "", "", "")), true},
		{"pgp signature", multi("signed", text, leaf("application", "pgp-signature", "", "", "")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hasAttachment(tt.bs); got != tt.want {
				t.Errorf("hasAttachment() = %v, want %v", got, tt.want)
			}
		})
	}
}
