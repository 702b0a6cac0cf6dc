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

// bulkMessage is message i of a generated folder: plain text, every tenth
// with a small attachment.
func bulkMessage(i int) []byte {
	date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	body := fmt.Sprintf("Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n\r\nthis is message number %d of the bulk folder.\r\n\r\n-- \r\nSender %d\r\n", i, i%37)
	if i%10 == 0 {
		body = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n" +
			"--b\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
	}
	return fmt.Appendf(nil, "From: Sender %d <sender%d@example.org>\r\nTo: alice@example.test\r\nSubject: Bulk message %d\r\nDate: %s\r\nMessage-ID: <bulk-%d@example.org>\r\nMIME-Version: 1.0\r\n%s",
		i%37, i%37, i, date.Format(time.RFC1123Z), i, body)
}

func uidsOf(p Page) []uint32 {
	out := make([]uint32, len(p.Summaries))
	for i, s := range p.Summaries {
		out[i] = s.UID
	}
	return out
}

func span(from, to uint32) []uint32 { // from down to to, inclusive
	var out []uint32
	for u := from; u >= to && u > 0; u-- {
		out = append(out, u)
	}
	return out
}

func TestListPaging(t *testing.T) {
	for _, opts := range []mailserver.Options{{}, {DisableCaps: []string{"ESEARCH"}}} {
		t.Run(fmt.Sprintf("disable %v", opts.DisableCaps), func(t *testing.T) {
			e, s := seededSession(t, opts)
			if err := e.srv.AppendBulk(alice, "Bulk", 120, bulkMessage); err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t)
			var before uint32
			for i, want := range [][]uint32{span(120, 71), span(70, 21), span(20, 1)} {
				p, err := s.List(ctx, "Bulk", before, 50)
				if err != nil {
					t.Fatal(err)
				}
				wantBefore := want[len(want)-1]
				if i == 2 {
					wantBefore = 0
				}
				if !slices.Equal(uidsOf(p), want) || p.Total != 120 || p.Before != wantBefore {
					t.Fatalf("List(before %d) = UIDs %v, Total %d, Before %d; want %v, 120, %d", before, uidsOf(p), p.Total, p.Before, want, wantBefore)
				}
				before = p.Before
			}
			p, err := s.List(ctx, "Bulk", 0, 1)
			if err != nil || len(p.Summaries) != 1 {
				t.Fatal(p, err)
			}
			sum := p.Summaries[0]
			if sum.Subject != "Bulk message 119" || sum.From[0].Email != "sender8@example.org" || !sum.HasAttachment != (119%10 != 0) {
				t.Errorf("newest summary = %+v", sum)
			}

			// Gaps after an expunge do not disturb UID paging.
			gone := []uint32{119, 100, 99, 98, 50}
			if err := s.Expunge(ctx, "Bulk", gone); err != nil {
				t.Fatal(err)
			}
			p, err = s.List(ctx, "Bulk", 101, 5)
			if err != nil {
				t.Fatal(err)
			}
			if want := []uint32{97, 96, 95, 94, 93}; !slices.Equal(uidsOf(p), want) || p.Total != 115 || p.Before != 93 {
				t.Errorf("List(before 101) after expunge = %v, Total %d, Before %d; want %v, 115, 93", uidsOf(p), p.Total, p.Before, want)
			}
			p, err = s.List(ctx, "Bulk", 0, 3)
			if want := []uint32{120, 118, 117}; err != nil || !slices.Equal(uidsOf(p), want) || p.Before != 117 {
				t.Errorf("List(0, 3) after expunge = %v, %v; want %v", uidsOf(p), err, want)
			}
			// The cursor message itself is gone: its neighbours anchor the page.
			p, err = s.List(ctx, "Bulk", 100, 3)
			if want := []uint32{97, 96, 95}; err != nil || !slices.Equal(uidsOf(p), want) || p.Before != 95 {
				t.Errorf("List(before 100) = %v, Before %d, %v; want %v, 95", uidsOf(p), p.Before, err, want)
			}
			// Nothing near the cursor: a search finds the page.
			if err := s.Expunge(ctx, "Bulk", span(69, 60)); err != nil {
				t.Fatal(err)
			}
			p, err = s.List(ctx, "Bulk", 65, 3)
			if want := []uint32{59, 58, 57}; err != nil || !slices.Equal(uidsOf(p), want) || p.Before != 57 || p.Total != 105 {
				t.Errorf("List(before 65) = %v, Before %d, Total %d, %v; want %v, 57, 105", uidsOf(p), p.Before, p.Total, err, want)
			}
			p, err = s.List(ctx, "Bulk", 3, 5)
			if want := []uint32{2, 1}; err != nil || !slices.Equal(uidsOf(p), want) || p.Before != 0 {
				t.Errorf("List(before 3) = %v, Before %d, %v; want %v, 0", uidsOf(p), p.Before, err, want)
			}
			p, err = s.List(ctx, "Bulk", 1, 50)
			if err != nil || len(p.Summaries) != 0 || p.Before != 0 {
				t.Errorf("List(before 1) = %+v, %v; want no rows", p, err)
			}
		})
	}
}

func TestListEmptyAndMissing(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	p, err := s.List(ctx, "Trash", 0, 50)
	if err != nil || p.Total != 1 || len(p.Summaries) != 1 {
		t.Errorf("List(Trash) = %+v, %v", p, err)
	}
	if err := s.CreateMailbox(ctx, "Empty"); err != nil {
		t.Fatal(err)
	}
	p, err = s.List(ctx, "Empty", 0, 50)
	if err != nil || p.Total != 0 || len(p.Summaries) != 0 || p.Before != 0 {
		t.Errorf("List(Empty) = %+v, %v", p, err)
	}
	if _, err := s.List(ctx, "Missing", 0, 50); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("List(Missing) error = %v, want ErrNoMailbox", err)
	}
	if _, err := s.Search(ctx, "Missing", Query{Subject: "x"}, 0, 50); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("Search(Missing) error = %v, want ErrNoMailbox", err)
	}
	if err := s.Noop(ctx); err != nil {
		t.Errorf("session unusable after ErrNoMailbox: %v", err)
	}
}

func TestSearch(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	tests := []struct {
		name     string
		q        Query
		total    int
		subjects []string // the first page (n = 50), if checked
	}{
		{"subject", Query{Subject: "migration PLAN"}, 12, nil},
		{"from", Query{From: "dave@example.org"}, 5, nil},
		{"body", Query{Body: "ramen place"}, 1, []string{"Lunch on Friday?"}},
		{"to and subject", Query{To: "alice", Subject: "invoice"}, 1, []string{"Your invoice INV-2026-1042 for October"}},
		{"non-ASCII", Query{Subject: "München"}, 2, []string{"Re: Grüße aus München – Übersicht für Q4", "Grüße aus München – Übersicht für Q4"}},
		{"date range", Query{Since: time.Date(2026, 11, 19, 0, 0, 0, 0, time.UTC), Before: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}, 4, nil},
		{"newline is a space", Query{Body: "ramen\r\nplace"}, 1, nil},
		{"nothing", Query{Subject: "no message has this subject"}, 0, nil},
		{"empty query", Query{}, 42, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.Search(ctx, "INBOX", tt.q, 0, 50)
			if err != nil {
				t.Fatal(err)
			}
			if int(p.Total) != tt.total || len(p.Summaries) != tt.total || p.Before != 0 {
				t.Errorf("Search(%+v) = %d rows, Total %d, Before %d; want %d", tt.q, len(p.Summaries), p.Total, p.Before, tt.total)
			}
			if tt.subjects != nil {
				var got []string
				for _, sum := range p.Summaries {
					got = append(got, sum.Subject)
				}
				if !slices.Equal(got, tt.subjects) {
					t.Errorf("subjects = %q, want %q", got, tt.subjects)
				}
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		var all []uint32
		var before uint32
		for page := 0; ; page++ {
			p, err := s.Search(ctx, "INBOX", Query{Subject: "Migration plan"}, before, 5)
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != 12 {
				t.Errorf("page %d Total = %d, want 12", page, p.Total)
			}
			all = append(all, uidsOf(p)...)
			if p.Before == 0 {
				break
			}
			before = p.Before
		}
		if len(all) != 12 || !slices.IsSortedFunc(all, func(a, b uint32) int { return int(b) - int(a) }) {
			t.Errorf("paged UIDs = %v, want 12 descending", all)
		}
	})
}

func TestNewestBelow(t *testing.T) {
	set := imap.UIDSet{{Start: 10, Stop: 12}, {Start: 1, Stop: 3}, {Start: 20, Stop: 20}}
	tests := []struct {
		before uint32
		n      int
		want   []imap.UID
		more   bool
	}{
		{0, 3, []imap.UID{20, 12, 11}, true},
		{0, 7, []imap.UID{20, 12, 11, 10, 3, 2, 1}, false},
		{11, 2, []imap.UID{10, 3}, true},
		{11, 4, []imap.UID{10, 3, 2, 1}, false},
		{2, 5, []imap.UID{1}, false},
		{1, 5, nil, false},
	}
	for _, tt := range tests {
		got, more := newestBelow(set, tt.before, tt.n)
		if !slices.Equal(got, tt.want) || more != tt.more {
			t.Errorf("newestBelow(%d, %d) = %v, %v; want %v, %v", tt.before, tt.n, got, more, tt.want, tt.more)
		}
	}
	if got := uidCount(imap.UIDSet{{Start: 1, Stop: 5}, {Start: 3, Stop: 7}, {Start: 9, Stop: 9}}); got != 8 {
		t.Errorf("uidCount() = %d, want 8", got)
	}
}

// benchFolder is a 10,000-message folder on the dev server.
func benchFolder(b *testing.B) (*env, *Session) {
	b.Helper()
	e := newEnv(b, mailserver.Options{})
	if err := e.srv.AppendBulk(alice, "Big", 10000, bulkMessage); err != nil {
		b.Fatal(err)
	}
	s, err := Dial(b.Context(), e.imapServer(TLSNone, MechOAuthBearer), Credentials{alice, aliceToken})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return e, s
}

// BenchmarkListPage lists 50 rows of a 10,000-message folder: the newest
// page (EXAMINE + FETCH by sequence range) and a page deep in the folder
// (EXAMINE + UID SEARCH + UID FETCH).
func BenchmarkListPage(b *testing.B) {
	_, s := benchFolder(b)
	for _, bc := range []struct {
		name   string
		before uint32
	}{{"newest", 0}, {"middle", 5001}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				p, err := s.List(b.Context(), "Big", bc.before, 50)
				if err != nil || len(p.Summaries) != 50 {
					b.Fatal(len(p.Summaries), err)
				}
			}
		})
	}
}

// BenchmarkRawFetch is the floor for BenchmarkListPage: imapclient fetching
// the same 50 UIDs with the same items on an already selected mailbox.
func BenchmarkRawFetch(b *testing.B) {
	_, s := benchFolder(b)
	if _, err := s.c.Select("Big", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		top  imap.UID
	}{{"newest", 10000}, {"middle", 5000}} {
		b.Run(bc.name, func(b *testing.B) {
			var set imap.UIDSet
			set.AddRange(bc.top-49, bc.top)
			for b.Loop() {
				bufs, err := s.c.Fetch(set, summaryItems).Collect()
				if err != nil || len(bufs) != 50 {
					b.Fatal(len(bufs), err)
				}
			}
		})
	}
}
