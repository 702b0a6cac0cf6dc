package mail

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	htmlcharset "golang.org/x/net/html/charset"
	"golang.org/x/text/encoding/charmap"
)

// walker collects the bodies and parts of a MIME tree (RFC 2045, RFC 2046).
type walker struct {
	text, html          string
	attachments, inline []Part
	parts               int
	// keep, when set, asks for the decoded content of some leaves, which
	// are stored in kept by path.
	keep func(path string) bool
	kept map[string][]byte
}

// walk visits e, whose part number is path (nil for the message itself).
// inAlt says that an ancestor is multipart/alternative, whose parts are
// renderings of the same content: only the first text/plain and the first
// text/html count.
func (w *walker) walk(e *message.Entity, path []int, depth int, inAlt bool) error {
	w.parts++
	if w.parts > maxParts {
		return errTooManyParts
	}
	if mr := e.MultipartReader(); mr != nil {
		if depth >= maxDepth {
			return errTooManyParts
		}
		mt, _, _ := e.Header.ContentType()
		alt := inAlt || strings.EqualFold(mt, "multipart/alternative")
		for i := 1; ; i++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if p == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
				return err
			}
			child := append(path[:len(path):len(path)], i)
			if err := w.walk(p, child, depth+1, alt); err != nil {
				return err
			}
		}
	}
	l := newLeaf(pathString(path), e.Header)
	if l.isBody() {
		data, _ := readLeaf(e.Body, l, maxTextBytes)
		if l.mediaType == "text/plain" {
			w.text = joinBody(w.text, toText(data), inAlt)
		} else {
			w.html = joinBody(w.html, strings.ToValidUTF8(string(data), "\uFFFD"), inAlt)
		}
		return nil
	}
	limit := int64(0)
	if w.keep != nil && w.keep(l.path) {
		limit = -1
	}
	var (
		data []byte
		size int64
	)
	if l.mediaType == "message/rfc822" || l.mediaType == "message/global" {
		// Name a forwarded message after its subject.
		head, _ := io.ReadAll(io.LimitReader(e.Body, 64<<10))
		if l.filename == "" {
			l.filename = rfc822Name(head)
		}
		data, size = readLeaf(io.MultiReader(bytes.NewReader(head), e.Body), l, limit)
	} else {
		data, size = readLeaf(e.Body, l, limit)
	}
	if limit != 0 {
		if w.kept == nil {
			w.kept = map[string][]byte{}
		}
		w.kept[l.path] = data
	}
	p := l.part()
	p.Size = size
	if p.ContentID != "" {
		w.inline = append(w.inline, p)
		if p.Disposition != "attachment" {
			return nil
		}
	}
	w.attachments = append(w.attachments, p)
	return nil
}

// joinBody adds another inline text part to a body; in an alternative
// only the first one counts.
func joinBody(have, next string, inAlt bool) string {
	switch {
	case have == "":
		return next
	case inAlt || next == "":
		return have
	}
	return have + "\n\n" + next
}

// pathString formats a part number; the body of a single-part message is
// part "1" (RFC 9051 section 6.4.5).
func pathString(path []int) string {
	if len(path) == 0 {
		return "1"
	}
	s := make([]string, len(path))
	for i, n := range path {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ".")
}

// leaf is what the header of a non-multipart entity says about it.
type leaf struct {
	path, mediaType, charset, disposition, filename, contentID string
}

func newLeaf(path string, h message.Header) leaf {
	l := leaf{path: path}
	mt, params, err := h.ContentType()
	if err != nil {
		// mime.ParseMediaType is strict; take the type and look for the
		// parameters one by one.
		raw := h.Get("Content-Type")
		mt, _, _ = strings.Cut(raw, ";")
		params = map[string]string{"charset": lenientParam(raw, "charset"), "name": lenientParam(raw, "name")}
	}
	mt = strings.ToLower(strings.TrimSpace(mt))
	if strings.Count(mt, "/") != 1 || strings.ContainsAny(mt, " \t\"") {
		mt = "application/octet-stream"
	}
	l.mediaType = mt
	l.charset = strings.ToLower(params["charset"])

	disp, dparams, err := h.ContentDisposition()
	if err != nil {
		raw := h.Get("Content-Disposition")
		disp, _, _ = strings.Cut(raw, ";")
		dparams = map[string]string{"filename": lenientParam(raw, "filename")}
	}
	switch disp = strings.ToLower(strings.TrimSpace(disp)); disp {
	case "inline", "attachment":
		l.disposition = disp
	}
	name := param(h.Get("Content-Disposition"), "filename", dparams)
	if name == "" {
		name = param(h.Get("Content-Type"), "name", params)
	}
	l.filename = CleanFilename(name)

	cid := strings.TrimSpace(h.Get("Content-Id"))
	cid = strings.TrimSuffix(strings.TrimPrefix(cid, "<"), ">")
	l.contentID = strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == '<' || r == '>' {
			return -1
		}
		return r
	}, cid)
	return l
}

// isBody says whether the leaf is (part of) the message text rather than a
// file: text/plain or text/html that is not marked as an attachment and has
// no file name.
func (l leaf) isBody() bool {
	return (l.mediaType == "text/plain" || l.mediaType == "text/html") && l.disposition != "attachment" && l.filename == ""
}

func (l leaf) part() Part {
	return Part{Path: l.path, ContentType: l.mediaType, Filename: l.filename, ContentID: l.contentID, Disposition: l.disposition}
}

// readLeaf reads at most limit bytes of the decoded body (all for a
// negative limit) and counts the rest, returning the bytes and the total
// size. Decoding errors (corrupt base64, say) end the part where they occur:
// a broken attachment must not hide the rest of the message. Text that is
// still not UTF-8 is converted (see fixCharset).
func readLeaf(r io.Reader, l leaf, limit int64) ([]byte, int64) {
	var buf bytes.Buffer
	var n int64
	if limit < 0 {
		n, _ = io.Copy(&buf, r)
	} else {
		n, _ = io.Copy(&buf, io.LimitReader(r, limit))
		rest, _ := io.Copy(io.Discard, r)
		n += rest
	}
	data := buf.Bytes()
	if strings.HasPrefix(l.mediaType, "text/") && !utf8.Valid(data) {
		data = fixCharset(data, l)
		if limit < 0 {
			n = int64(len(data))
		}
	}
	return data, n
}

// fixCharset converts text that is not valid UTF-8 after go-message's
// charset decoding: the charset was missing, wrong or unknown. HTML often
// declares it in a <meta> element (HTML Living Standard 13.2.3.2);
// otherwise windows-1252, a superset of ISO-8859-1, is the usual culprit.
func fixCharset(data []byte, l leaf) []byte {
	if l.mediaType == "text/html" {
		if enc, _, _ := htmlcharset.DetermineEncoding(data, "text/html"); enc != nil {
			if out, err := enc.NewDecoder().Bytes(data); err == nil && utf8.Valid(out) {
				return out
			}
		}
	}
	if out, err := charmap.Windows1252.NewDecoder().Bytes(data); err == nil {
		return out
	}
	return bytes.ToValidUTF8(data, []byte("\uFFFD"))
}

// toText makes bytes displayable text: valid UTF-8, LF line endings, no
// NULs.
func toText(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\x00", "")
}

// rfc822Name names an attached message after its Subject: "<subject>.eml".
func rfc822Name(msg []byte) string {
	subject := ""
	if len(msg) > 64<<10 {
		msg = msg[:64<<10]
	}
	if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg))); err == nil {
		if dec, err := wordDecoder.DecodeHeader(h.Get("Subject")); err == nil {
			subject = dec
		}
	}
	subject = CleanFilename(strings.Join(strings.Fields(subject), " "))
	if subject == "" {
		subject = "message"
	}
	if len(subject) > 200 {
		subject = CleanFilename(subject[:200])
	}
	return subject + ".eml"
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// bufioReader reads a header section, adding the blank line that ends a
// header should the server have left it out.
func bufioReader(header []byte) *bufio.Reader {
	if !bytes.HasSuffix(header, []byte("\n\n")) && !bytes.HasSuffix(header, []byte("\r\n\r\n")) {
		header = append(header[:len(header):len(header)], "\r\n\r\n"...)
	}
	return bufio.NewReader(bytes.NewReader(header))
}

// messageRead parses a message header and returns the entity, tolerating
// unknown charsets and transfer encodings.
func messageRead(raw []byte) (*message.Entity, error) {
	e, err := message.Read(bytes.NewReader(raw))
	if e != nil {
		return e, nil
	}
	return nil, err
}
