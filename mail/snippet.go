package mail

// Preview snippets: the first words of a message's text, for the folder list.
//
// RFC 8970's PREVIEW FETCH item would let the server do this, but imapclient (go-imap v2.0.0-beta.8) cannot read a
// PREVIEW answer (it fails the whole FETCH on an unknown item), so every server gets the portable way: the first
// snippetBytes of BODY[TEXT], with the BODYSTRUCTURE that says how to read them (boundaries, transfer encodings,
// charsets), cut down to one line of plain text here. The result is cached per (mailbox, UIDVALIDITY, UID) on the
// session: a message's text never changes under its UID (RFC 9051 section 2.3.1.1), so a warm page asks only for
// the messages it has not seen.

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
)

const (
	// snippetBytes is how much of a message's text is fetched for its snippet: enough to get past the MIME
	// headers of a first part or two and an HTML <head> of modest size.
	snippetBytes = 2048
	// SnippetRunes bounds a snippet's length.
	SnippetRunes = 160
	// snippetCacheSize bounds the snippets a session keeps: a few pages of a few folders.
	snippetCacheSize = 2000
)

var snippetSection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: snippetBytes}}

var snippetItems = &imap.FetchOptions{
	UID:           true,
	BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
	BodySection:   []*imap.FetchItemBodySection{snippetSection},
}

type snippetKey struct {
	box      string
	validity uint32
	uid      uint32
}

// snippetCache is a bounded map; when full, it is emptied (cheap, and a page refills its own rows at once). It also
// holds the snippet FETCHes in flight on the current Overview and what they brought, until finishListExtras knows
// the UIDVALIDITY to file them under.
type snippetCache struct {
	m map[snippetKey]string
	// validity is the UIDVALIDITY last seen per mailbox (from EXAMINE; a NOOP keeps it).
	validity map[string]uint32
	pending  []*drainedFetch
	got      map[uint32]string
	// fetched counts the snippets received, for tests of what a warm page asks for; swapped the row FETCHes whose
	// answers had to be sorted out from the snippets' (collectSnippets).
	fetched, swapped int
}

func (c *snippetCache) put(k snippetKey, s string) {
	if c.m == nil || len(c.m) >= snippetCacheSize {
		c.m = map[snippetKey]string{}
	}
	c.m[k] = s
}

// topCached is the highest UID of box cached at validity, 0 if none.
func (c *snippetCache) topCached(box string, validity uint32) uint32 {
	var top uint32
	for k := range c.m {
		if k.box == box && k.validity == validity && k.uid > top {
			top = k.uid
		}
	}
	return top
}

// noteValidity records the UIDVALIDITY a SELECT or EXAMINE of box returned, under which the snippets of its UIDs
// are cached: every path that selects a mailbox calls it, so that a later Overview that reuses the selection (NOOP
// instead of EXAMINE) knows it.
func (s *Session) noteValidity(box string, v uint32) {
	if s.snippets.validity == nil {
		s.snippets.validity = map[string]uint32{}
	}
	s.snippets.validity[box] = v
}

// drainedFetch is a FETCH in flight whose answers are read on a goroutine of their own from the start (drainFetch),
// so that it never holds up the answers of the commands pipelined with it (see startSnippets).
type drainedFetch struct {
	done chan struct{} // closed when got and err are set
	got  []*imapclient.FetchMessageBuffer
	err  error
}

func drainFetch(cmd *imapclient.FetchCommand) *drainedFetch {
	f := &drainedFetch{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.got, f.err = cmd.Collect()
	}()
	return f
}

// startSnippets sends, without waiting, the snippet FETCH of set when the current call asks for snippets. A list
// path sends it right behind the FETCH of its rows, so the two cost one round trip.
//
// Its answers are read from the start, on a goroutine of their own, not when collectSnippets is called: each carries
// a literal, which imapclient hands over and then waits until it has been read before it reads anything else, and a
// server may interleave the answers of pipelined FETCHes (RFC 9051 section 5.5; Dovecot runs them concurrently). A
// snippet answer that came before the last of the rows would otherwise stop the rows for good: the caller reads the
// rows first. That hung the first inbox page after a cold sign-in (issue 14).
func (s *Session) startSnippets(set imap.NumSet) {
	if !s.listOpt.Snippets {
		return
	}
	s.snippets.pending = append(s.snippets.pending, drainFetch(s.c.Fetch(set, snippetItems)))
}

// collectSnippets waits for the snippet FETCHes sent so far, in the order sent, keeps what they brought, and
// returns rows, the answers of the row FETCH they were pipelined behind, sorted out.
//
// Sorting out is needed because imapclient hands each FETCH answer to the first pending FETCH that asked for its
// message and has not had it yet: when the server interleaves the two commands' answers (RFC 9051 section 5.5
// allows it; Dovecot does) and a message's snippet answer comes before its row answer, the row FETCH gets the snippet
// and the snippet FETCH the row. What each answer holds says what it is: a row has the envelope, a snippet the TEXT
// section. Left unsorted, the page silently lacked that row.
func (s *Session) collectSnippets(rows []*imapclient.FetchMessageBuffer) ([]*imapclient.FetchMessageBuffer, error) {
	var (
		first   error
		answers []*imapclient.FetchMessageBuffer
		swapped bool
	)
	for _, f := range s.snippets.pending {
		<-f.done
		if f.err != nil && first == nil {
			first = f.err
		}
		answers = append(answers, f.got...)
	}
	s.snippets.pending = nil
	if len(answers) == 0 {
		return rows, first
	}
	kept := rows[:0:0]
	for _, b := range rows {
		if b.Envelope == nil && b.FindBodySection(snippetSection) != nil {
			answers, swapped = append(answers, b), true
			continue
		}
		kept = append(kept, b)
	}
	for _, b := range answers {
		switch {
		case b.Envelope != nil:
			kept, swapped = append(kept, b), true
		case b.UID != 0 && b.BodyStructure == nil && b.FindBodySection(snippetSection) == nil:
			// A flags-only answer of a warm view's cached rows (rowcache.go), handed to the snippet FETCH.
			kept, swapped = append(kept, b), true
		case b.UID != 0 && b.BodyStructure != nil && b.FindBodySection(snippetSection) != nil:
			if s.snippets.got == nil {
				s.snippets.got = map[uint32]string{}
			}
			s.snippets.got[uint32(b.UID)] = snippetOf(b.BodyStructure, b.FindBodySection(snippetSection))
			s.snippets.fetched++
		}
	}
	if swapped {
		s.snippets.swapped++
	}
	// The row answers come back in sequence order, as the server sent them.
	slices.SortStableFunc(kept, func(a, b *imapclient.FetchMessageBuffer) int { return cmp.Compare(a.SeqNum, b.SeqNum) })
	return kept, first
}

// listExtras is the THREAD command Overview pipelines for ListOptions, and what it learnt.
type listExtras struct {
	box       string
	threadCmd *imapclient.ThreadCommand
	threadOpt imapclient.ThreadOptions
	threads   []Thread
	validity  uint32
	// hint is the warm view's first UID; cachedThreads that the session's cached THREAD answer from hint up was
	// used instead of sending one (threadCache), and present the UIDs from hint up the view's answers had.
	hint          imap.UID
	cachedThreads bool
	present       []imap.UID
	// deferred: the THREAD of a first view, sent by newestRows with the FETCH of the page once the EXAMINE has
	// said where the page starts (sendDeferred).
	deferred bool
	// changesAt is Session.changes when the extras were sent, under which a THREAD answer is cached.
	changesAt int64
}

// sendDeferred sends a first view's THREAD for the messages from sequence number low up (the page and its margin),
// pipelined with the page's FETCH: threading the whole folder instead cost Dovecot 34 ms for 10,000 messages, the
// largest part of the first page after a sign-in (docs/benchmarks.md).
func (x *listExtras) sendDeferred(s *Session, low uint32) {
	if x == nil || !x.deferred {
		return
	}
	var set imap.SeqSet
	set.AddRange(low, 0)
	x.threadOpt.SearchCriteria = &imap.SearchCriteria{SeqNum: []imap.SeqSet{set}}
	x.threadCmd = s.c.UIDThread(&x.threadOpt)
}

// waitDeferred waits for sendDeferred's THREAD; hint is the UID at sequence number low, from which its answer, like
// a warm view's, is cached.
func (x *listExtras) waitDeferred(hint imap.UID) error {
	if x == nil || !x.deferred || x.threadCmd == nil {
		return nil
	}
	data, err := x.threadCmd.Wait()
	x.threads, x.hint = flattenThreads(data), hint
	return err
}

// startListExtras sends, behind the page's FETCH, the THREAD command and, for a warm newest page (hinted: the FETCH
// is "UID FETCH hint:*" or its two halves, rowcache.go), the snippet FETCH of what the cache lacks: what arrived
// since the session last showed the page, or all of hint:*. Nil when no extra was asked for.
//
// THREAD covers the messages from the page up (UID hint:*, or before-n:* for an older page), not the whole folder:
// its answer lists every UID it covers, which for a 10,000-message folder would be some 60 KB to read on every view,
// and Dovecot spends 34 ms threading them. A conversation's count then counts its messages on this page and newer
// ones, which is what the list can show; the conversation view (ThreadOf) threads the whole folder. A warm view
// whose messages from hint up are those of the last answer sends none (threadCache); the first view of a folder on
// a session, whose range is not known before the EXAMINE's answer, sends it with the page's FETCH (sendDeferred).
func (s *Session) startListExtras(box string, hint imap.UID, hinted bool, before uint32, n int, quiet bool) *listExtras {
	if !s.listOpt.Threads && !s.listOpt.Snippets {
		return nil
	}
	s.snippets.got = nil
	x := &listExtras{box: box, changesAt: s.changes.Load()}
	if s.listOpt.Threads && s.canThread() {
		opt := threadAll
		switch {
		case hinted:
			opt.SearchCriteria = &imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: hint, Stop: 0}}}}
			x.hint = hint
		case before > 1:
			lo := uint32(1)
			if before > uint32(n) {
				lo = before - uint32(n)
			}
			opt.SearchCriteria = &imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: imap.UID(lo), Stop: 0}}}}
		case before == 0:
			x.deferred = true
		}
		x.threadOpt = opt
		if x.deferred {
			// Sent with the page's FETCH, by sequence number (sendDeferred).
		} else if hinted && s.threads.matches(box, s.snippets.validity[box], hint, x.changesAt) {
			// Sent only if the view's messages turn out to differ from the cached answer's (finishListExtras).
			x.cachedThreads = true
		} else {
			x.threadCmd = s.c.UIDThread(&opt)
		}
	}
	if s.listOpt.Snippets && hinted {
		// The last UIDVALIDITY seen: if the EXAMINE says otherwise, the cache misses and finishListExtras fetches.
		if top := imap.UID(s.snippets.topCached(box, s.snippets.validity[box])); top >= hint {
			if !quiet { // quiet: nothing arrived since the last view (see Overview)
				s.startSnippets(newerThan(top))
			}
		} else {
			var set imap.UIDSet
			set.AddRange(hint, 0)
			s.startSnippets(set)
		}
	}
	return x
}

// collect waits for the extras' answers and returns rows, the page FETCH's answers, sorted out from the snippets'
// (collectSnippets); sel is the EXAMINE's answer (nil when the session reused its selection).
func (x *listExtras) collect(s *Session, box string, sel *imap.SelectData, rows []*imapclient.FetchMessageBuffer) ([]*imapclient.FetchMessageBuffer, error) {
	if sel != nil {
		s.noteValidity(box, sel.UIDValidity)
	}
	if x == nil {
		return rows, nil
	}
	var terr error
	if x.threadCmd != nil {
		var data []imapclient.ThreadData
		data, terr = x.threadCmd.Wait()
		x.threads = flattenThreads(data)
	}
	rows, ferr := s.collectSnippets(rows)
	// On a reused selection, the UIDVALIDITY of the EXAMINE or SELECT that opened it (see noteValidity).
	x.validity = s.snippets.validity[x.box]
	if terr != nil {
		return rows, terr
	}
	return rows, ferr
}

// finishListExtras fills the page from the extras: its threads, and every row's snippet, fetching those still
// missing in one more command (rare: a page whose rows the pipelined fetches did not cover, such as an older page
// over a gap of expunged UIDs).
func (s *Session) finishListExtras(ctx context.Context, x *listExtras, page *Page) error {
	if x == nil {
		return nil
	}
	got := s.snippets.got
	s.snippets.got = nil
	if x.cachedThreads {
		if !s.threads.matches(x.box, x.validity, x.hint, x.changesAt) || !slices.Equal(x.present, s.threads.uids) {
			// The messages from hint up changed since the cached answer: ask again.
			err := s.run(ctx, fmt.Sprintf("threads %q", x.box), func() error {
				data, err := s.c.UIDThread(&x.threadOpt).Wait()
				x.threads = flattenThreads(data)
				return err
			})
			if err != nil {
				return err
			}
			s.threads.set(x.box, x.validity, x.hint, x.changesAt, x.threads)
		}
		page.Threads = s.threads.threads
	} else if s.listOpt.Threads && x.threadCmd != nil {
		page.Threads = x.threads
		if page.Threads == nil {
			page.Threads = []Thread{}
		}
		if x.hint != 0 {
			s.threads.set(x.box, x.validity, x.hint, x.changesAt, page.Threads)
		}
	}
	if !s.listOpt.Snippets {
		return nil
	}
	for uid, snip := range got {
		s.snippets.put(snippetKey{x.box, x.validity, uid}, snip)
	}
	var missing imap.UIDSet
	for _, m := range page.Summaries {
		if _, ok := s.snippets.m[snippetKey{x.box, x.validity, m.UID}]; !ok {
			missing.AddNum(imap.UID(m.UID))
		}
	}
	if len(missing) > 0 {
		err := s.run(ctx, fmt.Sprintf("snippets %q", x.box), func() error {
			if !s.isOpen(x.box, false) {
				return nil // the mailbox is no longer selected; snippets are not worth a second EXAMINE
			}
			s.startSnippets(missing)
			_, err := s.collectSnippets(nil)
			return err
		})
		if err != nil {
			return err
		}
		for uid, snip := range s.snippets.got {
			s.snippets.put(snippetKey{x.box, x.validity, uid}, snip)
		}
		s.snippets.got = nil
	}
	for i, m := range page.Summaries {
		page.Summaries[i].Snippet = s.snippets.m[snippetKey{x.box, x.validity, m.UID}]
	}
	return nil
}

// snippetOf reads the first text part out of the start of a message's text (raw, BODY[TEXT]<0.snippetBytes>) as bs
// describes it, and makes it one line of plain text: transfer encoding and charset decoded, HTML reduced to its
// text, quoted lines dropped, white space and control characters collapsed, at most SnippetRunes long. What cannot
// be read yields "", never an error: a snippet is a courtesy.
func snippetOf(bs imap.BodyStructure, raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var h message.Header
	switch b := bs.(type) {
	case *imap.BodyStructureSinglePart:
		mt := strings.ToLower(b.Type + "/" + b.Subtype)
		if mt != "text/plain" && mt != "text/html" {
			return ""
		}
		h.SetContentType(mt, map[string]string{"charset": b.Params["charset"]})
		h.Set("Content-Transfer-Encoding", b.Encoding)
	case *imap.BodyStructureMultiPart:
		boundary := ""
		if b.Extended != nil {
			boundary = b.Extended.Params["boundary"]
		}
		if boundary == "" {
			return ""
		}
		h.SetContentType("multipart/"+strings.ToLower(b.Subtype), map[string]string{"boundary": boundary})
	default:
		return ""
	}
	e, err := message.New(h, bytes.NewReader(raw))
	if e == nil {
		return ""
	}
	_ = err // an unknown charset still gives the raw bytes, which clean makes safe
	text, isHTML := firstText(e, 0)
	if isHTML {
		text = htmlText(text)
	}
	return cleanSnippet(text)
}

// firstText returns the first text/plain part of e, or the first text/html one when no text/plain is readable in
// the bytes fetched.
func firstText(e *message.Entity, depth int) (string, bool) {
	if depth > 5 {
		return "", false
	}
	if mr := e.MultipartReader(); mr != nil {
		var htmlText string
		for {
			p, err := mr.NextPart()
			if p == nil || err != nil {
				break
			}
			t, isHTML := firstText(p, depth+1)
			if t == "" {
				continue
			}
			if !isHTML {
				return t, false
			}
			if htmlText == "" {
				htmlText = t
			}
		}
		return htmlText, htmlText != ""
	}
	mt, _, _ := e.Header.ContentType()
	if disp, _, _ := e.Header.ContentDisposition(); disp == "attachment" {
		return "", false
	}
	if mt != "text/plain" && mt != "text/html" {
		return "", false
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, 4*snippetBytes)) // truncated input ends in an error; keep what came
	return string(b), mt == "text/html"
}

// SnippetOf is the snippet of a decoded text (Message.Text): what a folder row shows of it (see cleanSnippet).
func SnippetOf(text string) string { return cleanSnippet(text) }

// cleanSnippet makes text one short line: quoted lines (">") and signature separators' tails dropped, every run of
// white space, control or format characters (bidi overrides included) one space, cut at SnippetRunes.
func cleanSnippet(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		t := strings.TrimSpace(l)
		if t == "--" {
			break // a signature follows (RFC 3676 section 4.3)
		}
		if strings.HasPrefix(t, ">") {
			continue
		}
		lines = append(lines, t)
	}
	s = strings.Join(lines, " ")
	var b strings.Builder
	space := false
	n := 0
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		if n >= SnippetRunes {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
