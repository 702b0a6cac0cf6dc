package web

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestInboxRoundTripOnWarmPool: a folder page viewed again on a pooled connection that still has the folder open
// waits for the mail server twice: a NOOP, which brings the session's view up to date (mail.Session.syncOpen: Dovecot
// would run commands pipelined behind it on the old view), then the page's FETCH (flags only for the rows it has,
// mail/rowcache.go) and the folder list with counts (LIST-STATUS), pipelined (mail.Overview). Before issue 14 the
// same view cost three round trips (LIST, then EXAMINE, then FETCH). The first view on a new connection costs the
// login and one more round trip to learn the folder's size; a folder not open is one (EXAMINE pipelined).
func TestInboxRoundTripOnWarmPool(t *testing.T) {
	s := newStack(t)
	if err := s.mail.AppendBulk("alice@example.test", "Big", 500, func(i int) []byte {
		return fmt.Appendf(nil, "From: Sender %d <s%d@example.test>\r\nTo: alice@example.test\r\nSubject: Round trip %d\r\n"+
			"Date: Mon, 2 Nov 2026 10:%02d:00 +0000\r\nMessage-ID: <rt-%d@example.test>\r\n\r\nBody %d.\r\n", i, i, i, i%60, i, i)
	}); err != nil {
		t.Fatal(err)
	}
	// Counting holds the first answer of every turn 20 ms, so that commands pipelined by a goroutine paused on this
	// loaded machine still arrive within the turn (mailserver.CountRoundTrips).
	s.mail.CountRoundTrips(20 * time.Millisecond)
	br := newBrowser(t)
	if r := s.signIn(br, "alice", "/mail/Big"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in = %d", r.status)
	}
	view := func(path string) (int64, string) {
		t.Helper()
		start := s.mail.Stats().RoundTrips
		r := br.get(s.ts.URL + path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %d", path, r.status)
		}
		return s.mail.Stats().RoundTrips - start, r.body
	}
	view("/mail/Big") // the pool's first connection: greeting, login, the folder's size
	for i := range 3 {
		trips, body := view("/mail/Big")
		if trips != 2 {
			t.Errorf("warm view %d of /mail/Big: %d round trips, want 2", i+1, trips)
		}
		if !strings.Contains(body, "Round trip 499") || strings.Contains(body, "Round trip 449<") {
			t.Errorf("warm view %d does not show the newest 50 messages", i+1)
		}
	}
	trips, body := view("/mail/Big?before=451")
	if trips != 2 {
		t.Errorf("older page: %d round trips, want 2", trips)
	}
	if !strings.Contains(body, "Round trip 449") {
		t.Error("older page does not show message 449 (UID 450)")
	}
	if trips, _ := view("/mail/INBOX"); trips > 2 {
		t.Errorf("first view of another folder: %d round trips, want at most 2", trips)
	}
	if trips, _ := view("/mail/INBOX"); trips != 2 {
		t.Errorf("warm view of INBOX: %d round trips, want 2", trips)
	}
	// Another folder's page in between: Big is no longer open, and its page is one round trip again (EXAMINE, the
	// FETCH and the LIST pipelined), with its rows' flags only.
	if trips, _ := view("/mail/Big"); trips != 1 {
		t.Errorf("view of Big after INBOX: %d round trips, want 1", trips)
	}
	if p := s.pool.Stats(); p.Logins != 1 {
		t.Errorf("%d IMAP logins for all these views, want 1", p.Logins)
	}
}
