package mail

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestRowCacheFill: a flags-only answer becomes its cached row with the answer's flags and sequence number; what
// cannot be filled, or is not an answer at all, is left out, so that newestRows sees the page incomplete and
// fetches it in full.
func TestRowCacheFill(t *testing.T) {
	full := func(uid, seq uint32, flags ...imap.Flag) *imapclient.FetchMessageBuffer {
		return &imapclient.FetchMessageBuffer{SeqNum: seq, UID: imap.UID(uid), Flags: flags, RFC822Size: 1000,
			Envelope: &imap.Envelope{Subject: "subject"}}
	}
	flagsOnly := func(uid, seq uint32, flags ...imap.Flag) *imapclient.FetchMessageBuffer {
		return &imapclient.FetchMessageBuffer{SeqNum: seq, UID: imap.UID(uid), Flags: flags, RFC822Size: 1000}
	}
	// What another client's flag change looks like, handed to the flags FETCH by imapclient: no size.
	unsolicited := func(uid, seq uint32, flags ...imap.Flag) *imapclient.FetchMessageBuffer {
		return &imapclient.FetchMessageBuffer{SeqNum: seq, UID: imap.UID(uid), Flags: flags}
	}
	type row struct {
		uid, seq uint32
		seen     bool
		full     bool // the row came with its envelope
	}
	for _, tc := range []struct {
		name     string
		validity uint32 // of the view; the cache holds UIDs 10–12 at validity 7
		answers  []*imapclient.FetchMessageBuffer
		want     []row
	}{
		{"cached rows get the answer's flags and numbers", 7,
			[]*imapclient.FetchMessageBuffer{flagsOnly(10, 3, imap.FlagSeen), flagsOnly(11, 4), flagsOnly(12, 5)},
			[]row{{10, 3, true, true}, {11, 4, false, true}, {12, 5, false, true}}},
		{"a new message comes in full", 7,
			[]*imapclient.FetchMessageBuffer{flagsOnly(12, 5), full(13, 6, imap.FlagSeen)},
			[]row{{12, 5, false, true}, {13, 6, true, true}}},
		{"a flags-only answer the cache lacks is left out", 7,
			[]*imapclient.FetchMessageBuffer{flagsOnly(9, 2), flagsOnly(10, 3)},
			[]row{{10, 3, false, true}}},
		{"an unsolicited FETCH is not a row", 7,
			[]*imapclient.FetchMessageBuffer{unsolicited(12, 5, imap.FlagDeleted), flagsOnly(10, 3)},
			[]row{{10, 3, false, true}}},
		{"answered twice: the full answer is kept", 7,
			[]*imapclient.FetchMessageBuffer{flagsOnly(12, 5), full(12, 5, imap.FlagSeen)},
			[]row{{12, 5, true, true}}},
		{"another UIDVALIDITY: nothing is filled", 8,
			[]*imapclient.FetchMessageBuffer{flagsOnly(10, 3), flagsOnly(11, 4), full(12, 5)},
			[]row{{12, 5, false, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c rowCache
			c.put("INBOX", 7, []*imapclient.FetchMessageBuffer{full(10, 1), full(11, 2, imap.FlagSeen), full(12, 3)})
			var got []row
			for _, b := range c.fill("INBOX", tc.validity, tc.answers) {
				got = append(got, row{uint32(b.UID), b.SeqNum, slices.Contains(b.Flags, imap.FlagSeen), b.Envelope != nil})
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("fill = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRowCacheTop: the flags FETCH is only for a range whose lower end is cached, at the same UIDVALIDITY; a full
// cache starts over rather than keep part of a folder.
func TestRowCacheTop(t *testing.T) {
	var c rowCache
	rows := func(from, to uint32) []*imapclient.FetchMessageBuffer {
		var out []*imapclient.FetchMessageBuffer
		for u := from; u <= to; u++ {
			out = append(out, &imapclient.FetchMessageBuffer{UID: imap.UID(u), Envelope: &imap.Envelope{}, RFC822Size: 1})
		}
		return out
	}
	c.put("INBOX", 7, rows(100, 155))
	for _, tc := range []struct {
		box      string
		validity uint32
		hint     imap.UID
		want     imap.UID
	}{
		{"INBOX", 7, 100, 155},
		{"INBOX", 7, 99, 0},
		{"INBOX", 8, 100, 0},
		{"Archive", 7, 100, 0},
	} {
		if got := c.top(tc.box, tc.validity, tc.hint); got != tc.want {
			t.Errorf("top(%s, %d, %d) = %d, want %d", tc.box, tc.validity, tc.hint, got, tc.want)
		}
	}
	c.put("Archive", 3, rows(1, rowCacheSize-56))
	if c.n != rowCacheSize {
		t.Fatalf("n = %d, want %d", c.n, rowCacheSize)
	}
	c.put("Archive", 3, rows(rowCacheSize, rowCacheSize))
	if c.top("INBOX", 7, 100) != 0 || c.n > rowCacheSize {
		t.Errorf("over the bound: INBOX still cached or n = %d", c.n)
	}
	if got := c.top("Archive", 3, 1); got != rowCacheSize {
		t.Errorf("Archive top = %d, want %d", got, rowCacheSize)
	}
}
