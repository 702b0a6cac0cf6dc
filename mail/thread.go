package mail

// Conversations: grouping a folder's messages by thread, the way RFC 5256's REFERENCES algorithm does.
//
// A server that advertises THREAD=REFERENCES (Stalwart, Dovecot) threads the messages itself: Overview pipelines a
// "UID THREAD REFERENCES UTF-8" of the messages from a little below the page up (the page, its margin and anything
// newer) with the page's FETCH, so a conversation's count covers its messages on the page and those just below it,
// at no extra round trip, and a warm view reuses the answer while those messages stay the same (threadCache in
// rowcache.go). The conversation view (ThreadOf) threads the whole folder. A server without it gets the same
// grouping, computed here from the rows of the page (Message-ID, In-Reply-To, References, and the base subject of
// RFC 5256 section 2.1), so a conversation then counts only the messages on the page.

import (
	"bytes"
	"context"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// ListOptions asks Overview for more than the rows of a page.
type ListOptions struct {
	// Threads asks for the server's threads (Page.Threads) where it has THREAD=REFERENCES; without, Conversations
	// groups the page from the envelopes' Message-ID and In-Reply-To and the base subjects (see referencesSection).
	Threads bool
	// Snippets fills Summary.Snippet: the start of each message's first text part, as one line of plain text.
	Snippets bool
}

// OverviewWith is Overview with the extras opt asks for, in the same pipelined round trip on a warm session (see
// Overview); only snippets not yet cached by the session cost a second one.
func (s *Session) OverviewWith(ctx context.Context, box string, before uint32, n int, opt ListOptions) ([]Mailbox, Page, error) {
	s.listOpt = opt
	defer func() {
		s.listOpt = ListOptions{}
		s.snippets.pending, s.snippets.got = nil, nil
	}()
	return s.Overview(ctx, box, before, n)
}

// canThread reports whether the server threads by references (RFC 5256 section 3, "THREAD=REFERENCES").
func (s *Session) canThread() bool {
	for _, a := range s.c.Caps().ThreadAlgorithms() {
		if a == imap.ThreadReferences {
			return true
		}
	}
	return false
}

// referencesSection is the References header of a row (RFC 5322 section 3.6.4), which the envelope lacks. Folder
// pages do not fetch it: the envelope's In-Reply-To and the base subject group a page nearly as well, and a server
// without an index of headers (the dev server, for one) would parse every row for it, which cost the 10,000-message
// page 1.3× its server time (docs/benchmarks.md). ThreadOf, which shows one conversation, fetches it.
var referencesSection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"References"}, Peek: true}

// summaryThreadItems are summaryItems plus the References header.
var summaryThreadItems = func() *imap.FetchOptions {
	o := *summaryItems
	o.BodySection = []*imap.FetchItemBodySection{referencesSection}
	return &o
}()

// threadRowItems are the FETCH items of the rows of a conversation: with References when grouping happens here.
func (s *Session) threadRowItems() *imap.FetchOptions {
	if !s.canThread() {
		return summaryThreadItems
	}
	return summaryItems
}

// threadFields fills the threading fields of a row from its envelope and, when fetched, its References header.
func threadFields(sum *Summary, b *imapclient.FetchMessageBuffer) {
	if env := b.Envelope; env != nil {
		sum.MessageID = strings.Trim(strings.TrimSpace(env.MessageID), "<>")
		if len(env.InReplyTo) > 0 {
			sum.InReplyTo = strings.Trim(strings.TrimSpace(env.InReplyTo[0]), "<>")
		}
	}
	raw := b.FindBodySection(referencesSection)
	if len(raw) == 0 {
		return
	}
	h, err := textproto.ReadHeader(bufioReader(bytes.TrimLeft(raw, "\r\n")))
	if err != nil {
		return
	}
	sum.References = msgIDs(gomail.Header{Header: message.Header{Header: h}}, "References")
}

// Thread is one conversation of a folder: the UIDs of all its messages that the server knows of.
type Thread []uint32

// flattenThreads turns a THREAD answer (RFC 5256 section 4: a tree per thread) into one UID list per thread.
func flattenThreads(data []imapclient.ThreadData) []Thread {
	out := make([]Thread, 0, len(data))
	var walk func(d imapclient.ThreadData, t *Thread)
	walk = func(d imapclient.ThreadData, t *Thread) {
		*t = append(*t, d.Chain...)
		for _, sub := range d.SubThreads {
			walk(sub, t)
		}
	}
	for _, d := range data {
		var t Thread
		walk(d, &t)
		if len(t) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// Conversation is one row of a threaded list: the messages of a thread that are on the page.
type Conversation struct {
	// Messages are oldest first; the last is the newest.
	Messages []Summary
	// Count is how many messages the thread has in the folder: more than len(Messages) when the server threaded
	// the whole mailbox and some are on other pages.
	Count int
}

// Latest is the newest message of c.
func (c Conversation) Latest() Summary { return c.Messages[len(c.Messages)-1] }

// Unread counts the unread messages of c on the page.
func (c Conversation) Unread() int {
	n := 0
	for _, m := range c.Messages {
		if !m.Seen {
			n++
		}
	}
	return n
}

// Conversations groups the rows of a page (newest first, as Page has them) into conversations, newest first by their
// newest message. With threads (Page.Threads, the server's answer) a row joins its server thread, and a thread whose
// newest message is not on this page is left to the page that has it, so that a conversation shows once. Without,
// rows are grouped by GroupThreads.
func Conversations(rows []Summary, threads []Thread) []Conversation {
	var groups [][]Summary
	counts := map[int]int{}
	if threads != nil {
		onPage := make(map[uint32]bool, len(rows))
		for _, r := range rows {
			onPage[r.UID] = true
		}
		of := map[uint32]int{}
		for ti, t := range threads {
			for _, u := range t {
				of[u] = ti
			}
		}
		byThread := map[int]int{}
		for _, r := range rows {
			ti, ok := of[r.UID]
			if !ok {
				// Not in the server's answer: it arrived after the THREAD ran. Alone until the next view.
				groups = append(groups, []Summary{r})
				continue
			}
			if !onPage[slices.Max(threads[ti])] {
				// The thread's newest message is on another page (or was filtered out), which shows it.
				continue
			}
			gi, seen := byThread[ti]
			if !seen {
				gi = len(groups)
				byThread[ti] = gi
				groups = append(groups, nil)
				counts[gi] = len(threads[ti])
			}
			groups[gi] = append(groups[gi], r)
		}
	} else {
		groups = GroupThreads(rows)
	}
	out := make([]Conversation, 0, len(groups))
	for gi, g := range groups {
		slices.SortStableFunc(g, olderFirst)
		c := Conversation{Messages: g, Count: max(len(g), counts[gi])}
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b Conversation) int { return olderFirst(b.Latest(), a.Latest()) })
	return out
}

// olderFirst orders messages by date, then by UID (arrival) when dates tie or are missing.
func olderFirst(a, b Summary) int {
	if c := a.Date.Compare(b.Date); c != 0 && !a.Date.IsZero() && !b.Date.IsZero() {
		return c
	}
	return int(int64(a.UID) - int64(b.UID))
}

// GroupThreads groups messages into threads as RFC 5256's REFERENCES algorithm would (section 3), from what a list
// row carries: messages linked by Message-ID, In-Reply-To and References are one thread (steps 1–2; the parent/child
// tree is not needed to group), and threads whose roots share a base subject are merged (step 5). Groups are in the
// order of their first message in msgs; messages keep their order within a group.
func GroupThreads(msgs []Summary) [][]Summary {
	uf := newUnion(len(msgs))
	ids := map[string]int{} // message id → a node
	next := len(msgs)
	node := func(id string) int {
		if n, ok := ids[id]; ok {
			return n
		}
		ids[id] = next
		uf.grow()
		next++
		return next - 1
	}
	for i, m := range msgs {
		if id := normID(m.MessageID); id != "" {
			// A second message with the same Message-ID is a copy (RFC 5256 step 1.A treats it as a new
			// message); it belongs with the first anyway.
			uf.join(i, node(id))
		}
		for _, r := range parentRefs(m) {
			uf.join(i, node(r))
		}
	}
	// Step 5: merge threads by base subject. Only a thread's root matters in the RFC; here any message of it may
	// carry the subject, which differs only when a reply changes the subject, and then joining on either is what
	// a reader expects.
	bySubject := map[string]int{}
	for i, m := range msgs {
		key := subjectKey(m.Subject)
		if key == "" {
			continue
		}
		if j, ok := bySubject[key]; ok {
			uf.join(i, j)
		} else {
			bySubject[key] = i
		}
	}
	var out [][]Summary
	group := map[int]int{}
	for i, m := range msgs {
		root := uf.find(i)
		gi, ok := group[root]
		if !ok {
			gi = len(out)
			group[root] = gi
			out = append(out, nil)
		}
		out[gi] = append(out[gi], m)
	}
	return out
}

// parentRefs are the message ids m refers to: References, else In-Reply-To (RFC 5256 step 1.A).
func parentRefs(m Summary) []string {
	refs := m.References
	if len(refs) == 0 && m.InReplyTo != "" {
		refs = []string{m.InReplyTo}
	}
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		if r = normID(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// normID compares message ids as RFC 5256 does: without the angle brackets, and case-sensitively (an id is case
// sensitive except for the domain, which is rarely changed).
func normID(id string) string { return strings.Trim(strings.TrimSpace(id), "<>") }

// subjectKey is the base subject compared case-insensitively ("i;unicode-casemap" in RFC 5256 is near enough to
// Unicode simple folding for grouping).
func subjectKey(s string) string { return strings.ToLower(BaseSubject(s)) }

// union is a disjoint-set forest over message nodes.
type union struct{ parent []int }

func newUnion(n int) *union {
	u := &union{parent: make([]int, n)}
	for i := range u.parent {
		u.parent[i] = i
	}
	return u
}

func (u *union) grow() { u.parent = append(u.parent, len(u.parent)) }

func (u *union) find(x int) int {
	for u.parent[x] != x {
		u.parent[x] = u.parent[u.parent[x]]
		x = u.parent[x]
	}
	return x
}

// join links b's set under a's; the lower index stays the root, so a group's root is its first message.
func (u *union) join(a, b int) {
	ra, rb := u.find(a), u.find(b)
	if ra == rb {
		return
	}
	if rb < ra {
		ra, rb = rb, ra
	}
	u.parent[rb] = ra
}

// BaseSubject is the subject without what replying and forwarding add, as RFC 5256 section 2.1 defines it: runs of
// white space become one space; trailing "(fwd)" (step 2) and leading "Re:", "Fw:", "Fwd:", with or without "[blob]"
// tags around them (steps 3–5), are removed, as is a "[Fwd: …]" wrapper (step 6). Encoded words are already decoded
// (step 1) in Summary.Subject. Case is kept; compare case-insensitively.
func BaseSubject(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	for {
		// Step 2: subj-trailer = "(fwd)" / WSP.
		for {
			t := strings.TrimRight(s, " ")
			if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
				t = t[:len(t)-5]
			}
			if t == s {
				break
			}
			s = t
		}
		// Steps 3–5.
		for {
			t := stripLeader(s)
			t = stripBlob(t)
			if t == s {
				break
			}
			s = t
		}
		// Step 6: subj-fwd-hdr subject subj-fwd-trl, i.e. "[fwd:" subject "]".
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && strings.HasSuffix(s, "]") {
			s = strings.TrimSpace(s[5 : len(s)-1])
			continue
		}
		return s
	}
}

// stripLeader removes one subj-leader (RFC 5256 section 5): white space, or subj-blob* subj-refwd, where subj-refwd
// is ("re" / ("fw" ["d"])) *WSP [subj-blob] ":".
func stripLeader(s string) string {
	if strings.HasPrefix(s, " ") {
		return strings.TrimLeft(s, " ")
	}
	rest := s
	for {
		b, ok := cutBlob(rest)
		if !ok {
			break
		}
		rest = b
	}
	low := strings.ToLower(rest)
	var n int
	switch {
	case strings.HasPrefix(low, "re"):
		n = 2
	case strings.HasPrefix(low, "fwd"):
		n = 3
	case strings.HasPrefix(low, "fw"):
		n = 2
	default:
		return s
	}
	rest = strings.TrimLeft(rest[n:], " ")
	if b, ok := cutBlob(rest); ok {
		rest = b
	}
	if !strings.HasPrefix(rest, ":") {
		return s
	}
	return rest[1:]
}

// stripBlob removes a leading subj-blob ("[" *BLOBCHAR "]" *WSP) when something is left after it (step 4).
func stripBlob(s string) string {
	if rest, ok := cutBlob(s); ok && rest != "" {
		return rest
	}
	return s
}

// cutBlob cuts a leading subj-blob: BLOBCHAR is any CHAR but "[" and "]".
func cutBlob(s string) (string, bool) {
	if !strings.HasPrefix(s, "[") {
		return s, false
	}
	end := strings.IndexAny(s[1:], "[]")
	if end < 0 || s[1+end] != ']' {
		return s, false
	}
	return strings.TrimLeft(s[end+2:], " "), true
}
