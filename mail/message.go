package mail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Size limits. Mail is hostile input: a message may claim any size, nest
// multiparts without end or carry megabytes of text.
const (
	// maxMessageBytes bounds what Message and Raw read of one message.
	// Stalwart's default limit for a message is 75 MB.
	maxMessageBytes = 100 << 20
	// maxTextBytes bounds each of Message.Text and Message.HTML; longer
	// bodies are cut (the parts stay downloadable in full).
	maxTextBytes = 4 << 20
	// maxParts bounds the MIME parts examined per message.
	maxParts = 1000
	// maxDepth bounds multipart nesting.
	maxDepth = 20
)

// Part describes one MIME entity of a message (RFC 2045, RFC 2046) that can
// be fetched on its own with Session.Part.
type Part struct {
	// Path is the MIME part number used as the IMAP section path (RFC 9051
	// section 6.4.5): "1", "1.2", ... The body of a single-part message is
	// "1".
	Path string
	// ContentType is the lower-cased media type without parameters, e.g.
	// "image/png".
	ContentType string
	// Filename comes from the Content-Disposition filename parameter (RFC
	// 2183, RFC 6266; RFC 2231 or RFC 2047 encoded or plain) or else the
	// Content-Type name parameter, decoded to UTF-8 and reduced to its
	// last path element. It may be "".
	Filename string
	// ContentID is the Content-ID without angle brackets (RFC 2392), "" if
	// none.
	ContentID string
	// Disposition is "attachment", "inline" or "" (RFC 2183).
	Disposition string
	// Size is the size of the decoded content in bytes.
	Size int64
}

// Message is a message parsed for reading.
type Message struct {
	Box string
	UID uint32

	From, To, Cc, ReplyTo []Address
	// Bcc is set only on the user's own copies (Drafts, Sent), which keep
	// it; a delivered message has none (RFC 5322 section 3.6.3).
	Bcc     []Address
	Subject string
	// Date is the Date header, else the INTERNALDATE.
	Date time.Time
	// MessageID and InReplyTo are without angle brackets, as are the
	// entries of References (RFC 5322 section 3.6.4).
	MessageID, InReplyTo string
	References           []string

	Seen, Flagged, Answered bool

	// Text is the text/plain body decoded to UTF-8 with LF line endings
	// ("" if none). Several inline text/plain parts (outside one
	// multipart/alternative) are joined with a blank line.
	Text string
	// HTML is the text/html body decoded to UTF-8, NOT sanitised ("" if
	// none).
	HTML string
	// Attachments are the parts to offer for download.
	Attachments []Part
	// Inline are the parts with a Content-ID, which an HTML body refers to
	// with cid: URLs (RFC 2392). A part with a Content-ID and disposition
	// "attachment" is in both lists; when the message has no HTML body,
	// inline parts are listed as attachments too, so nothing is hidden.
	Inline []Part
	// Malformed is set when the MIME structure could not be parsed and no
	// body was found: Text then holds the raw message as text.
	Malformed bool
	// Size is RFC822.SIZE in bytes.
	Size int64
}

// Message fetches one message for reading without marking it \Seen: Read without options. The mailbox is opened
// with EXAMINE and every fetch peeks. A UID that does not exist (any more) gives an error wrapping ErrNoMessage; a
// missing mailbox one wrapping ErrNoMailbox.
func (s *Session) Message(ctx context.Context, box string, uid uint32) (*Message, error) {
	r, err := s.Read(ctx, box, uid, ReadOptions{})
	if err != nil {
		return nil, err
	}
	return r.Message, nil
}

// Raw returns the whole message as stored (RFC 5322), e.g. for "view
// source" or to forward it as an attachment. Messages larger than 100 MiB
// are refused.
func (s *Session) Raw(ctx context.Context, box string, uid uint32) ([]byte, error) {
	var raw []byte
	err := s.run(ctx, fmt.Sprintf("fetch raw message %d of %q", uid, box), func() error {
		if _, err := s.examine(box); err != nil {
			return err
		}
		var (
			err  error
			meta fetchedMeta
		)
		raw, meta, err = s.fetchRaw(uid, false)
		if err == nil && meta.truncated {
			err = fmt.Errorf("%w: %d bytes", errTooLarge, meta.size)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return raw, nil
}

// Part returns the description and the content of the part at path (a MIME
// part number as in Part.Path), with the content transfer encoding undone
// (base64, quoted-printable; RFC 2045 section 6). text/* content is also
// converted to UTF-8, so it can be served with charset=utf-8. Only the part
// is transferred (BODY.PEEK[path], RFC 9051 section 6.4.5), not the whole
// message. A missing message or a path that names no leaf part gives an
// error wrapping ErrNoMessage.
func (s *Session) Part(ctx context.Context, box string, uid uint32, path string) (Part, []byte, error) {
	nums, err := parsePartPath(path)
	if err != nil {
		return Part{}, nil, err
	}
	var header, body []byte
	err = s.run(ctx, fmt.Sprintf("fetch part %s of message %d of %q", path, uid, box), func() error {
		set, hdr, _, err := s.locatePart(box, uid, nums, path, MaxPartSize)
		if err != nil {
			return err
		}
		content := &imap.FetchItemBodySection{Peek: true, Part: nums}
		bufs, err := s.c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{hdr, content}}).Collect()
		if err != nil {
			return err
		}
		b := findUID(bufs, uid)
		if b == nil {
			return fmt.Errorf("%w: uid %d", ErrNoMessage, uid)
		}
		header, body = b.FindBodySection(hdr), b.FindBodySection(content)
		return nil
	})
	if err != nil {
		return Part{}, nil, err
	}
	return decodePart(path, header, body)
}

// fetchedMeta is what fetchRaw learns besides the bytes.
type fetchedMeta struct {
	size                    int64
	seen, flagged, answered bool
	env                     *imap.Envelope
	internalDate            time.Time
	truncated               bool
}

// note records item in m when it is one of the message's metadata (size, flags, envelope, internal date), and
// says whether it was.
func (m *fetchedMeta) note(item imapclient.FetchItemData) bool {
	switch it := item.(type) {
	case imapclient.FetchItemDataRFC822Size:
		m.size = it.Size
	case imapclient.FetchItemDataFlags:
		m.seen, m.flagged, m.answered = flagsOf(it.Flags)
	case imapclient.FetchItemDataEnvelope:
		m.env = it.Envelope
	case imapclient.FetchItemDataInternalDate:
		m.internalDate = it.Time
	default:
		return false
	}
	return true
}

// fetchRaw fetches BODY.PEEK[] of uid in the selected mailbox, reading at
// most maxMessageBytes.
func (s *Session) fetchRaw(uid uint32, withMeta bool) ([]byte, fetchedMeta, error) {
	var meta fetchedMeta
	opts := &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
	if withMeta {
		opts.Flags, opts.Envelope, opts.InternalDate = true, true, true
	}
	cmd := s.c.Fetch(imap.UIDSetNum(imap.UID(uid)), opts)
	defer cmd.Close()
	var (
		raw   []byte
		found bool
	)
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			if meta.note(item) {
				continue
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				found = found || uint32(it.UID) == uid
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					continue
				}
				b, err := io.ReadAll(io.LimitReader(it.Literal, maxMessageBytes))
				if err != nil {
					return nil, meta, err
				}
				if n, _ := io.Copy(io.Discard, it.Literal); n > 0 {
					meta.truncated = true
				}
				raw = b
			}
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, meta, err
	}
	if !found || raw == nil {
		return nil, meta, fmt.Errorf("%w: uid %d", ErrNoMessage, uid)
	}
	return raw, meta, nil
}

func flagsOf(flags []imap.Flag) (seen, flagged, answered bool) {
	// imapclient canonicalises the case of system flags.
	for _, f := range flags {
		switch f {
		case imap.FlagSeen:
			seen = true
		case imap.FlagFlagged:
			flagged = true
		case imap.FlagAnswered:
			answered = true
		}
	}
	return
}

func findUID(bufs []*imapclient.FetchMessageBuffer, uid uint32) *imapclient.FetchMessageBuffer {
	for _, b := range bufs {
		if uint32(b.UID) == uid {
			return b
		}
	}
	return nil
}

// parsePartPath checks a MIME part number ("1", "2.3") and returns its
// numbers.
func parsePartPath(path string) ([]int, error) {
	fields := strings.Split(path, ".")
	if path == "" || len(fields) > maxDepth+1 {
		return nil, fmt.Errorf("mail: invalid part path %q", path)
	}
	nums := make([]int, len(fields))
	for i, f := range fields {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > maxParts || f[0] == '0' || f[0] == '+' {
			return nil, fmt.Errorf("mail: invalid part path %q", path)
		}
		nums[i] = n
	}
	return nums, nil
}

// leafExists reports whether nums names a non-multipart part of bs,
// following RFC 9051 section 6.4.5 numbering: the body of a single-part
// message is part 1; the parts of a multipart are numbered from 1. Paths do
// not descend into message/rfc822 parts, which are leaves for us.
// MaxPartSize bounds the encoded size of one part that Part fetches: the part is held in memory (fetched, then
// decoded), so a bigger one is refused with ErrTooLarge rather than risking the process's memory.
const MaxPartSize = 32 << 20

// ErrTooLarge means a message or part is over the size Postern holds in memory (MaxPartSize for a part).
var ErrTooLarge = errors.New("mail: too large")

// leafSize is the encoded size the server reports for the leaf at nums (RFC 9051 §7.5.2 body-fld-octets).
func leafSize(bs imap.BodyStructure, nums []int) int64 {
	if mp, ok := bs.(*imap.BodyStructureMultiPart); ok {
		for _, n := range nums {
			if n > len(mp.Children) {
				return 0
			}
			bs = mp.Children[n-1]
			if next, ok := bs.(*imap.BodyStructureMultiPart); ok {
				mp = next
			}
		}
	}
	if sp, ok := bs.(*imap.BodyStructureSinglePart); ok {
		return int64(sp.Size)
	}
	return 0
}

func leafExists(bs imap.BodyStructure, nums []int) bool {
	if _, ok := bs.(*imap.BodyStructureMultiPart); !ok {
		return len(nums) == 1 && nums[0] == 1
	}
	for _, n := range nums {
		mp, ok := bs.(*imap.BodyStructureMultiPart)
		if !ok || n > len(mp.Children) {
			return false
		}
		bs = mp.Children[n-1]
	}
	_, multi := bs.(*imap.BodyStructureMultiPart)
	return !multi
}

// decodePart decodes a part fetched on its own from its MIME header and
// its still encoded content.
func decodePart(path string, header, body []byte) (Part, []byte, error) {
	h, err := textproto.ReadHeader(bufioReader(header))
	if err != nil && len(header) > 0 {
		// A broken header: serve the bytes undecoded as a download.
		return Part{Path: path, ContentType: "application/octet-stream", Size: int64(len(body))}, body, nil
	}
	l := newLeaf(path, message.Header{Header: h})
	e, _ := message.New(message.Header{Header: h}, bytes.NewReader(body))
	data, _ := readLeaf(e.Body, l, -1)
	if l.filename == "" && (l.mediaType == "message/rfc822" || l.mediaType == "message/global") {
		l.filename = rfc822Name(data)
	}
	p := l.part()
	p.Size = int64(len(data))
	return p, data, nil
}

// fillFromEnvelope completes what the MIME parse could not give from the
// server's ENVELOPE (RFC 9051 section 7.5.2).
func fillFromEnvelope(m *Message, env *imap.Envelope, internal time.Time) {
	if env != nil && m.Malformed {
		m.From, m.To, m.Cc, m.ReplyTo = addresses(env.From), addresses(env.To), addresses(env.Cc), addresses(env.ReplyTo)
		m.Subject = env.Subject
		m.MessageID = strings.Trim(env.MessageID, "<> ")
		if len(env.InReplyTo) > 0 {
			m.InReplyTo = strings.Trim(env.InReplyTo[0], "<> ")
		}
	}
	if m.Date.IsZero() && env != nil {
		m.Date = env.Date
	}
	if m.Date.IsZero() {
		m.Date = internal
	}
}

// parseMessage parses raw (RFC 5322, MIME) into a Message without Box,
// UID, flags and Size.
func parseMessage(raw []byte) *Message {
	m := &Message{}
	w := &walker{}
	e, err := message.Read(bytesReader(raw))
	if err != nil && e == nil {
		return malformed(m, raw)
	}
	readHeader(m, gomail.Header{Header: e.Header})
	if err := w.walk(e, nil, 0, false); err != nil && w.text == "" && w.html == "" {
		return malformed(m, raw)
	}
	m.Text, m.HTML = w.text, w.html
	m.Attachments, m.Inline = w.attachments, w.inline
	if m.HTML == "" {
		for _, p := range w.inline {
			if p.Disposition != "attachment" {
				m.Attachments = append(m.Attachments, p)
			}
		}
	}
	return m
}

func malformed(m *Message, raw []byte) *Message {
	m.Malformed = true
	if len(raw) > maxTextBytes {
		raw = raw[:maxTextBytes]
	}
	m.Text = toText(raw)
	m.HTML, m.Attachments, m.Inline = "", nil, nil
	return m
}

// readHeader fills the header fields of m. Fields that do not parse are
// left empty (addresses) or taken leniently (message ids).
func readHeader(m *Message, h gomail.Header) {
	m.From = headerAddresses(h, "From")
	m.To = headerAddresses(h, "To")
	m.Cc = headerAddresses(h, "Cc")
	m.ReplyTo = headerAddresses(h, "Reply-To")
	m.Bcc = headerAddresses(h, "Bcc")
	if s, err := h.Subject(); err == nil {
		m.Subject = s
	} else {
		m.Subject = h.Get("Subject")
	}
	m.Subject = strings.Join(strings.Fields(m.Subject), " ")
	if d, err := h.Date(); err == nil {
		m.Date = d
	}
	m.MessageID = firstMsgID(h, "Message-Id")
	m.InReplyTo = firstMsgID(h, "In-Reply-To")
	m.References = msgIDs(h, "References")
}

func headerAddresses(h gomail.Header, key string) []Address {
	if !h.Has(key) {
		return nil
	}
	list, err := h.AddressList(key)
	if err != nil {
		// One bad entry fails the whole list in net/mail; keep the
		// entries that parse on their own.
		out, _ := parseAddresses(h.Get(key))
		return out
	}
	out := make([]Address, 0, len(list))
	for _, a := range list {
		out = append(out, Address{Name: a.Name, Email: a.Address})
	}
	return out
}

var msgIDPattern = regexp.MustCompile(`<([^<>\s]+)>`)

// msgIDs parses a list of message ids (RFC 5322 section 3.6.4), falling
// back to anything in angle brackets for the many non-conforming ones.
func msgIDs(h gomail.Header, key string) []string {
	l, err := h.MsgIDList(key)
	if err == nil {
		return l
	}
	var out []string
	for _, m := range msgIDPattern.FindAllStringSubmatch(h.Get(key), -1) {
		out = append(out, m[1])
	}
	return out
}

func firstMsgID(h gomail.Header, key string) string {
	if l := msgIDs(h, key); len(l) > 0 {
		return l[0]
	}
	return strings.Trim(strings.TrimSpace(h.Get(key)), "<>")
}

// errTooLarge refuses a message beyond maxMessageBytes; it is an ErrTooLarge.
var errTooLarge = fmt.Errorf("%w: message over the size limit", ErrTooLarge)

// errTooManyParts stops a walk over a message with absurdly many parts.
var errTooManyParts = errors.New("mail: too many MIME parts")

// locatePart, run inside s.run, selects box read-only and fetches the BODYSTRUCTURE of uid, to check that nums names
// a leaf no larger than limit (encoded) and to tell which header belongs to the part: the message's own for the body
// of a single-part message, else the part's MIME header ([path.MIME], RFC 9051 §6.4.5). It returns the UID set, that
// header section and the leaf's encoded size.
func (s *Session) locatePart(box string, uid uint32, nums []int, path string, limit int64) (imap.UIDSet, *imap.FetchItemBodySection, int64, error) {
	if _, err := s.examine(box); err != nil {
		return nil, nil, 0, err
	}
	set := imap.UIDSetNum(imap.UID(uid))
	bufs, err := s.c.Fetch(set, &imap.FetchOptions{UID: true, BodyStructure: &imap.FetchItemBodyStructure{}}).Collect()
	if err != nil {
		return nil, nil, 0, err
	}
	b := findUID(bufs, uid)
	if b == nil {
		return nil, nil, 0, fmt.Errorf("%w: uid %d", ErrNoMessage, uid)
	}
	if !leafExists(b.BodyStructure, nums) {
		return nil, nil, 0, fmt.Errorf("%w: no part %s in uid %d", ErrNoMessage, path, uid)
	}
	size := leafSize(b.BodyStructure, nums)
	if size > limit {
		return nil, nil, 0, fmt.Errorf("%w: part %s of uid %d is %d bytes", ErrTooLarge, path, uid, size)
	}
	hdr := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}
	if _, multi := b.BodyStructure.(*imap.BodyStructureMultiPart); multi {
		hdr = &imap.FetchItemBodySection{Peek: true, Part: nums, Specifier: imap.PartSpecifierMIME}
	}
	return set, hdr, size, nil
}
