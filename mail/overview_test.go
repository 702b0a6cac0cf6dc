package mail

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// TestOverviewRoundTrips counts the round trips of Overview on one session while another client changes the
// mailbox, and checks every answer against Mailboxes and List on a third session: the speculative fetch of the
// newest page may cost a second round trip, never a wrong page.
// With elsewhere, the session has another mailbox selected before each view (as after reading another folder), so
// Overview sends EXAMINE; without, the folder is still selected and it sends NOOP instead.
func TestOverviewRoundTrips(t *testing.T) {
	for _, elsewhere := range []bool{true, false} {
		t.Run(map[bool]string{true: "other mailbox selected", false: "same mailbox selected"}[elsewhere], func(t *testing.T) {
			testOverviewRoundTrips(t, elsewhere)
		})
	}
}

func testOverviewRoundTrips(t *testing.T, elsewhere bool) {
	e, _ := seededSession(t, mailserver.Options{})
	if err := e.srv.AppendBulk(alice, "Bulk", 300, bulkMessage); err != nil {
		t.Fatal(err)
	}
	// Counted connections from here on: the sessions below.
	e.srv.CountRoundTrips(20 * time.Millisecond)
	srv := e.imapServer(TLSNone, MechOAuthBearer)
	ctx := ctxT(t)
	s, err := Dial(ctx, srv, Credentials{alice, aliceToken})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ref, err := Dial(ctx, srv, Credentials{alice, aliceToken})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	other, err := Dial(ctx, srv, Credentials{alice, aliceToken})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.c.Select("Bulk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	expunge := func(uids ...imap.UID) {
		t.Helper()
		set := imap.UIDSetNum(uids...)
		if err := other.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		if err := other.c.UIDExpunge(set).Close(); err != nil {
			t.Fatal(err)
		}
	}

	flag := func(op imap.StoreFlagsOp, f imap.Flag, uids ...imap.UID) {
		t.Helper()
		if err := other.c.Store(imap.UIDSetNum(uids...), &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{f}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}

	var cursor uint32
	for _, step := range []struct {
		name   string
		change func()
		before func() uint32
		trips  int64
		// cached: the rows of the page came from the row cache, only their flags from the server (rowcache.go).
		cached bool
	}{
		{name: "first view of the folder on this session", trips: 2},
		{name: "warm", trips: 1, cached: true},
		{name: "warm again", trips: 1, cached: true},
		{name: "flags changed elsewhere", change: func() {
			flag(imap.StoreFlagsAdd, imap.FlagSeen, 295)
			flag(imap.StoreFlagsAdd, imap.FlagFlagged, 260)
		}, trips: 1, cached: true},
		{name: "one newest message expunged elsewhere", change: func() { expunge(300) }, trips: 1, cached: true},
		{name: "the page's oldest rows expunged elsewhere, within the margin", change: func() { expunge(251, 252) }, trips: 1, cached: true},
		{name: "more expunged than the margin", change: func() { expunge(240, 241, 242, 243, 244, 245, 246, 247, 248) }, trips: 2, cached: true},
		{name: "new mail", change: func() {
			if err := e.srv.AppendBulk(alice, "Bulk", 3, bulkMessage); err != nil {
				t.Fatal(err)
			}
		}, trips: 1, cached: true},
		{name: "a flag cleared elsewhere", change: func() { flag(imap.StoreFlagsDel, imap.FlagSeen, 295) }, trips: 1, cached: true},
		// Its UID range has the nine expunged UIDs in it: the rows missing from the range cost a second fetch.
		{name: "older page over a gap", before: func() uint32 { return cursor }, trips: 2},
		{name: "next older page", before: func() uint32 { return cursor }, trips: 1},
		{name: "newest again", trips: 1, cached: true},
	} {
		if step.change != nil {
			step.change()
		}
		var before uint32
		if step.before != nil {
			before = step.before()
		}
		// The session's previous command may have left the selected mailbox elsewhere, as a pooled session's would.
		if elsewhere {
			if _, err := s.c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
				t.Fatal(err)
			}
		}
		start, fromCache := e.srv.Stats().RoundTrips, s.rows.flagsOnly
		boxes, page, err := s.Overview(ctx, "Bulk", before, 50)
		trips := e.srv.Stats().RoundTrips - start
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		// A session that still has the folder open waits for a NOOP first (Session.syncOpen), instead of the
		// EXAMINE pipelined with the rest.
		wantTrips := step.trips
		if !elsewhere && step.name != "first view of the folder on this session" {
			wantTrips++
		}
		if trips != wantTrips {
			t.Errorf("%s: %d round trips, want %d", step.name, trips, wantTrips)
		}
		if n := s.rows.flagsOnly - fromCache; step.cached != (n >= 45) {
			t.Errorf("%s: %d rows from the cache, want them all: %v", step.name, n, step.cached)
		}
		wantBoxes, err := ref.Mailboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(boxes, wantBoxes) {
			t.Errorf("%s: mailboxes\n%v\nwant\n%v", step.name, boxes, wantBoxes)
		}
		want, err := ref.List(ctx, "Bulk", before, 50)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(pageFlags(page), pageFlags(want)) {
			t.Errorf("%s: flags %v, want %v", step.name, pageFlags(page), pageFlags(want))
		}
		if !slices.Equal(uidsOf(page), uidsOf(want)) || page.Total != want.Total || page.Before != want.Before {
			t.Errorf("%s: page %v total %d before %d, want %v total %d before %d", step.name,
				uidsOf(page), page.Total, page.Before, uidsOf(want), want.Total, want.Before)
		}
		cursor = page.Before
	}
}

// TestOverviewMissingMailbox: a refused EXAMINE fails the overview with ErrNoMailbox and leaves the session usable.
func TestOverviewMissingMailbox(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	if _, _, err := s.Overview(ctx, "Nope", 0, 50); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("Overview(Nope) error = %v, want ErrNoMailbox", err)
	}
	if _, p, err := s.Overview(ctx, "INBOX", 0, 50); err != nil || len(p.Summaries) == 0 {
		t.Fatalf("Overview(INBOX) after a refused one: %d rows, %v", len(p.Summaries), err)
	}
}

// pageFlags is the flags of a page's rows that are set, as "uid:seen" or "uid:flagged".
func pageFlags(p Page) []string {
	var out []string
	for _, m := range p.Summaries {
		if m.Seen {
			out = append(out, fmt.Sprintf("%d:seen", m.UID))
		}
		if m.Flagged {
			out = append(out, fmt.Sprintf("%d:flagged", m.UID))
		}
	}
	return out
}

// TestOverviewQuietView: a warm view after which the NOOP reported nothing new sends only the NOOP, then the flags
// FETCH of the cached rows and the LIST: no FETCH of what arrived (nothing can have, without an EXISTS). New mail
// is shown at once, also when it arrived while the folder was closed and another command re-opened it.
func TestOverviewQuietView(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	if err := e.srv.AppendBulk(alice, "Bulk", 100, bulkMessage); err != nil {
		t.Fatal(err)
	}
	port, commands := commandProxy(t, fmt.Sprintf("127.0.0.1:%d", e.imap))
	s := dialVia(t, e, port)
	ctx := ctxT(t)
	newMail := func() {
		if err := e.srv.AppendBulk(alice, "Bulk", 1, bulkMessage); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		name    string
		before  func()
		fetches int    // UID FETCHes sent
		newest  uint32 // the page's first row
	}{
		{name: "first view", fetches: 0, newest: 100}, // by sequence number: FETCH, not UID FETCH
		{name: "warm", fetches: 1, newest: 100},
		{name: "quiet", fetches: 1, newest: 100},
		{name: "quiet again", fetches: 1, newest: 100},
		{name: "new mail", before: newMail, fetches: 2, newest: 101},
		{name: "quiet after new mail", fetches: 1, newest: 101},
		{name: "new mail while another folder was open, then a read re-opened it", before: func() {
			if _, err := s.List(ctx, "INBOX", 0, 10); err != nil {
				t.Fatal(err)
			}
			newMail()
			if _, err := s.Read(ctx, "Bulk", 1, ReadOptions{MarkSeen: true}); err != nil {
				t.Fatal(err)
			}
		}, fetches: 2, newest: 102},
	} {
		if step.before != nil {
			step.before()
		}
		commands()
		_, page, err := s.Overview(ctx, "Bulk", 0, 50)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		sent := commands()
		n := 0
		for _, c := range sent {
			if c == "UID FETCH" {
				n++
			}
		}
		if n != step.fetches {
			t.Errorf("%s: %d UID FETCHes (%v), want %d", step.name, n, sent, step.fetches)
		}
		if len(page.Summaries) != 50 || page.Summaries[0].UID != step.newest {
			t.Errorf("%s: %d rows from %v, want 50 from %d", step.name, len(page.Summaries), uidsOf(page)[:1], step.newest)
		}
	}
}
