package mail

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/internal/devstack/mailserver"
)

func TestBaseSubject(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Hello", "Hello"},
		{"Re: Hello", "Hello"},
		{"RE: re: Fwd: Hello", "Hello"},
		{"Re[2]: Hello", "Hello"},
		{"Re [2]: Hello", "Hello"},
		{"fw:Hello", "Hello"},
		{"Hello (fwd)", "Hello"},
		{"Hello (FWD) (fwd)  ", "Hello"},
		{"[list] Re: Hello", "Hello"},
		{"Re: [list] Hello", "Hello"},
		{"[list] [other] Re: Hello", "Hello"},
		{"[Fwd: Hello]", "Hello"},
		{"[Fwd: Re: Hello (fwd)]", "Hello"},
		{"  Many   \t spaces\there ", "Many spaces here"},
		// A blob alone is the subject (step 4 keeps it when nothing would be left).
		{"[PATCH]", "[PATCH]"},
		{"Re: [PATCH]", "[PATCH]"},
		// Words that merely start like a prefix stay.
		{"Report for May", "Report for May"},
		{"Fwdsomething: x", "Fwdsomething: x"},
		{"Re:", ""},
		{"", ""},
		{"[unclosed Re: Hello", "[unclosed Re: Hello"},
		{"Aw: Hallo", "Aw: Hallo"}, // RFC 5256 knows only re/fw/fwd
	} {
		if got := BaseSubject(tc.in); got != tc.want {
			t.Errorf("BaseSubject(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// msg is a row for the grouping tables: uid, Message-ID, In-Reply-To, References (space separated), subject.
func msg(uid uint32, id, irt, refs, subject string) Summary {
	return Summary{UID: uid, MessageID: id, InReplyTo: irt, References: strings.Fields(refs), Subject: subject,
		Date: time.Date(2026, 1, 1, 0, 0, int(uid), 0, time.UTC)}
}

func groupUIDs(groups [][]Summary) [][]uint32 {
	out := make([][]uint32, len(groups))
	for i, g := range groups {
		for _, m := range g {
			out[i] = append(out[i], m.UID)
		}
	}
	return out
}

func TestGroupThreads(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Summary
		want [][]uint32
	}{
		{"unrelated", []Summary{msg(3, "c", "", "", "C"), msg(2, "b", "", "", "B"), msg(1, "a", "", "", "A")}, [][]uint32{{3}, {2}, {1}}},
		{"reply by In-Reply-To", []Summary{msg(2, "b", "a", "", "Re: A"), msg(1, "a", "", "", "A")}, [][]uint32{{2, 1}}},
		{"References win over In-Reply-To", []Summary{msg(3, "c", "x", "a b", "other"), msg(2, "b", "", "", "B"), msg(1, "a", "", "", "A")}, [][]uint32{{3, 2, 1}}},
		// The parent is not on the page: two replies to it still meet through the shared reference.
		{"common missing parent", []Summary{msg(5, "e", "root", "", "Q1"), msg(4, "d", "", "root", "Q2")}, [][]uint32{{5, 4}}},
		{"base subject merges", []Summary{msg(2, "b", "", "", "Re: [list] Plans"), msg(1, "a", "", "", "plans")}, [][]uint32{{2, 1}}},
		{"empty subjects do not merge", []Summary{msg(2, "b", "", "", ""), msg(1, "a", "", "", "Re:")}, [][]uint32{{2}, {1}}},
		{"no ids at all", []Summary{msg(2, "", "", "", "X"), msg(1, "", "", "", "Y")}, [][]uint32{{2}, {1}}},
		{"duplicate Message-ID", []Summary{msg(2, "a", "", "", "one"), msg(1, "a", "", "", "two")}, [][]uint32{{2, 1}}},
		{"angle brackets ignored", []Summary{msg(2, "b", "<a>", "", "x"), msg(1, "<a>", "", "", "y")}, [][]uint32{{2, 1}}},
		{"chain through a middle message", []Summary{msg(3, "c", "b", "", "s3"), msg(9, "z", "", "", "zzz"), msg(1, "a", "", "", "s1"), msg(2, "b", "a", "", "s2")}, [][]uint32{{3, 1, 2}, {9}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := groupUIDs(GroupThreads(tc.in))
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("GroupThreads = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFlattenThreads(t *testing.T) {
	// (1)(2 3 (4 5)(6)): RFC 5256 section 4's example shape.
	in := []imapclient.ThreadData{
		{Chain: []uint32{1}},
		{Chain: []uint32{2, 3}, SubThreads: []imapclient.ThreadData{{Chain: []uint32{4, 5}}, {Chain: []uint32{6}}}},
	}
	got := flattenThreads(in)
	want := []Thread{{1}, {2, 3, 4, 5, 6}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("flattenThreads = %v, want %v", got, want)
	}
}

func convUIDs(cs []Conversation) ([][]uint32, []int) {
	var uids [][]uint32
	var counts []int
	for _, c := range cs {
		var u []uint32
		for _, m := range c.Messages {
			u = append(u, m.UID)
		}
		uids = append(uids, u)
		counts = append(counts, c.Count)
	}
	return uids, counts
}

// TestConversations covers both paths: the server's threads (THREAD=REFERENCES) and the grouping done here.
func TestConversations(t *testing.T) {
	page := []Summary{msg(10, "j", "", "", "J"), msg(9, "i", "h", "", "Re: H"), msg(8, "h", "", "", "H"), msg(7, "g", "", "", "G")}
	t.Run("server threads", func(t *testing.T) {
		// Thread {1 8 9}: two of three on the page. Thread {7 11}: its newest (11) is on another page. 10 is not in
		// the answer (it arrived after the THREAD).
		threads := []Thread{{1, 8, 9}, {7, 11}}
		uids, counts := convUIDs(Conversations(page, threads))
		if want := [][]uint32{{10}, {8, 9}}; !slices.EqualFunc(uids, want, slices.Equal) {
			t.Errorf("Conversations = %v, want %v", uids, want)
		}
		if want := []int{1, 3}; !slices.Equal(counts, want) {
			t.Errorf("counts = %v, want %v", counts, want)
		}
	})
	t.Run("grouped here", func(t *testing.T) {
		uids, counts := convUIDs(Conversations(page, nil))
		if want := [][]uint32{{10}, {8, 9}, {7}}; !slices.EqualFunc(uids, want, slices.Equal) {
			t.Errorf("Conversations = %v, want %v", uids, want)
		}
		if want := []int{1, 2, 1}; !slices.Equal(counts, want) {
			t.Errorf("counts = %v, want %v", counts, want)
		}
	})
	t.Run("ordered by newest message date", func(t *testing.T) {
		a := msg(1, "a", "", "", "A")
		b := msg(2, "b", "", "", "B")
		r := msg(3, "r", "a", "", "Re: A")
		r.Date = b.Date.Add(time.Hour)
		uids, _ := convUIDs(Conversations([]Summary{r, b, a}, nil))
		if want := [][]uint32{{1, 3}, {2}}; !slices.EqualFunc(uids, want, slices.Equal) {
			t.Errorf("Conversations = %v, want %v", uids, want)
		}
	})
}

func TestSnippetOf(t *testing.T) {
	single := func(sub, charset, enc string) imap.BodyStructure {
		return &imap.BodyStructureSinglePart{Type: "text", Subtype: sub, Params: map[string]string{"charset": charset}, Encoding: enc}
	}
	multi := func(sub string) imap.BodyStructure {
		return &imap.BodyStructureMultiPart{Subtype: sub, Extended: &imap.BodyStructureMultiPartExt{Params: map[string]string{"boundary": "b"}}}
	}
	for _, tc := range []struct {
		name string
		bs   imap.BodyStructure
		raw  string
		want string
	}{
		{"plain", single("plain", "utf-8", "7bit"), "Hello,\r\n\r\nsee you   at 10.\r\n", "Hello, see you at 10."},
		{"quoted-printable", single("plain", "utf-8", "quoted-printable"), "Gr=C3=BC=C3=9Fe aus M=C3=BC=\r\nnchen\r\n", "Grüße aus München"},
		{"latin-1", single("plain", "iso-8859-1", "quoted-printable"), "Caf=E9\r\n", "Café"},
		{"base64, cut mid-way", single("plain", "utf-8", "base64"), "SGVsbG8gd29ybGQsIHRoaXMgaXMg\r\nYmFzZTY0", "Hello world, this is base64"},
		{"html", single("html", "utf-8", "7bit"), "<html><head><title>T</title><style>p{}</style></head><body><p>Hi <b>there</b></p><script>x()</script></body></html>", "Hi there"},
		{"quoted lines and signature dropped", single("plain", "utf-8", "7bit"), "Yes.\r\n> old\r\n> text\r\nBye\r\n-- \r\nSig\r\n", "Yes. Bye"},
		{"controls and bidi", single("plain", "utf-8", "7bit"), "a\u202Eb\x00c\x1b[31md\u2066e", "a b c [31md e"},
		{"alternative prefers plain", multi("alternative"),
			"--b\r\nContent-Type: text/html\r\n\r\n<p>HTML</p>\r\n--b\r\nContent-Type: text/plain\r\n\r\nPlain\r\n--b--\r\n", "Plain"},
		{"html only in mixed", multi("mixed"),
			"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>Caf=C3=A9</p>\r\n--b\r\nContent-Type: application/pdf\r\n\r\nx\r\n--b--\r\n", "Café"},
		{"truncated first part", multi("mixed"), "--b\r\nContent-Type: text/plain\r\n\r\nThe start of a long", "The start of a long"},
		{"attachment only", multi("mixed"), "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nfile\r\n--b--\r\n", ""},
		{"not text", &imap.BodyStructureSinglePart{Type: "image", Subtype: "png"}, "\x89PNG", ""},
		{"empty", single("plain", "utf-8", "7bit"), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := snippetOf(tc.bs, []byte(tc.raw)); got != tc.want {
				t.Errorf("snippetOf = %q, want %q", got, tc.want)
			}
		})
	}
	long := snippetOf(single("plain", "utf-8", "7bit"), []byte(strings.Repeat("word ", 100)))
	if n := len([]rune(long)); n != SnippetRunes+1 || !strings.HasSuffix(long, "…") {
		t.Errorf("long snippet: %d runes (%q), want %d ending in …", n, long, SnippetRunes+1)
	}
}

// TestOverviewWithRoundTrips: conversations and snippets ride in Overview's round trip on a warm session; only the
// first view of a page on a session fetches its snippets separately. The dev server has no THREAD, so rows carry
// References and are grouped here.
func TestOverviewWithRoundTrips(t *testing.T) {
	e, _ := seededSession(t, mailserver.Options{})
	if err := e.srv.AppendBulk(alice, "Bulk", 120, bulkMessage); err != nil {
		t.Fatal(err)
	}
	e.srv.CountRoundTrips(20 * time.Millisecond)
	ctx := ctxT(t)
	s, err := Dial(ctx, e.imapServer(TLSNone, MechOAuthBearer), Credentials{alice, aliceToken})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.canThread() {
		t.Fatal("the dev server advertises THREAD=REFERENCES; this test is about the fallback")
	}
	opt := ListOptions{Threads: true, Snippets: true}
	var cursor uint32
	for _, step := range []struct {
		name   string
		change func()
		older  bool
		trips  int64
	}{
		// A warm view waits for a NOOP first (Session.syncOpen), then everything else in one round trip.
		{name: "first view", trips: 2},
		{name: "warm", trips: 2},
		{name: "new mail", change: func() {
			if err := e.srv.AppendBulk(alice, "Bulk", 2, func(i int) []byte { return bulkMessage(200 + i) }); err != nil {
				t.Fatal(err)
			}
		}, trips: 2},
		{name: "warm again", trips: 2},
		{name: "older page", older: true, trips: 2},
		{name: "newest again", trips: 2},
	} {
		if step.change != nil {
			step.change()
		}
		var before uint32
		if step.older {
			before = cursor
		}
		start := e.srv.Stats().RoundTrips
		_, page, err := s.OverviewWith(ctx, "Bulk", before, 50, opt)
		cursor = page.Before
		trips := e.srv.Stats().RoundTrips - start
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if trips != step.trips {
			t.Errorf("%s: %d round trips, want %d", step.name, trips, step.trips)
		}
		if len(page.Summaries) != 50 {
			t.Fatalf("%s: %d rows, want 50", step.name, len(page.Summaries))
		}
		for _, m := range page.Summaries {
			i := strings.TrimPrefix(m.Subject, "Bulk message ")
			want := fmt.Sprintf("Hello, this is message number %s of the bulk folder.", i)
			if strings.HasSuffix(i, "0") && m.Snippet == "See attachment." {
				continue // bulkMessage's messages with an attachment: their first text part
			}
			if m.Snippet != want {
				t.Errorf("%s: UID %d snippet %q, want %q", step.name, m.UID, m.Snippet, want)
			}
		}
	}
	// Snippets are cached across views, whatever the session did in between (a plain view reuses the selection): a
	// warm view fetches at most the newest message's again.
	for i := range 3 {
		if _, _, err := s.Overview(ctx, "Bulk", 0, 50); err != nil {
			t.Fatal(err)
		}
		before := s.snippets.fetched
		if _, _, err := s.OverviewWith(ctx, "Bulk", 0, 50, opt); err != nil {
			t.Fatal(err)
		}
		if n := s.snippets.fetched - before; n > 1 {
			t.Errorf("warm view %d after a plain one fetched %d snippets, want at most 1", i+1, n)
		}
	}
	// Options are per call: a plain Overview afterwards has neither.
	_, page, err := s.Overview(ctx, "Bulk", 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	if page.Summaries[0].Snippet != "" {
		t.Errorf("plain Overview has snippet %q", page.Summaries[0].Snippet)
	}
}

// TestConversationsSeededThread: the dev server's twelve-message INBOX thread becomes one conversation, from
// Message-ID, In-Reply-To and References alone.
func TestConversationsSeededThread(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	_, page, err := s.OverviewWith(ctxT(t), "INBOX", 0, 100, ListOptions{Threads: true})
	if err != nil {
		t.Fatal(err)
	}
	var found *Conversation
	convs := Conversations(page.Summaries, page.Threads)
	for i, c := range convs {
		if strings.Contains(c.Latest().Subject, "Migration plan") {
			if found != nil {
				t.Fatalf("the migration thread is split (UID %d)", c.Latest().UID)
			}
			found = &convs[i]
		}
	}
	if found == nil {
		t.Fatal("no conversation about the migration plan")
	}
	if found.Count != 12 || len(found.Messages) != 12 {
		t.Errorf("migration conversation: count %d, %d messages; want 12", found.Count, len(found.Messages))
	}
	for i := 1; i < len(found.Messages); i++ {
		if found.Messages[i].Date.Before(found.Messages[i-1].Date) {
			t.Errorf("conversation not oldest first at %d", i)
		}
	}
	// The conversation view's lookup finds the same twelve, on its own (SEARCH, then References and GroupThreads).
	rows, err := s.ThreadOf(ctxT(t), "INBOX", found.Messages[0].UID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 12 {
		t.Errorf("ThreadOf the first message = %d rows, want 12", len(rows))
	}
	for i, r := range rows {
		if r.UID != found.Messages[i].UID {
			t.Errorf("ThreadOf row %d = UID %d, want %d", i, r.UID, found.Messages[i].UID)
		}
		if i > 0 && r.References == nil {
			t.Errorf("ThreadOf row %d has no References: the header was not fetched", i)
		}
	}
	if _, err := s.ThreadOf(ctxT(t), "INBOX", 99999); !errors.Is(err, ErrNoMessage) {
		t.Errorf("ThreadOf a missing UID: %v, want ErrNoMessage", err)
	}
	if len(convs) >= len(page.Summaries) {
		t.Errorf("%d conversations for %d messages: nothing grouped", len(convs), len(page.Summaries))
	}
}

// FuzzSnippetOf: whatever a message's text holds, its snippet is one short line of visible text.
func FuzzSnippetOf(f *testing.F) {
	f.Add("text/plain", "quoted-printable", "utf-8", "Gr=C3=BC=C3=9Fe\r\n> quoted\r\nline \u202Eevil")
	f.Add("text/html", "base64", "iso-8859-1", "PGI+aGk8L2I+")
	f.Add("multipart/mixed", "7bit", "", "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--")
	f.Fuzz(func(t *testing.T, mt, enc, charset, raw string) {
		typ, sub, _ := strings.Cut(mt, "/")
		var bs imap.BodyStructure = &imap.BodyStructureSinglePart{Type: typ, Subtype: sub, Encoding: enc, Params: map[string]string{"charset": charset}}
		if strings.EqualFold(typ, "multipart") {
			bs = &imap.BodyStructureMultiPart{Subtype: sub, Extended: &imap.BodyStructureMultiPartExt{Params: map[string]string{"boundary": "b"}}}
		}
		got := snippetOf(bs, []byte(raw))
		if n := len([]rune(got)); n > SnippetRunes+1 {
			t.Errorf("snippet of %d runes", n)
		}
		for _, r := range got {
			if r == '\n' || r == '\r' || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("snippet %q has %U", got, r)
			}
		}
		if got != strings.TrimSpace(got) {
			t.Errorf("snippet %q has surrounding space", got)
		}
	})
}

// FuzzGroupThreads: every message lands in exactly one group, whatever the ids and subjects.
func FuzzGroupThreads(f *testing.F) {
	f.Add("a", "", "", "Re: x", "b", "a", "a", "x")
	f.Fuzz(func(t *testing.T, id1, irt1, refs1, sub1, id2, irt2, refs2, sub2 string) {
		in := []Summary{msg(1, id1, irt1, refs1, sub1), msg(2, id2, irt2, refs2, sub2), msg(3, id1, "", "", sub2)}
		n := 0
		for _, g := range GroupThreads(in) {
			n += len(g)
		}
		if n != len(in) {
			t.Errorf("%d messages in the groups, want %d", n, len(in))
		}
		_ = BaseSubject(sub1)
	})
}
