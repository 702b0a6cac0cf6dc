package mail

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Overview returns what a folder page shows: every mailbox with its counts (as Mailboxes) and one page of box (as
// List). When the session does not have box open, the EXAMINE, the page's FETCH and the LIST are pipelined (RFC 9051
// section 5.5; the server runs them in order, and the FETCH refers to the mailbox the EXAMINE opens): one round trip.
// When it has, a NOOP is waited for first instead (syncOpen: Dovecot would answer the rest from the view before the
// NOOP's sync), then the FETCH and the LIST: two round trips, and no re-opening of the mailbox. Older pages
// (before > 0) are the same, as their UID range is known from the cursor.
//
// The newest page cannot be asked for by sequence number before the EXAMINE has said how many messages there are,
// so the session remembers, per mailbox, the UID a little below the newest page it last showed and asks for
// "UID FETCH that:*" (every message from there to the newest): the flags only of the rows it has cached, every item
// of what arrived since (rowcache.go). Nothing trusts that guess: the EXISTS count and the sequence numbers in the
// answers show whether the rows received are exactly the newest ones; when a few are missing they are fetched
// alone, and when the answer is far off (another client expunged more than the margin, or the mailbox changed beyond
// recognition), one more FETCH by sequence range gets the page, as the first view of a mailbox on a session does. New
// mail makes the answer longer, never wrong; flags always come fresh from the server.
func (s *Session) Overview(ctx context.Context, box string, before uint32, n int) ([]Mailbox, Page, error) {
	if n <= 0 {
		n = DefaultSummaries
	}
	n = min(n, MaxPage)
	if err := checkMailboxName(box); err != nil {
		return nil, Page{}, err
	}
	var (
		boxes    []Mailbox
		page     Page
		fallback bool
		extras   *listExtras
	)
	err := s.run(ctx, fmt.Sprintf("list %q", box), func() error {
		hint, hinted := s.newest[box]
		// The session still has box selected (its last command was on it): NOOP, waited for (syncOpen), instead of
		// EXAMINE, which costs Dovecot far more for a large mailbox. The count then comes from the answer itself
		// (below). Listing fetches no body, so it sets no \Seen even when the mailbox was selected read-write.
		reuse := (hinted || before > 0) && s.isOpen(box, false)
		var selCmd *imapclient.SelectCommand
		// quiet: the NOOP reported no new or expunged message since this folder's last view on this session, so
		// nothing can be above the rows cached (a new message comes with an EXISTS): the FETCH of what arrived, and
		// of its snippets, would answer nothing and are not sent.
		quiet := false
		if reuse {
			if err := s.syncOpen(); err != nil {
				return mapErr(err)
			}
			quiet = s.rows.quiet(box, s.changes.Load())
		} else {
			selCmd = s.sendSelect(box, true)
		}
		changesAt := s.changes.Load()
		var (
			fetchCmd *imapclient.FetchCommand
			flags    *drainedFetch
		)
		switch {
		case before == 1:
		case before > 1:
			fetchCmd = s.startPageBelow(before, n)
		case hinted:
			// The rows cached from earlier views need only their flags (rowcache.go); what is newer, everything.
			var set imap.UIDSet
			if top := s.rows.top(box, s.snippets.validity[box], hint); top != 0 {
				var known imap.UIDSet
				known.AddRange(hint, top)
				flags = drainFetch(s.c.Fetch(known, flagItems))
				if !quiet {
					fetchCmd = s.c.Fetch(newerThan(top), summaryItems)
				}
			} else {
				set.AddRange(hint, 0) // hint:*, which always includes the newest message (RFC 9051 section 6.4.9)
				fetchCmd = s.c.Fetch(set, summaryItems)
			}
		}
		extras = s.startListExtras(box, hint, hinted && before == 0, before, n, quiet) // threads and snippets (snippet.go), nil unless asked for
		// The folder list goes last, after the NOOP or EXAMINE: Dovecot answers STATUS (and LIST-STATUS) for the
		// selected mailbox from this session's view of it, which only the NOOP brings up to date with what other
		// clients changed; listed first, the selected folder's unread count lagged one view behind
		// (e2e TestWebmailFolderCountsOtherClient). RFC 9051 section 6.3.11 warns that STATUS of the selected
		// mailbox need not match its state; after the NOOP it does.
		listCmd := s.startMailboxes()
		// Every command is collected, whatever failed, so that none is left pending on the connection.
		var lerr, serr, ferr error
		var sel *imap.SelectData
		if !reuse {
			if sel, serr = selCmd.Wait(); serr == nil {
				s.noteOpened(box, true)
			}
		}
		var got []*imapclient.FetchMessageBuffer
		var next uint32
		anchored := true
		if fetchCmd != nil {
			if before > 1 {
				got, next, anchored, ferr = s.finishPageBelow(fetchCmd, before, n)
			} else {
				got, ferr = fetchCmd.Collect()
			}
		}
		if flags != nil {
			<-flags.done
			if ferr == nil {
				ferr = flags.err
			}
			got = append(got, flags.got...)
		}
		got, xerr := extras.collect(s, box, sel, got) // notes the EXAMINE's UIDVALIDITY
		// "UID FETCH hint:*" (or its two halves) always includes the message with the highest UID, whose sequence
		// number is the number of messages as this session sees them after the NOOP; read before a flags-only
		// answer the cache cannot fill is dropped below, and without unsolicited FETCHes (see flagItems).
		var answeredTop uint32
		for _, b := range got {
			if b.Envelope != nil || b.RFC822Size != 0 {
				answeredTop = max(answeredTop, b.SeqNum)
			}
		}
		if before == 0 {
			// Flags-only answers become their cached rows (under the UIDVALIDITY the EXAMINE just gave, if it was
			// sent: a changed one leaves them out, and newestRows fetches the page in full); full ones are cached.
			validity := s.snippets.validity[box]
			got = s.rows.fill(box, validity, got)
			s.rows.put(box, validity, got)
			if extras != nil && extras.cachedThreads {
				extras.present = present(got, extras.hint)
			}
		}
		got = listRows(got) // after the snippets' answers are sorted out of it
		boxes, lerr = s.finishMailboxes(listCmd)
		switch {
		case lerr != nil:
			return lerr
		case serr != nil:
			// A refused EXAMINE leaves no mailbox selected, so the FETCH failed too; its error says nothing more.
			return mapErr(serr)
		case ferr != nil:
			return ferr
		case xerr != nil:
			return xerr
		}
		var total uint32
		switch {
		case !reuse:
			total = sel.NumMessages
		case before > 0:
			// Only shown; the older page does not depend on it.
			if mb, ok := findBox(boxes, box); ok {
				total = mb.Messages
			}
		default:
			total = answeredTop
			if total == 0 && s.c.Mailbox() != nil {
				// Nothing from hint up answered (all of it expunged, and "top+1:4294967295" names no message when
				// none is newer): the count the session was told; newestRows fetches the page by sequence range.
				total = s.c.Mailbox().NumMessages
			}
		}
		if total == 0 && before == 0 {
			delete(s.newest, box)
			return nil
		}
		sel = &imap.SelectData{NumMessages: total}
		page.Total = sel.NumMessages
		if before > 0 {
			// Not anchored: the cursor message and all those near it are gone; List finds the page with a search.
			fallback = !anchored
			page.Summaries, page.Before = summariesOf(got, before), next
			return nil
		}
		rows, err := s.newestRows(box, sel.NumMessages, got, fetchCmd != nil || flags != nil, n, extras)
		if err != nil {
			return err
		}
		page.Summaries = summariesOf(rows, 0)
		if first := newestFirst(sel.NumMessages, n); first > 1 && len(rows) > 0 {
			page.Before = page.Summaries[len(page.Summaries)-1].UID
		}
		s.rows.viewed(box, changesAt)
		return nil
	})
	if err == nil && fallback {
		page, err = s.List(ctx, box, before, n)
	}
	if err == nil {
		err = s.finishListExtras(ctx, extras, &page)
	}
	if err != nil {
		return nil, Page{}, err
	}
	return boxes, page, nil
}

// listRows drops what imapclient attached to a pipelined FETCH that is not an answer to it: an unsolicited
// "* n FETCH (FLAGS …)" about a flag another client changed, which the server may send before the FETCH runs (after
// the NOOP, say). A row of the answer has the envelope asked for.
func listRows(bufs []*imapclient.FetchMessageBuffer) []*imapclient.FetchMessageBuffer {
	out := bufs[:0]
	for _, b := range bufs {
		if b.Envelope != nil {
			out = append(out, b)
		}
	}
	return out
}

func findBox(boxes []Mailbox, name string) (Mailbox, bool) {
	for _, b := range boxes {
		if b.Name == name {
			return b, true
		}
	}
	return Mailbox{}, false
}

// newestFirst is the sequence number of the oldest message of the newest page of n in a mailbox of total.
func newestFirst(total uint32, n int) uint32 {
	if total > uint32(n) {
		return total - uint32(n) + 1
	}
	return 1
}

// overviewMargin is how many rows below the newest page Overview also fetches, so that a few messages expunged by
// another client (or moved away by the user) do not cost the next view a second round trip.
func overviewMargin(n int) uint32 { return uint32(max(2, n/10)) }

// newestRows returns the rows of the newest page of n in a mailbox of total messages, given the answer to the
// speculative "UID FETCH hint:*" (fetched: whether it was sent), fetching by sequence range when that answer does
// not cover the page; and remembers the next hint.
func (s *Session) newestRows(box string, total uint32, got []*imapclient.FetchMessageBuffer, fetched bool, n int, x *listExtras) ([]*imapclient.FetchMessageBuffer, error) {
	first := newestFirst(total, n)
	margin := overviewMargin(n)
	low := uint32(1)
	if first > margin {
		low = first - margin
	}
	// The answer covers the page when it has every message from the page's oldest to the newest. It is meant to be
	// a run of consecutive messages (all UIDs from the hint up), but a row can be missing from it: a flags-only
	// answer the row cache lacked, or an answer imapclient handed to another pipelined command (an unsolicited
	// FETCH about a flag another client changed takes the real answer's place; see flagItems).
	holes := func() (set imap.SeqSet) {
		have := make(map[uint32]bool, len(got))
		for _, b := range got {
			have[b.SeqNum] = true
		}
		for q := first; q <= total; q++ {
			if !have[q] {
				set.AddNum(q)
			}
		}
		return set
	}
	covered := false
	if fetched && len(got) > 0 {
		missing := holes()
		covered = len(missing) == 0
		few, _ := missing.Nums()
		// A few holes, and the numbering unchanged since the answers (no expunge reported during them): fetch just
		// those rows, in the second round trip the page needs anyway, rather than the whole page again.
		if mb := s.c.Mailbox(); !covered && mb != nil && mb.NumMessages == total && len(few) <= n/5 {
			more, err := s.fetchRows(missing)
			if err != nil {
				return nil, err
			}
			s.rows.put(box, s.snippets.validity[box], more)
			got = append(got, more...)
			covered = len(holes()) == 0
		}
	}
	if !covered {
		// The count the session knows now: expunges reported during the FETCH lower it (see fetchSeq).
		if mb := s.c.Mailbox(); mb != nil && mb.NumMessages < total {
			total = mb.NumMessages
			first = newestFirst(total, n)
			low = max(1, first-min(first-1, margin))
		}
		x.sendDeferred(s, low)
		var err error
		got, err = s.fetchSeq(low, total)
		if err != nil {
			x.waitDeferred(0)
			return nil, err
		}
		s.rows.put(box, s.snippets.validity[box], got)
		var lowUID imap.UID
		for _, b := range got {
			if b.SeqNum == low {
				lowUID = b.UID
			}
		}
		if err := x.waitDeferred(lowUID); err != nil {
			return nil, err
		}
	}
	rows := got[:0:0]
	hint := imap.UID(0)
	old, kept := s.newest[box], false
	for _, b := range got {
		if b.SeqNum >= low && (hint == 0 || b.UID < hint) {
			hint = b.UID
		}
		if b.SeqNum >= first {
			rows = append(rows, b)
		}
		// The last hint stays while it is still at or below the margin and at most a page below it: new mail then
		// moves nothing, so the next view's flags FETCH and cached threads (rowcache.go) are for the same range.
		// A few more rows from hint up cost the flags FETCH little.
		kept = kept || (b.UID == old && b.SeqNum <= low && b.SeqNum+uint32(n) >= low)
	}
	if kept {
		hint = old
	}
	if s.newest == nil {
		s.newest = map[string]imap.UID{}
	}
	if hint != 0 {
		s.newest[box] = hint
	}
	return rows, nil
}
