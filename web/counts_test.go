package web

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/mail"
)

// TestFolderCountsFollowOtherClients: the unread counts of the folder list are right on every view of a warm pooled
// connection, whatever another client (a phone, Thunderbird) changed in between: new mail in a folder the session
// does not have selected, a message of the selected folder marked read, one expunged, and one marked unread again.
// A folder page takes its counts from the server in the same round trip as the page (mail.Session.Overview), so
// nothing cached may survive such a change; this test fails if something does.
func TestFolderCountsFollowOtherClients(t *testing.T) {
	s := newStack(t)
	br := newBrowser(t)
	if r := s.signIn(br, "alice", "/mail/INBOX"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in = %d", r.status)
	}
	other := otherClient(t, s)
	if err := other.Create("Elsewhere", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	view := func() string {
		t.Helper()
		r := br.get(s.ts.URL + "/mail/INBOX")
		if r.status != http.StatusOK {
			t.Fatalf("GET /mail/INBOX = %d", r.status)
		}
		return r.body
	}
	// The counts the page must show are the server's, asked by the other client after each change.
	check := func(step string) {
		t.Helper()
		body := view()
		for _, box := range []string{"INBOX", "Elsewhere"} {
			st, err := other.Status(box, &imap.StatusOptions{NumUnseen: true}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := unreadShown(t, body, box), *st.NumUnseen; got != want {
				t.Errorf("%s: %s shows %d unread, the server has %d", step, box, got, want)
			}
		}
	}
	view()
	view() // warm: the pooled connection has INBOX selected and a page hint
	check("before any change")
	if s.pool.Stats().Logins != 1 {
		t.Fatalf("%d IMAP logins, want 1 (the views must share one warm connection)", s.pool.Stats().Logins)
	}

	for i := range 3 {
		msg := fmt.Sprintf("From: x@example.test\r\nTo: alice@example.test\r\nSubject: elsewhere %d\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nhi\r\n", i)
		cmd := other.Append("Elsewhere", int64(len(msg)), nil)
		cmd.Write([]byte(msg))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	check("after new mail in another folder")

	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	unseen, err := other.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	uids := unseen.AllUIDs()
	if len(uids) < 2 {
		t.Fatalf("the seeded INBOX has %d unread messages, want at least 2", len(uids))
	}
	store := func(uid imap.UID, op imap.StoreFlagsOp, flags ...imap.Flag) {
		t.Helper()
		if err := other.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}
	store(uids[0], imap.StoreFlagsAdd, imap.FlagSeen)
	check("after a message of the selected folder was read elsewhere")

	store(uids[1], imap.StoreFlagsAdd, imap.FlagDeleted)
	if err := other.UIDExpunge(imap.UIDSetNum(uids[1])).Close(); err != nil {
		t.Fatal(err)
	}
	check("after an unread message was expunged elsewhere")

	store(uids[0], imap.StoreFlagsDel, imap.FlagSeen)
	check("after a message was marked unread again elsewhere")
	if s.pool.Stats().Logins != 1 {
		t.Errorf("%d IMAP logins, want 1", s.pool.Stats().Logins)
	}
}

// otherClient is a second IMAP client of alice's mailbox, logged in directly at the dev mail server with her grant's
// access token, as another mail app of hers would be.
func otherClient(t *testing.T, s *stack) *imapclient.Client {
	t.Helper()
	ctx := context.Background()
	ids, err := s.store.GrantsBySubject(ctx, s.idp.Issuer(), idp.Subject("alice"))
	if err != nil || len(ids) == 0 {
		t.Fatal(ids, err)
	}
	g, err := s.store.Grant(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(s.imapAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc, err := mail.NewSASLClient(mail.MechOAuthBearer, mail.Credentials{Address: "alice@example.test", Token: g.AccessToken})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Authenticate(sc); err != nil {
		t.Fatal(err)
	}
	return c
}

// unreadShown reads the unread count the folder list of a page shows for box (0 when it shows none).
func unreadShown(t *testing.T, page, box string) uint32 {
	t.Helper()
	link := regexp.MustCompile(`<a href="` + regexp.QuoteMeta(mailboxURL(box)) + `"[^>]*>(.*?)</a>`).FindStringSubmatch(page)
	if link == nil {
		t.Fatalf("no folder link for %s in the page", box)
	}
	m := regexp.MustCompile(`class="count">(\d+)<span class="visually-hidden"> unread</span>`).FindStringSubmatch(link[1])
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[1], 10, 32)
	return uint32(n)
}
