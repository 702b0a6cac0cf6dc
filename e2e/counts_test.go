//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/mail"
)

// TestWebmailFolderCountsOtherClient is web's TestFolderCountsFollowOtherClients against Dovecot: while Postern's
// pooled connection stays warm (INBOX selected, the page's NOOP + FETCH + LIST-STATUS in one round trip), another
// client of alice's adds mail to another folder, reads, expunges and unreads messages of INBOX; every following view
// shows Dovecot's counts, asked by that other client after each change.
func TestWebmailFolderCountsOtherClient(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	aliceTok := tb.directLogin(t, tb.postern(), "alice", "alice-password")
	other, err := imapclient.DialTLS(fmt.Sprintf("127.0.0.1:%d", tb.IMAPPort), &imapclient.Options{TLSConfig: tb.tlsConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	sc, err := mail.NewSASLClient(mail.MechOAuthBearer, mail.Credentials{Address: alice, Token: aliceTok.Access})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Authenticate(sc); err != nil {
		t.Fatal(err)
	}
	box := "Counts" + randomString()[:6]
	if err := other.Create(box, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendTo := func(mailbox string, flags []imap.Flag, subject string) {
		t.Helper()
		msg := message(bob, alice, subject)
		cmd := other.Append(mailbox, int64(len(msg)), &imap.AppendOptions{Flags: flags})
		cmd.Write([]byte(msg))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		appendTo("INBOX", nil, fmt.Sprintf("counts inbox %d", i))
	}

	p := startPostern(t, tb, posternOptions{Listen: "127.0.0.1:18080", Client: tb.postern()})
	b := newBrowser(t)
	resp, _ := b.signInForm(ctx, t, p.URL+"/mail/INBOX", "alice", "alice-password")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in ended with status %d", resp.StatusCode)
	}
	check := func(step string) {
		t.Helper()
		page := p.inbox(ctx, t, b)
		for _, mb := range []string{"INBOX", box} {
			st, err := other.Status(mb, &imap.StatusOptions{NumUnseen: true}).Wait()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := unreadOnPage(t, page, mb), *st.NumUnseen; got != want {
				t.Errorf("%s: the page shows %d unread in %s, Dovecot has %d", step, got, mb, want)
			}
		}
	}
	p.inbox(ctx, t, b)
	check("before any change")

	for i := range 3 {
		appendTo(box, nil, fmt.Sprintf("counts elsewhere %d", i))
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
		t.Fatalf("INBOX has %d unread messages, want at least 2", len(uids))
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
}

// unreadOnPage reads the unread count the folder list of a Postern page shows for mailbox (0 when none is shown).
func unreadOnPage(t *testing.T, page, mailbox string) uint32 {
	t.Helper()
	href := "/mail/" + url.PathEscape(mailbox)
	link := regexp.MustCompile(`<a href="` + regexp.QuoteMeta(href) + `"[^>]*>(.*?)</a>`).FindStringSubmatch(page)
	if link == nil {
		t.Fatalf("no folder link for %s on the page", mailbox)
	}
	// The sidebar's count: <span class="count">N<span class="visually-hidden"> unread</span></span>; none at 0.
	m := regexp.MustCompile(`<span class="count">(\d+)<span class="visually-hidden"> unread</span>`).FindStringSubmatch(link[1])
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[1], 10, 32)
	return uint32(n)
}
