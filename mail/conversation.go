package mail

import (
	"context"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// maxThread bounds the messages ThreadOf returns: a conversation view of more is a mailing-list archive.
const maxThread = 100

// ThreadOf returns the conversation of message uid in box as list rows, oldest first (at most maxThread, the newest
// ones). With THREAD=REFERENCES the server says which messages are in it (RFC 5256); otherwise a UID SEARCH finds the
// candidates (messages whose Message-ID, In-Reply-To or References name one of the message's ids, or with its base
// subject), and GroupThreads keeps those of its thread. A missing message gives ErrNoMessage.
func (s *Session) ThreadOf(ctx context.Context, box string, uid uint32) ([]Summary, error) {
	var out []Summary
	err := s.run(ctx, fmt.Sprintf("thread %q", box), func() error {
		if _, err := s.examine(box); err != nil {
			return err
		}
		var uids []uint32
		if s.canThread() {
			data, err := s.c.UIDThread(&threadAll).Wait()
			if err != nil {
				return err
			}
			for _, t := range flattenThreads(data) {
				if slices.Contains(t, uid) {
					uids = t
					break
				}
			}
		} else {
			self, err := s.c.Fetch(imap.UIDSetNum(imap.UID(uid)), s.threadRowItems()).Collect()
			if err != nil {
				return err
			}
			if self = listRows(self); len(self) == 0 {
				return ErrNoMessage
			}
			m := summaryOf(self[0])
			found, err := s.searchUIDs(threadCriteria(m))
			if err != nil {
				return err
			}
			picked, _ := newestBelow(found, 0, maxThread)
			for _, u := range picked {
				uids = append(uids, uint32(u))
			}
		}
		if !slices.Contains(uids, uid) {
			uids = append(uids, uid)
		}
		if len(uids) > maxThread {
			slices.Sort(uids)
			uids = uids[len(uids)-maxThread:]
		}
		var set imap.UIDSet
		for _, u := range uids {
			set.AddNum(imap.UID(u))
		}
		bufs, err := s.c.Fetch(set, s.threadRowItems()).Collect()
		if err != nil {
			return err
		}
		rows := summariesOf(listRows(bufs), 0)
		if !s.canThread() {
			for _, g := range GroupThreads(rows) {
				if slices.ContainsFunc(g, func(m Summary) bool { return m.UID == uid }) {
					rows = g
					break
				}
			}
		}
		if !slices.ContainsFunc(rows, func(m Summary) bool { return m.UID == uid }) {
			return ErrNoMessage
		}
		slices.SortStableFunc(rows, olderFirst)
		out = rows
		return nil
	})
	return out, err
}

// threadAll threads the whole mailbox by references.
var threadAll = imapclient.ThreadOptions{Algorithm: imap.ThreadReferences, SearchCriteria: &imap.SearchCriteria{}}

// threadCriteria finds the candidates for m's thread on a server without THREAD: any message that names one of m's
// ids (its own, its parent's, its References) in Message-ID, In-Reply-To or References, or has its base subject.
func threadCriteria(m Summary) *imap.SearchCriteria {
	ids := append(parentRefs(m), normID(m.MessageID))
	ids = slices.Compact(ids)
	if len(ids) > 10 {
		ids = append(ids[:1], ids[len(ids)-9:]...) // the root and the nearest ancestors
	}
	var keys []imap.SearchCriteria
	for _, id := range ids {
		if id == "" {
			continue
		}
		for _, h := range []string{"Message-ID", "In-Reply-To", "References"} {
			keys = append(keys, imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: h, Value: id}}})
		}
	}
	if base := BaseSubject(m.Subject); base != "" {
		keys = append(keys, imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: base}}})
	}
	if len(keys) == 0 {
		return &imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(imap.UID(m.UID))}}
	}
	// OR is binary (RFC 9051 section 6.4.4): fold the keys into a chain.
	c := keys[0]
	for _, k := range keys[1:] {
		c = imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{c, k}}}
	}
	return &c
}

// Neighbours returns the messages next to a conversation (or message) in box, for the reader's previous/next links:
// newer is the oldest message above the newest of uids, older the newest message below it, each outside uids; 0
// when there is none. The two UID SEARCHes are pipelined (one round trip) and ask for MIN and MAX only where the
// server has ESEARCH (RFC 4731), so that a large folder does not answer with every UID.
func (s *Session) Neighbours(ctx context.Context, box string, uids []uint32) (newer, older uint32, err error) {
	if len(uids) == 0 {
		return 0, 0, nil
	}
	top := slices.Max(uids)
	not := []imap.SearchCriteria{{UID: []imap.UIDSet{imap.UIDSetNum(toUIDs(uids)...)}}}
	err = s.run(ctx, fmt.Sprintf("neighbours %q", box), func() error {
		if !s.isOpen(box, false) {
			if _, err := s.examine(box); err != nil {
				return err
			}
		}
		esearch := s.c.Caps().Has(imap.CapESearch)
		var aboveOpt, belowOpt *imap.SearchOptions
		if esearch {
			aboveOpt, belowOpt = &imap.SearchOptions{ReturnMin: true}, &imap.SearchOptions{ReturnMax: true}
		}
		above := s.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: imap.UID(top + 1), Stop: 0}}}, Not: not}, aboveOpt)
		var below *imapclient.SearchCommand
		if top > 1 {
			below = s.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: 1, Stop: imap.UID(top - 1)}}}, Not: not}, belowOpt)
		}
		a, aerr := above.Wait()
		var b *imap.SearchData
		var berr error
		if below != nil {
			b, berr = below.Wait()
		}
		if aerr != nil {
			return aerr
		}
		if berr != nil {
			return berr
		}
		// "top+1:*" matches the newest message even when it is below top+1 (RFC 9051 section 6.4.9); keep only
		// what is above.
		if esearch {
			if a.Min > top {
				newer = a.Min
			}
		} else if set, ok := a.All.(imap.UIDSet); ok {
			for _, r := range sortedRanges(set) {
				if u := max(uint32(r.Start), top+1); u <= uint32(r.Stop) {
					newer = u
					break
				}
			}
		}
		switch {
		case b == nil:
		case esearch:
			older = b.Max
		default:
			if set, ok := b.All.(imap.UIDSet); ok {
				if rs := sortedRanges(set); len(rs) > 0 {
					older = uint32(rs[len(rs)-1].Stop)
				}
			}
		}
		return nil
	})
	return newer, older, err
}

func toUIDs(in []uint32) []imap.UID {
	out := make([]imap.UID, len(in))
	for i, u := range in {
		out[i] = imap.UID(u)
	}
	return out
}
