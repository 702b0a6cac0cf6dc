package mail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// SpeculativeBytes is how much of a message Read asks for before it knows how large the message is. A message no
// larger (most mail, including an invoice with a PDF of a few hundred kB) arrives whole in the first round trip; of
// a larger one, the header is taken from this prefix, and two more round trips fetch its structure and then its
// text parts, never its attachments.
const SpeculativeBytes = 1 << 20

// ReadOptions says what Read does besides fetching the message.
type ReadOptions struct {
	// MarkSeen sets \Seen on the message (UID STORE +FLAGS.SILENT, RFC 9051 section 6.4.6), as opening a message
	// does in every mail client. The mailbox is then opened with SELECT rather than EXAMINE (read-only), and the
	// STORE is sent whether or not the message was seen already (storing a flag a message has changes nothing).
	MarkSeen bool
	// Mailboxes also lists every mailbox with its counts, as Mailboxes does. The LIST goes after the STORE, so the
	// unseen counts already include this message as read.
	Mailboxes bool
}

// Reading is what Read returns.
type Reading struct {
	Message   *Message
	Mailboxes []Mailbox
	// MarkErr is why \Seen could not be set, which does not fail Read: the message is shown anyway.
	MarkErr error
}

// readItems is what the first FETCH of Read asks for: the flags, the size, the ENVELOPE and INTERNALDATE (for
// malformed messages) and the first SpeculativeBytes of the message ("BODY.PEEK[]<0.n>", RFC 9051 section 6.4.5: a
// partial fetch that does not set \Seen).
//
// BODYSTRUCTURE is deliberately not among them, although it would save the big messages a round trip: it makes the
// server describe, and go-imap's client parse, the MIME structure of every message, and a message whose structure
// is broken (a multipart without a boundary, from the hostile corpus) then breaks the connection with the dev
// server's go-imap rather than being shown as text. The small case, nearly every message, keeps the path that
// reads any message; only messages over SpeculativeBytes depend on the structure, as attachment downloads do.
func readItems() *imap.FetchOptions {
	return &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, InternalDate: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: speculativeBytes}}},
	}
}

// speculativeBytes is SpeculativeBytes, lowered by tests to send every message down the structure path.
var speculativeBytes int64 = SpeculativeBytes

// Read fetches one message for reading with as few round trips as IMAP allows: the SELECT (or EXAMINE), the FETCH,
// the STORE of \Seen and the LIST are pipelined (RFC 9051 section 5.5; the server runs them in order, and a failed
// SELECT leaves no mailbox selected, so the commands after it fail rather than touch another mailbox). A message of
// at most SpeculativeBytes costs one round trip; a larger one three (see readByStructure). A UID that does not exist
// gives an error wrapping ErrNoMessage; a missing mailbox one wrapping ErrNoMailbox.
func (s *Session) Read(ctx context.Context, box string, uid uint32, opts ReadOptions) (Reading, error) {
	if err := checkMailboxName(box); err != nil {
		return Reading{}, err
	}
	var (
		out  Reading
		raw  []byte
		meta fetchedMeta
	)
	err := s.run(ctx, fmt.Sprintf("read message %d of %q", uid, box), func() error {
		set := imap.UIDSetNum(imap.UID(uid))
		// The folder is usually still selected (the list or the previous message was in it), in a mode that will
		// do: then no SELECT, which costs Dovecot a sync of the whole mailbox (3 ms for 10,000 messages, more CPU
		// than the read itself at 50 users). With the folder counts, a NOOP is waited for first (syncOpen), as
		// Overview does, so that they include what other clients changed; the message itself (its text never
		// changes under its UID) needs none.
		var selCmd *imapclient.SelectCommand
		switch {
		case !s.isOpen(box, opts.MarkSeen):
			selCmd = s.sendSelect(box, !opts.MarkSeen)
		case opts.Mailboxes:
			if err := s.syncOpen(); err != nil {
				return mapErr(err)
			}
		}
		fetchCmd := s.c.Fetch(set, readItems())
		var storeCmd *imapclient.FetchCommand
		if opts.MarkSeen {
			storeCmd = s.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil)
		}
		var listCmd *imapclient.ListCommand
		if opts.Mailboxes {
			listCmd = s.startMailboxes()
		}
		// Every command is collected, whatever failed, so that none is left pending on the connection.
		var serr error
		if selCmd != nil {
			if _, serr = selCmd.Wait(); serr == nil {
				s.noteOpened(box, !opts.MarkSeen)
			}
		}
		var ferr error
		raw, meta, ferr = collectRead(fetchCmd, uid)
		if storeCmd != nil {
			out.MarkErr = storeCmd.Close()
		}
		var lerr error
		if listCmd != nil {
			out.Mailboxes, lerr = s.finishMailboxes(listCmd)
		}
		switch {
		case serr != nil:
			return mapErr(serr)
		case ferr != nil:
			return ferr
		case lerr != nil:
			return lerr
		}
		if int64(len(raw)) >= meta.size {
			out.Message = parseMessage(raw)
			return nil
		}
		var err error
		out.Message, err = s.readByStructure(uid, raw)
		return err
	})
	if err != nil {
		return Reading{}, err
	}
	m := out.Message
	m.Box, m.UID, m.Size = box, uid, meta.size
	m.Seen, m.Flagged, m.Answered = meta.seen, meta.flagged, meta.answered
	if opts.MarkSeen && out.MarkErr == nil {
		m.Seen = true
	}
	if m.Malformed || m.Date.IsZero() {
		fillFromEnvelope(m, meta.env, meta.internalDate)
	}
	return out, nil
}

// collectRead reads the answer to the FETCH of readItems.
func collectRead(cmd *imapclient.FetchCommand, uid uint32) ([]byte, fetchedMeta, error) {
	defer cmd.Close()
	var (
		meta  fetchedMeta
		raw   []byte
		found bool
	)
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var (
			mine bool
			data []byte
			mm   fetchedMeta
		)
		for item := msg.Next(); item != nil; item = msg.Next() {
			if mm.note(item) {
				continue
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				mine = uint32(it.UID) == uid
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					continue
				}
				b, err := io.ReadAll(io.LimitReader(it.Literal, speculativeBytes))
				if err != nil {
					return nil, meta, err
				}
				_, _ = io.Copy(io.Discard, it.Literal)
				data = b
			}
		}
		// An unsolicited FETCH (a flag another client changed) may be attached to this command; only the answer
		// carries the body.
		if mine && data != nil {
			found, raw, meta = true, data, mm
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, meta, err
	}
	if !found {
		return nil, meta, fmt.Errorf("%w: uid %d", ErrNoMessage, uid)
	}
	return raw, meta, nil
}

// A structLeaf is a leaf of a BODYSTRUCTURE, in the order of the MIME tree.
type structLeaf struct {
	path  string
	nums  []int
	sp    *imap.BodyStructureSinglePart
	inAlt bool
}

// leaves lists the leaves of bs with their part numbers (RFC 9051 section 6.4.5), within the limits the MIME walker
// keeps (maxParts, maxDepth).
func leaves(bs imap.BodyStructure) []structLeaf {
	var out []structLeaf
	n := 0
	var walk func(bs imap.BodyStructure, path []int, depth int, inAlt bool)
	walk = func(bs imap.BodyStructure, path []int, depth int, inAlt bool) {
		n++
		if n > maxParts || depth > maxDepth {
			return
		}
		switch b := bs.(type) {
		case *imap.BodyStructureMultiPart:
			alt := inAlt || strings.EqualFold(b.Subtype, "alternative")
			for i, c := range b.Children {
				walk(c, append(path[:len(path):len(path)], i+1), depth+1, alt)
			}
		case *imap.BodyStructureSinglePart:
			nums := path
			if len(nums) == 0 {
				nums = []int{1}
			}
			out = append(out, structLeaf{path: pathString(path), nums: nums, sp: b, inAlt: inAlt})
		}
	}
	walk(bs, nil, 0, false)
	return out
}

// readByStructure builds the Message of a message larger than SpeculativeBytes from its BODYSTRUCTURE (one round
// trip; with the extension data: dispositions and file names, RFC 9051 section 7.5.2) and one more: a FETCH of each leaf's MIME header ([path.MIME], a few hundred bytes; the message header for
// the body of a single-part message) and of the content of the leaves that may be the text, so that the MIME
// rules of the walker (newLeaf, isBody, joinBody) decide as they do for a whole message. Attachments are never
// fetched; their sizes are the encoded sizes the server reports, less the base64 overhead (an estimate, off by
// the line breaks). The message header is fetched with the structure ([HEADER]): the prefix may end inside it.
func (s *Session) readByStructure(uid uint32, prefix []byte) (*Message, error) {
	m := &Message{}
	set := imap.UIDSetNum(imap.UID(uid))
	header := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}
	sbufs, err := s.c.Fetch(set, &imap.FetchOptions{UID: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection: []*imap.FetchItemBodySection{header}}).Collect()
	if err != nil {
		return nil, err
	}
	sb := findUID(sbufs, uid)
	if sb == nil || sb.BodyStructure == nil {
		return nil, fmt.Errorf("%w: uid %d", ErrNoMessage, uid)
	}
	h, err := textproto.ReadHeader(bufioReader(sb.FindBodySection(header)))
	if err != nil {
		return malformed(m, prefix), nil
	}
	readHeader(m, gomail.Header{Header: message.Header{Header: h}})
	bs := sb.BodyStructure

	ls := leaves(bs)
	_, multi := bs.(*imap.BodyStructureMultiPart)
	heads := make([]*imap.FetchItemBodySection, len(ls))
	bodies := make([]*imap.FetchItemBodySection, len(ls))
	var items []*imap.FetchItemBodySection
	for i, l := range ls {
		heads[i] = &imap.FetchItemBodySection{Peek: true, Part: l.nums, Specifier: imap.PartSpecifierMIME}
		if !multi {
			heads[i] = &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}
		}
		items = append(items, heads[i])
		if mt := l.sp.MediaType(); (mt == "text/plain" || mt == "text/html") && !isAttachment(l.sp) {
			// Encoded text is at most about three times its decoded size (quoted-printable); what is past that
			// would be cut from the body anyway.
			bodies[i] = &imap.FetchItemBodySection{Peek: true, Part: l.nums, Partial: &imap.SectionPartial{Size: 3 * maxTextBytes}}
			items = append(items, bodies[i])
		}
	}
	bufs, err := s.c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: items}).Collect()
	if err != nil {
		return nil, err
	}
	b := findUID(bufs, uid)
	if b == nil {
		return nil, fmt.Errorf("%w: uid %d", ErrNoMessage, uid)
	}
	var inline []Part
	for i, sl := range ls {
		hdr, err := textproto.ReadHeader(bufioReader(b.FindBodySection(heads[i])))
		if err != nil {
			hdr = textproto.Header{}
		}
		l := newLeaf(sl.path, message.Header{Header: hdr})
		if l.isBody() && bodies[i] != nil {
			e, _ := message.New(message.Header{Header: hdr}, bytes.NewReader(b.FindBodySection(bodies[i])))
			data, _ := readLeaf(e.Body, l, maxTextBytes)
			if l.mediaType == "text/plain" {
				m.Text = joinBody(m.Text, toText(data), sl.inAlt)
			} else {
				m.HTML = joinBody(m.HTML, strings.ToValidUTF8(string(data), "\uFFFD"), sl.inAlt)
			}
			continue
		}
		if l.filename == "" && sl.sp.MessageRFC822 != nil && sl.sp.MessageRFC822.Envelope != nil {
			l.filename = CleanFilename(strings.Join(strings.Fields(sl.sp.MessageRFC822.Envelope.Subject), " "))
			if l.filename == "" {
				l.filename = "message"
			}
			l.filename += ".eml"
		}
		p := l.part()
		p.Size = decodedSize(sl.sp)
		if p.ContentID != "" {
			inline = append(inline, p)
			if p.Disposition != "attachment" {
				continue
			}
		}
		m.Attachments = append(m.Attachments, p)
	}
	m.Inline = inline
	if m.HTML == "" {
		for _, p := range inline {
			if p.Disposition != "attachment" {
				m.Attachments = append(m.Attachments, p)
			}
		}
	}
	return m, nil
}

// isAttachment says whether the structure marks a leaf as a file: disposition attachment, or a file name.
func isAttachment(sp *imap.BodyStructureSinglePart) bool {
	if d := sp.Disposition(); d != nil && strings.EqualFold(d.Value, "attachment") {
		return true
	}
	return sp.Filename() != "" || sp.Params["filename*"] != "" || sp.Params["name*"] != ""
}

// decodedSize estimates the decoded size of a leaf from its encoded size (RFC 9051 section 7.5.2 body-fld-octets):
// base64 carries 57 bytes in a line of 76 characters and a CRLF (RFC 2045 section 6.8).
func decodedSize(sp *imap.BodyStructureSinglePart) int64 {
	n := int64(sp.Size)
	if strings.EqualFold(sp.Encoding, "base64") {
		return n * 57 / 78
	}
	return n
}
