package web

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/mail"
)

// BenchmarkInboxPage measures what a user waits for: GET /mail/Big through the whole server (session cookie, grant
// lookup, pooled IMAP connection, folder list with counts, one page of 50 summaries, template), against a
// 10,000-message folder on the dev IMAP server. BenchmarkInboxRawFetch is the floor: one imapclient UID FETCH of the
// same 50 messages' envelope, flags, structure, size and date on an already selected folder. docs/benchmarks.md
// records the ratio.
func BenchmarkInboxPage(b *testing.B) {
	s, br := benchStack(b)
	for b.Loop() {
		r := br.get(s.ts.URL + "/mail/Big")
		if r.status != http.StatusOK {
			b.Fatalf("GET /mail/Big = %d", r.status)
		}
	}
}

func BenchmarkInboxRawFetch(b *testing.B) {
	s, _ := benchStack(b)
	ids, err := s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject("alice"))
	if err != nil || len(ids) == 0 {
		b.Fatal(ids, err)
	}
	g, err := s.store.Grant(context.Background(), ids[0])
	if err != nil {
		b.Fatal(err)
	}
	c, err := imapclient.DialInsecure(s.imapAddr, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc, err := mail.NewSASLClient(mail.MechOAuthBearer, mail.Credentials{Address: "alice@example.test", Token: g.AccessToken})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Authenticate(sc); err != nil {
		b.Fatal(err)
	}
	sel, err := c.Select("Big", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		b.Fatal(err)
	}
	var set imap.UIDSet
	set.AddRange(sel.UIDNext-50, sel.UIDNext-1)
	items := &imap.FetchOptions{UID: true, Envelope: true, Flags: true, BodyStructure: &imap.FetchItemBodyStructure{}, RFC822Size: true, InternalDate: true}
	for b.Loop() {
		msgs, err := c.Fetch(set, items).Collect()
		if err != nil || len(msgs) != 50 {
			b.Fatal(len(msgs), err)
		}
	}
}

// benchStack is the test stack with alice signed in and a 10,000-message folder "Big".
func benchStack(b *testing.B) (*stack, *browser) {
	b.Helper()
	s := newStack(b)
	br := newBrowser(b)
	if r := s.signIn(br, "alice", "/mail/INBOX"); r.status != http.StatusSeeOther {
		b.Fatalf("sign-in = %d", r.status)
	}
	err := s.mail.AppendBulk("alice@example.test", "Big", 10000, func(i int) []byte {
		return fmt.Appendf(nil, "From: Sender %d <sender%d@example.test>\r\nTo: alice@example.test\r\nSubject: Message number %d\r\n"+
			"Date: Mon, 2 Nov 2026 10:%02d:00 +0000\r\nMessage-ID: <bench-%d@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBody of message %d.\r\n",
			i, i, i, i%60, i, i)
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	return s, br
}
