package mail

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// MaxPage bounds n in List and Search.
const MaxPage = 500

// Page is one page of a message list, newest first.
type Page struct {
	Summaries []Summary
	// Total is the number of messages in the mailbox (List) or of those
	// matching the query (Search).
	Total uint32
	// Before is the cursor for the next, older page: pass it as before.
	// 0 means there is none.
	Before uint32
	// Threads are the mailbox's threads as the server computed them (RFC 5256 THREAD=REFERENCES), when
	// OverviewWith asked for them and the server can; nil otherwise. See Conversations.
	Threads []Thread
}

// Query is a message search. Non-empty fields are ANDed; text fields match
// substrings case-insensitively (RFC 9051 section 6.4.4: FROM, TO, SUBJECT,
// BODY).
type Query struct {
	From, To, Subject, Body string
	// Since and Before compare with the internal date, by day (SINCE and
	// BEFORE); zero means no bound.
	Since, Before time.Time
}

// IsZero reports whether q has no criteria at all.
func (q Query) IsZero() bool {
	return q.From == "" && q.To == "" && q.Subject == "" && q.Body == "" && q.Since.IsZero() && q.Before.IsZero()
}

func (q Query) criteria() *imap.SearchCriteria {
	// A CR or LF cannot be sent in a quoted string; in a search term they
	// mean nothing anyway.
	clean := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	c := &imap.SearchCriteria{Since: q.Since, Before: q.Before}
	for _, f := range []struct{ key, val string }{{"From", q.From}, {"To", q.To}, {"Subject", q.Subject}} {
		if v := clean(f.val); v != "" {
			c.Header = append(c.Header, imap.SearchCriteriaHeaderField{Key: f.key, Value: v})
		}
	}
	if v := clean(q.Body); v != "" {
		c.Body = []string{v}
	}
	return c
}

// List returns the newest n messages (default DefaultSummaries, at most
// MaxPage) of box whose UID is below before (0: from the newest), newest
// first. It pages by UID, which, unlike sequence numbers, stays put when
// messages arrive or are expunged (RFC 9051 section 2.3.1.1), and fetches
// only the rows of the page, never the whole mailbox: the newest page by
// sequence range, older ones by UID range next to the cursor (see
// pageBelow), with UID SEARCH as the fallback.
//
// The mailbox is opened with EXAMINE (RFC 9051 section 6.3.3), so listing
// changes no flags. A missing mailbox gives an error wrapping ErrNoMailbox.
func (s *Session) List(ctx context.Context, box string, before uint32, n int) (Page, error) {
	return s.page(ctx, box, nil, before, n)
}

// Search is List restricted to the messages that match q: one UID SEARCH
// (RFC 9051 section 6.4.4; ESEARCH RETURN (ALL), RFC 4731, when offered,
// for a compact answer), then a UID FETCH of the page. Page.Total counts
// all matches.
func (s *Session) Search(ctx context.Context, box string, q Query, before uint32, n int) (Page, error) {
	return s.page(ctx, box, q.criteria(), before, n)
}

// summaryItems are the FETCH items of a list row.
var summaryItems = &imap.FetchOptions{
	UID:           true,
	Envelope:      true,
	Flags:         true,
	BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
	RFC822Size:    true,
	InternalDate:  true,
}

func (s *Session) page(ctx context.Context, box string, crit *imap.SearchCriteria, before uint32, n int) (Page, error) {
	if n <= 0 {
		n = DefaultSummaries
	}
	n = min(n, MaxPage)
	var (
		page Page
		bufs []*imapclient.FetchMessageBuffer
	)
	what := fmt.Sprintf("list %q", box)
	if crit != nil {
		what = fmt.Sprintf("search %q", box)
	}
	err := s.run(ctx, what, func() error {
		sel, err := s.examine(box)
		if err != nil {
			return err
		}
		if sel.NumMessages == 0 {
			return nil
		}
		if crit == nil {
			page.Total = sel.NumMessages
			if before == 0 {
				// The newest page: a sequence range needs no search.
				first := uint32(1)
				if sel.NumMessages > uint32(n) {
					first = sel.NumMessages - uint32(n) + 1
				}
				bufs, err = s.fetchSeq(first, sel.NumMessages)
				if first > 1 && len(bufs) > 0 {
					page.Before = uint32(slices.MinFunc(bufs, byUID).UID)
				}
				return err
			}
			var ok bool
			bufs, page.Before, ok, err = s.pageBelow(before, n)
			if ok || err != nil {
				return err
			}
			// Neither the cursor message nor any below it in the probed
			// range exists: find the page with a search.
			crit = &imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: 1, Stop: imap.UID(before - 1)}}}}
			if before == 1 {
				return nil
			}
		}
		uids, err := s.searchUIDs(crit)
		if err != nil {
			return err
		}
		if len(crit.UID) == 0 {
			page.Total = uint32(uidCount(uids))
		}
		pick, more := newestBelow(uids, before, n)
		if len(pick) == 0 {
			return nil
		}
		if more {
			page.Before = uint32(pick[len(pick)-1])
		}
		var set imap.UIDSet
		for _, u := range pick {
			set.AddNum(u)
		}
		bufs, err = s.c.Fetch(set, summaryItems).Collect()
		return err
	})
	if err != nil {
		return Page{}, err
	}
	page.Summaries = summariesOf(bufs, before)
	return page, nil
}

// summariesOf turns fetched rows into list rows, newest first, without the cursor message and without duplicates.
func summariesOf(bufs []*imapclient.FetchMessageBuffer, before uint32) []Summary {
	slices.SortFunc(bufs, func(a, b *imapclient.FetchMessageBuffer) int { return -byUID(a, b) })
	out := make([]Summary, 0, len(bufs))
	for i, b := range bufs {
		// An EXPUNGE between the two fetches of pageBelow could repeat a
		// row; the cursor message itself is not part of the page.
		if b.UID == 0 || (before > 0 && uint32(b.UID) >= before) || (i > 0 && bufs[i-1].UID == b.UID) {
			continue
		}
		out = append(out, summaryOf(b))
	}
	return out
}

// fetchSeq fetches list rows by sequence range, up to the last message the session knows of.
//
// A range computed from an earlier answer can reach past the end by the time it is sent: during a UID command the
// server may report messages another client expunged (RFC 9051 section 7.5.1), and Dovecot answers a sequence number
// past the end with BAD "Invalid messageset" (seen in scripts/bench with 50 users moving messages out of one folder).
// The client counts every EXISTS and EXPUNGE it was told of, which is exactly the server's numbering for this
// session (RFC 9051 section 2.3.1.2), so the range is cut there.
func (s *Session) fetchSeq(first, last uint32) ([]*imapclient.FetchMessageBuffer, error) {
	if mb := s.c.Mailbox(); mb != nil && last > mb.NumMessages {
		last = mb.NumMessages
	}
	if last == 0 || first > last {
		return nil, nil
	}
	var set imap.SeqSet
	set.AddRange(first, last)
	return s.fetchRows(set)
}

// fetchRows fetches the list rows of set, a set of sequence numbers the session knows to exist, with their snippets
// when the current call asks for them.
func (s *Session) fetchRows(set imap.SeqSet) ([]*imapclient.FetchMessageBuffer, error) {
	cmd := s.c.Fetch(set, summaryItems)
	s.startSnippets(set) // pipelined behind the rows when asked for (snippet.go)
	bufs, err := cmd.Collect()
	bufs, serr := s.collectSnippets(bufs)
	if err == nil {
		err = serr
	}
	return listRows(bufs), err
}

// pageBelow finds the n messages below the cursor UID before without a
// search, which costs servers without an index (and the dev server) a
// parse of every message. UIDs are mostly dense, so it first fetches the
// UID range before-n:before; the sequence numbers in the answer (the
// cursor message's, if it still exists, or the lowest found) anchor a
// second, sequence-range fetch for whatever is missing, since sequence
// order is UID order (RFC 9051 section 2.3.1.2). ok is false when nothing
// anchors the page: the cursor message is gone and none is in the range.
func (s *Session) pageBelow(before uint32, n int) (bufs []*imapclient.FetchMessageBuffer, next uint32, ok bool, err error) {
	if before == 1 {
		return nil, 0, true, nil
	}
	return s.finishPageBelow(s.startPageBelow(before, n), before, n)
}

// startPageBelow sends pageBelow's first fetch, the UID range before-n:before, without waiting (before > 1).
func (s *Session) startPageBelow(before uint32, n int) *imapclient.FetchCommand {
	lo := uint32(1)
	if before > uint32(n) {
		lo = before - uint32(n)
	}
	var set imap.UIDSet
	set.AddRange(imap.UID(lo), imap.UID(before))
	cmd := s.c.Fetch(set, summaryItems)
	s.startSnippets(set) // collected by finishPageBelow (snippet.go)
	return cmd
}

// finishPageBelow is the rest of pageBelow, given its first fetch.
func (s *Session) finishPageBelow(cmd *imapclient.FetchCommand, before uint32, n int) (bufs []*imapclient.FetchMessageBuffer, next uint32, ok bool, err error) {
	lo := uint32(1)
	if before > uint32(n) {
		lo = before - uint32(n)
	}
	got, err := cmd.Collect()
	got, serr := s.collectSnippets(got)
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, 0, false, err
	}
	got = listRows(got)
	if len(got) == 0 {
		return nil, 0, lo == 1, nil
	}
	anchor := slices.MinFunc(got, func(a, b *imapclient.FetchMessageBuffer) int { return int(int64(a.SeqNum) - int64(b.SeqNum)) }).SeqNum
	for _, b := range got {
		if uint32(b.UID) < before {
			bufs = append(bufs, b)
		}
	}
	if len(bufs) < n && anchor > 1 {
		first := uint32(1)
		if need := uint32(n - len(bufs)); anchor > need {
			first = anchor - need
		}
		more, err := s.fetchSeq(first, anchor-1)
		if err != nil {
			return nil, 0, false, err
		}
		bufs = append(bufs, more...)
		anchor = first
	}
	if anchor > 1 && len(bufs) > 0 {
		next = uint32(slices.MinFunc(bufs, byUID).UID)
	}
	return bufs, next, true, nil
}

func byUID(a, b *imapclient.FetchMessageBuffer) int {
	switch {
	case a.UID < b.UID:
		return -1
	case a.UID > b.UID:
		return 1
	}
	return 0
}

// searchUIDs runs UID SEARCH, asking for ESEARCH's compact ALL (RFC 4731)
// when the server has it.
func (s *Session) searchUIDs(c *imap.SearchCriteria) (imap.UIDSet, error) {
	var opts *imap.SearchOptions
	if s.c.Caps().Has(imap.CapESearch) {
		opts = &imap.SearchOptions{ReturnAll: true}
	}
	data, err := s.c.UIDSearch(c, opts).Wait()
	if err != nil {
		return nil, err
	}
	set, _ := data.All.(imap.UIDSet)
	return set, nil
}

// sortedRanges returns the ranges of set in ascending order, without
// expanding them.
func sortedRanges(set imap.UIDSet) []imap.UIDRange {
	r := make([]imap.UIDRange, 0, len(set))
	for _, x := range set {
		if x.Start == 0 || x.Stop == 0 { // "*" cannot come back from SEARCH
			continue
		}
		if x.Start > x.Stop {
			x.Start, x.Stop = x.Stop, x.Start
		}
		r = append(r, x)
	}
	slices.SortFunc(r, func(a, b imap.UIDRange) int { return int(int64(a.Start) - int64(b.Start)) })
	return r
}

func uidCount(set imap.UIDSet) int {
	n, last := 0, imap.UID(0)
	for _, r := range sortedRanges(set) {
		if r.Stop <= last {
			continue
		}
		if r.Start <= last {
			r.Start = last + 1
		}
		n += int(r.Stop-r.Start) + 1
		last = r.Stop
	}
	return n
}

// newestBelow returns up to n UIDs of set below before (0: no bound),
// newest first, and whether older ones remain.
func newestBelow(set imap.UIDSet, before uint32, n int) ([]imap.UID, bool) {
	var out []imap.UID
	ranges := sortedRanges(set)
	next := imap.UID(^uint32(0))
	if before > 0 {
		next = imap.UID(before - 1)
	}
	for i := len(ranges) - 1; i >= 0; i-- {
		r := ranges[i]
		top := min(r.Stop, next)
		for u := top; u >= r.Start && u > 0; u-- {
			if len(out) == n {
				return out, true
			}
			out = append(out, u)
			next = u - 1
			if u == r.Start {
				break
			}
		}
		if next == 0 {
			break
		}
	}
	return out, false
}
