package mail

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// threadingProxy stands between a client and the dev IMAP server (which has no THREAD) and makes it look like a
// server with THREAD=REFERENCES, for the test of that path: it adds the capability wherever the server lists its
// capabilities, turns "UID THREAD REFERENCES UTF-8 ALL" into "UID SEARCH ALL", and answers the search as a THREAD
// response (RFC 5256 section 4) whose threads are given by group: messages with the same key are one thread, a
// chain in UID order. Lines are rewritten only when they are exactly those; everything else passes untouched.
func threadingProxy(t *testing.T, upstream string, group func(uid uint32) uint32) (port int, searched func() []string) {
	t.Helper()
	var (
		mu   sync.Mutex
		keys []string // the search keys of the THREAD commands seen
	)
	threadCmd := regexp.MustCompile(`^(\S+) UID THREAD REFERENCES UTF-8 ([^\r\n]+)\r\n$`)
	port = lineProxy(t, upstream, func() (func(string) string, func(string) string) {
		pending := 0 // this connection's THREAD commands rewritten whose SEARCH answer is still to come
		fromClient := func(line string) string {
			m := threadCmd.FindStringSubmatch(line)
			if m == nil {
				return line
			}
			mu.Lock()
			defer mu.Unlock()
			pending++
			keys = append(keys, m[2])
			return m[1] + " UID SEARCH " + m[2] + "\r\n"
		}
		fromServer := func(line string) string {
			if strings.Contains(line, "CAPABILITY ") {
				line = strings.Replace(line, "CAPABILITY ", "CAPABILITY THREAD=REFERENCES ", 1)
			}
			mu.Lock()
			defer mu.Unlock()
			if pending > 0 && (strings.HasPrefix(line, "* SEARCH") || strings.HasPrefix(line, "* ESEARCH")) {
				pending--
				line = threadAnswer(line, group)
			}
			return line
		}
		return fromClient, fromServer
	})
	return port, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(keys)
	}
}

// threadAnswer turns "* SEARCH 1 2 3" or "* ESEARCH (TAG "x") UID ALL 1:3" into "* THREAD (1 2)(3)".
func threadAnswer(line string, group func(uint32) uint32) string {
	var uids []uint32
	f := strings.Fields(line)
	if f[1] == "SEARCH" {
		for _, n := range f[2:] {
			u, _ := strconv.ParseUint(n, 10, 32)
			uids = append(uids, uint32(u))
		}
	} else if i := slices.Index(f, "ALL"); i >= 0 && i+1 < len(f) {
		for _, r := range strings.Split(f[i+1], ",") {
			lo, hi, _ := strings.Cut(r, ":")
			a, _ := strconv.ParseUint(lo, 10, 32)
			b, err := strconv.ParseUint(hi, 10, 32)
			if err != nil {
				b = a
			}
			for u := min(a, b); u <= max(a, b); u++ {
				uids = append(uids, uint32(u))
			}
		}
	}
	threads := map[uint32][]uint32{}
	var keys []uint32
	for _, u := range uids {
		k := group(u)
		if _, ok := threads[k]; !ok {
			keys = append(keys, k)
		}
		threads[k] = append(threads[k], u)
	}
	var b strings.Builder
	b.WriteString("* THREAD ")
	for _, k := range keys {
		fmt.Fprintf(&b, "(%s)", strings.Trim(fmt.Sprint(threads[k]), "[]"))
	}
	return b.String() + "\r\n"
}

// TestOverviewServerThreads: with THREAD=REFERENCES the server's threads come in Overview's one round trip, rows
// carry no References (the server needs none from us), conversations count the thread's messages on other pages,
// and ThreadOf asks the server too.
func TestOverviewServerThreads(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	if err := e.srv.Seed(alice); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.AppendBulk(alice, "Bulk", 120, bulkMessage); err != nil {
		t.Fatal(err)
	}
	// Threads: UIDs 1–2, 3–4, … and, across the page boundary, 70 with 71.
	group := func(uid uint32) uint32 {
		if uid == 70 {
			return 71 / 2
		}
		return uid / 2
	}
	port, searched := threadingProxy(t, fmt.Sprintf("127.0.0.1:%d", e.imap), group)
	e.srv.CountRoundTrips(20 * time.Millisecond)
	s := dialVia(t, e, port)
	ctx := ctxT(t)
	if !s.canThread() {
		t.Fatal("the proxy did not add THREAD=REFERENCES")
	}
	opt := ListOptions{Threads: true, Snippets: true}
	for i, want := range []int64{2, 2} { // the first view: EXAMINE, then the rest; a warm one: NOOP, then the rest
		start := e.srv.Stats().RoundTrips
		_, page, err := s.OverviewWith(ctx, "Bulk", 0, 50, opt)
		trips := e.srv.Stats().RoundTrips - start
		if err != nil {
			t.Fatal(err)
		}
		if trips != want {
			t.Errorf("view %d: %d round trips, want %d", i+1, trips, want)
		}
		if page.Threads == nil {
			t.Fatal("no threads from the server")
		}
		if page.Summaries[0].References != nil {
			t.Error("rows fetched References although the server threads")
		}
		convs := Conversations(page.Summaries, page.Threads)
		// Page: UIDs 71–120 → {71(+70 elsewhere)}, {72,73}, …, {118,119}, {120}: 26 conversations.
		if len(convs) != 26 {
			t.Errorf("view %d: %d conversations, want 26", i+1, len(convs))
		}
		for _, c := range convs {
			if c.Latest().UID == 71 && (c.Count != 2 || len(c.Messages) != 1) {
				t.Errorf("conversation of 71: count %d with %d on the page, want 2 with 1", c.Count, len(c.Messages))
			}
		}
	}
	// The first view threads the page and its margin (five rows), by sequence number once the EXAMINE has said
	// where the page starts; the warm one reuses that answer, as the messages from the hint up are the same.
	if got := searched(); len(got) != 1 || got[0] != "66:*" {
		t.Errorf("THREAD search keys = %q, want 66:* alone", got)
	}
	// The threads are cached with the messages they cover (threadCache): an unchanged folder is not threaded again;
	// after new mail or an expunge, which the NOOP a warm view waits for first reports (Session.syncOpen), the
	// THREAD goes with the page's FETCH, and the new message joins its thread.
	other := dialVia(t, e, port)
	for _, step := range []struct {
		name      string
		change    func()
		trips     int
		threaded  bool
		countOf   uint32 // a conversation's message …
		wantCount int    // … and its count
	}{
		{name: "unchanged", trips: 2, countOf: 120, wantCount: 1},
		{name: "new mail in 120's thread", change: func() {
			if err := e.srv.AppendBulk(alice, "Bulk", 1, bulkMessage); err != nil { // UID 121: group 60, as 120
				t.Fatal(err)
			}
		}, trips: 2, threaded: true, countOf: 121, wantCount: 2},
		{name: "unchanged again", trips: 2, countOf: 121, wantCount: 2},
		{name: "121 expunged elsewhere", change: func() {
			if _, err := other.c.Select("Bulk", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			set := imap.UIDSetNum(121)
			if err := other.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			if err := other.c.UIDExpunge(set).Close(); err != nil {
				t.Fatal(err)
			}
		}, trips: 2, threaded: true, countOf: 120, wantCount: 1},
	} {
		if step.change != nil {
			step.change()
		}
		before := len(searched())
		start := e.srv.Stats().RoundTrips
		_, page, err := s.OverviewWith(ctx, "Bulk", 0, 50, opt)
		trips := e.srv.Stats().RoundTrips - start
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if trips != int64(step.trips) {
			t.Errorf("%s: %d round trips, want %d", step.name, trips, step.trips)
		}
		if threaded := len(searched()) > before; threaded != step.threaded {
			t.Errorf("%s: THREAD sent %v, want %v", step.name, threaded, step.threaded)
		}
		found := false
		for _, c := range Conversations(page.Summaries, page.Threads) {
			if slices.ContainsFunc(c.Messages, func(m Summary) bool { return m.UID == step.countOf }) {
				found = true
				if c.Count != step.wantCount {
					t.Errorf("%s: conversation of %d counts %d, want %d", step.name, step.countOf, c.Count, step.wantCount)
				}
			}
		}
		if !found {
			t.Errorf("%s: no conversation has %d", step.name, step.countOf)
		}
	}
	rows, err := s.ThreadOf(ctx, "Bulk", 73)
	if err != nil {
		t.Fatal(err)
	}
	if got := []uint32{rows[0].UID, rows[len(rows)-1].UID}; len(rows) != 2 || got[0] != 72 || got[1] != 73 {
		t.Errorf("ThreadOf(73) = %d rows %v, want 72 and 73", len(rows), got)
	}
	// Without the server's threads the same rows would not group: subjects and ids are all different.
	_, page, err := s.OverviewWith(ctx, "Bulk", 0, 50, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(GroupThreads(page.Summaries)); n != 50 {
		t.Errorf("grouped here: %d groups, want 50 (the test would prove nothing)", n)
	}
}
