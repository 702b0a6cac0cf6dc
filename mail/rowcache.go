package mail

// The list rows a session has fetched, kept so that a warm view asks the server only for what can have changed.
//
// Everything a list row shows but its flags is immutable under its UID: the envelope, the structure, the size and
// the internal date of a message never change while the mailbox's UIDVALIDITY stays the same (RFC 9051 section
// 2.3.1.1; a message is never modified in place, a changed message is a new message with a new UID). Flags do
// change, and messages come and go. So a warm view of the newest page (Overview, after a view of the same folder on
// the same session) asks for
//
//	UID FETCH hint:top (UID FLAGS RFC822.SIZE)   the rows it has: their current flags, and which still exist
//	UID FETCH top+1:4294967295 (the row's items) what arrived since: every item, as on a first view
//
// pipelined in the same round trip as before, where top is the newest UID cached. A row expunged since is simply
// absent from the first answer; a flag changed by another client comes fresh; the sequence numbers in both answers
// place every row exactly as a full fetch would. At Dovecot a FLAGS-only FETCH reads the mailbox index alone, where
// the envelope and the structure come from its cache file (or the message file itself), so the view costs the
// server and the session's decoding a fraction of a full fetch (docs/benchmarks.md, "Inbox page against the floor").
//
// A flags-only answer for a UID the cache lacks (evicted, or an unsolicited FETCH that imapclient handed to the
// wrong command) is not a row: newestRows then sees the page incomplete and fetches it by sequence range, in full,
// as on a first view. A UIDVALIDITY other than the one the rows were cached under empties the folder's rows.

import (
	"math"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// newerThan is the UIDs above top, written "top+1:4294967295" rather than "top+1:*": "*" stands for the highest UID
// in the mailbox, so "top+1:*" names the newest message even when nothing is above top, while UIDs that do not
// exist are simply ignored (RFC 9051 section 6.4.9, both). The answer is then empty when nothing arrived,
// instead of the newest message again, whose text (for a snippet) Dovecot would read from disk on every view.
func newerThan(top imap.UID) imap.UIDSet {
	var set imap.UIDSet
	set.AddRange(top+1, math.MaxUint32)
	return set
}

// rowCacheSize bounds the rows a session keeps, over all folders: a few pages of a few folders (a cached row is an
// envelope and a body structure, about 1 KB).
const rowCacheSize = 1000

// flagItems are what a warm view fetches of a cached row. RFC822.SIZE is there to tell the answers apart from an
// unsolicited "* n FETCH (UID u FLAGS (…))" about a flag another client changed, which the server may send after
// the NOOP (RFC 9051 section 7.5.2) and imapclient hands to the first pending FETCH that names the UID: such a
// response carries the flags and, from some servers, the UID, but never the size, and its sequence number may be
// from before an expunge reported right after it. At Dovecot the size is read from the index cache (or the maildir
// file name), as cheap as the flags.
var flagItems = &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true}

// rowCache holds list rows per mailbox, each under the UIDVALIDITY it was fetched at.
type rowCache struct {
	boxes map[string]*boxRows
	// lastView is Session.changes when each folder's newest page was last fetched (quiet).
	lastView map[string]int64
	n        int
	// flagsOnly counts the rows a view took from the cache, for tests of what a warm view asks for.
	flagsOnly int
}

type boxRows struct {
	validity uint32
	rows     map[imap.UID]*imapclient.FetchMessageBuffer
	top      imap.UID
}

// top is the newest UID of box cached at validity when hint is cached too, so that "hint:top (FLAGS)" names rows
// the cache holds; 0 otherwise.
func (c *rowCache) top(box string, validity uint32, hint imap.UID) imap.UID {
	b := c.boxes[box]
	if b == nil || b.validity != validity || validity == 0 {
		return 0
	}
	if _, ok := b.rows[hint]; !ok {
		return 0
	}
	return b.top
}

// put caches full rows (those with the envelope) of box at validity.
func (c *rowCache) put(box string, validity uint32, rows []*imapclient.FetchMessageBuffer) {
	if validity == 0 {
		return
	}
	b := c.boxes[box]
	if b != nil && b.validity != validity {
		c.drop(box)
		b = nil
	}
	for _, r := range rows {
		if r.Envelope == nil || r.UID == 0 {
			continue
		}
		if b == nil {
			if c.boxes == nil {
				c.boxes = map[string]*boxRows{}
			}
			b = &boxRows{validity: validity, rows: map[imap.UID]*imapclient.FetchMessageBuffer{}}
			c.boxes[box] = b
		}
		if _, ok := b.rows[r.UID]; ok {
			continue
		}
		if c.n >= rowCacheSize {
			// Full: start over with this folder (cheap, and the view that overflowed refills its own rows).
			for name := range c.boxes {
				if name != box {
					c.drop(name)
				}
			}
			if c.n >= rowCacheSize {
				c.n -= len(b.rows)
				b.rows, b.top = map[imap.UID]*imapclient.FetchMessageBuffer{}, 0
			}
		}
		b.rows[r.UID] = r
		b.top = max(b.top, r.UID)
		c.n++
	}
}

// viewed records that box's newest page, and everything above it, was fetched when Session.changes was at.
func (c *rowCache) viewed(box string, at int64) {
	if c.lastView == nil {
		c.lastView = map[string]int64{}
	}
	c.lastView[box] = at
}

// quiet reports whether the session was told of no EXISTS or EXPUNGE since box's newest page was last fetched
// (changes: Session.changes now, after a NOOP), so that no message can be newer than the rows cached.
func (c *rowCache) quiet(box string, changes int64) bool {
	at, ok := c.lastView[box]
	return ok && at == changes && c.boxes[box] != nil
}

func (c *rowCache) drop(box string) {
	if b := c.boxes[box]; b != nil {
		c.n -= len(b.rows)
		delete(c.boxes, box)
	}
}

// fill completes the answers of a warm view: an answer with only UID, flags and size becomes its cached row with the
// answer's flags and sequence number, if box at validity has the row; one without is dropped. Where the same UID was
// answered twice (the two FETCHes overlap at the newest message when nothing arrived: "top+1:*" is "top:top+1"),
// the full answer is kept.
func (c *rowCache) fill(box string, validity uint32, answers []*imapclient.FetchMessageBuffer) []*imapclient.FetchMessageBuffer {
	b := c.boxes[box]
	if b != nil && b.validity != validity {
		b = nil
	}
	full := map[imap.UID]bool{}
	for _, a := range answers {
		if a.Envelope != nil {
			full[a.UID] = true
		}
	}
	out := answers[:0:0]
	seen := map[imap.UID]bool{}
	for _, a := range answers {
		switch {
		case a.Envelope != nil:
		case a.UID == 0 || a.RFC822Size == 0 || full[a.UID] || seen[a.UID] || b == nil:
			// Not a flags-only answer (see flagItems), already answered in full, or nothing cached to fill it.
			continue
		default:
			cached, ok := b.rows[a.UID]
			if !ok {
				continue
			}
			row := *cached
			row.SeqNum, row.Flags = a.SeqNum, a.Flags
			a = &row
			c.flagsOnly++
		}
		if seen[a.UID] {
			continue
		}
		seen[a.UID] = true
		out = append(out, a)
	}
	return out
}

// threadCache is the last THREAD answer of a warm newest page: the threads of box's messages from hint up. A
// message's References, In-Reply-To, Message-ID and subject never change under its UID, so the answer changes only
// when that set of messages does (RFC 5256 threads exactly the messages the search matched). A warm view reuses it
// when the session was told of no EXISTS or EXPUNGE since the answer (Session.changes: the NOOP a warm view waits
// for reports them first) and its rows, cached or new, are exactly the messages of the answer; otherwise it asks
// the server again, with the page's FETCH when the NOOP said something changed, in one more round trip when only
// the rows show it. At Dovecot the THREAD of the 55 newest of 10,000 messages costs about as much as the page's
// FETCH (docs/benchmarks.md), so asking only on change is worth it.
type threadCache struct {
	box      string
	validity uint32
	hint     imap.UID
	// at is Session.changes when the THREAD was sent.
	at int64
	// uids are the messages the answer covers, sorted: a THREAD answer lists every message it threads.
	uids    []imap.UID
	threads []Thread
}

// matches reports whether the cached answer is for box from hint up at validity, with no change reported since
// (changes: Session.changes now).
func (t *threadCache) matches(box string, validity uint32, hint imap.UID, changes int64) bool {
	return t.threads != nil && t.box == box && t.validity == validity && t.hint == hint && validity != 0 && t.at == changes
}

// set caches threads, the answer for box from hint up at validity, asked when Session.changes was at.
func (t *threadCache) set(box string, validity uint32, hint imap.UID, at int64, threads []Thread) {
	var uids []imap.UID
	for _, th := range threads {
		for _, u := range th {
			uids = append(uids, imap.UID(u))
		}
	}
	slices.Sort(uids)
	if threads == nil {
		threads = []Thread{}
	}
	*t = threadCache{box: box, validity: validity, hint: hint, at: at, uids: uids, threads: threads}
}

// present is the sorted UIDs from hint up among a view's rows.
func present(rows []*imapclient.FetchMessageBuffer, hint imap.UID) []imap.UID {
	var uids []imap.UID
	for _, r := range rows {
		if r.UID >= hint {
			uids = append(uids, r.UID)
		}
	}
	slices.Sort(uids)
	return slices.Compact(uids)
}
