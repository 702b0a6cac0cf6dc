package mailserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
)

// seedBase is the fixed "now" of the seeded mailboxes, so that the demo and
// tests see the same data on every run.
var seedBase = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// Seed creates the account for email (if needed) and fills it, once, with
// realistic, deterministic mail: the standard folders plus Projects and
// Receipts, over forty INBOX messages (plain, HTML-only, alternative,
// attachments, an inline cid: image, RFC 2047 headers in German and Japanese,
// a twelve-message thread), a few unread and flagged.
func (s *Server) Seed(email string) error {
	email = strings.ToLower(strings.TrimSpace(email))
	if !strings.Contains(email, "@") {
		return fmt.Errorf("mailserver: seed: invalid address %q", email)
	}
	a := s.account(email, true)
	a.mu.Lock()
	done := a.seeded
	a.seeded = true
	a.mu.Unlock()
	if done {
		return nil
	}
	a.create("Projects", "")
	a.create("Receipts", "")
	for _, m := range seedMessages(email) {
		if err := a.append(m.box, m.bytes(), m.flags, m.at); err != nil {
			return fmt.Errorf("mailserver: seed %s: %w", m.box, err)
		}
	}
	return nil
}

// part is a MIME entity: header lines and an already encoded body, both
// with CRLF line endings.
type part struct {
	header []string
	body   string
}

// text is a UTF-8 text part (subtype "plain" or "html") in
// quoted-printable (RFC 2045 section 6.7).
func text(subtype, body string) part {
	return part{
		header: []string{
			"Content-Type: text/" + subtype + "; charset=utf-8",
			"Content-Transfer-Encoding: quoted-printable",
		},
		body: qp([]byte(body)),
	}
}

func plain(body string) part { return text("plain", body) }
func html(body string) part  { return text("html", body) }

// latin1 is a text/plain part in ISO-8859-1, as older mail clients send.
func latin1(body string) part {
	enc, err := charmap.ISO8859_1.NewEncoder().String(body)
	if err != nil {
		panic(err) // seed data is fixed
	}
	return part{
		header: []string{
			"Content-Type: text/plain; charset=iso-8859-1",
			"Content-Transfer-Encoding: quoted-printable",
		},
		body: qp([]byte(enc)),
	}
}

// iso2022jp is a text/plain part in ISO-2022-JP (RFC 1468), 7bit.
func iso2022jp(body string) part {
	enc, err := japanese.ISO2022JP.NewEncoder().String(crlf(body))
	if err != nil {
		panic(err)
	}
	return part{
		header: []string{
			"Content-Type: text/plain; charset=iso-2022-jp",
			"Content-Transfer-Encoding: 7bit",
		},
		body: enc,
	}
}

// attachment is a file attached with Content-Disposition: attachment
// (RFC 2183), base64-encoded.
func attachment(contentType, filename string, data []byte) part {
	return part{
		header: []string{
			fmt.Sprintf("Content-Type: %s; name=%q", contentType, filename),
			"Content-Transfer-Encoding: base64",
			fmt.Sprintf("Content-Disposition: attachment; filename=%q", filename),
		},
		body: b64(data),
	}
}

// inline is a resource an HTML part shows with src="cid:<id>" (RFC 2392).
func inline(contentType, cid, filename string, data []byte) part {
	return part{
		header: []string{
			fmt.Sprintf("Content-Type: %s; name=%q", contentType, filename),
			"Content-Transfer-Encoding: base64",
			"Content-ID: <" + cid + ">",
			fmt.Sprintf("Content-Disposition: inline; filename=%q", filename),
		},
		body: b64(data),
	}
}

// multipart joins parts (RFC 2046 section 5.1). The boundary is derived from
// the content, so output is deterministic and nested boundaries differ.
func multipart(subtype string, parts ...part) part {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(strings.Join(p.header, "\n")))
		h.Write([]byte(p.body))
	}
	boundary := "=_postern_" + hex.EncodeToString(h.Sum(nil)[:10])
	var b strings.Builder
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	for _, p := range parts {
		b.WriteString("\r\n--" + boundary + "\r\n")
		for _, l := range p.header {
			b.WriteString(l + "\r\n")
		}
		b.WriteString("\r\n")
		b.WriteString(strings.TrimSuffix(p.body, "\r\n"))
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return part{
		header: []string{fmt.Sprintf("Content-Type: multipart/%s; boundary=%q", subtype, boundary)},
		body:   b.String(),
	}
}

// alternative is a plain-text and an HTML rendering of the same content.
func alternative(plainBody, htmlBody string) part {
	return multipart("alternative", plain(plainBody), html(htmlBody))
}

func qp(b []byte) string {
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	w.Write([]byte(crlf(string(b))))
	w.Close()
	return buf.String()
}

func b64(data []byte) string {
	s := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s + "\r\n")
	return b.String()
}

// crlf normalises line endings to CRLF (RFC 5322 section 2.1).
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// addr is a mailbox for a header field.
type addr struct{ name, email string }

// String encodes non-ASCII display names as RFC 2047 encoded words.
func (a addr) String() string {
	return (&mail.Address{Name: a.name, Address: a.email}).String()
}

func addrList(l []addr) string {
	s := make([]string, len(l))
	for i, a := range l {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// message is one seeded message.
type message struct {
	box   string
	at    time.Time
	flags []imap.Flag

	from    addr
	rawFrom string // pre-encoded From field, overrides from
	to, cc  []addr
	subject string
	// rawSubject is a pre-encoded Subject field, overrides subject (for
	// charsets other than UTF-8).
	rawSubject string
	id         string // Message-ID without brackets
	inReplyTo  string
	refs       []string
	extra      []string
	body       part
}

// encodeSubject applies RFC 2047: B encoding for CJK text (shorter), Q
// encoding for mostly-Latin text.
func encodeSubject(s string) string {
	ascii, cjk := true, false
	for _, r := range s {
		if r > unicode.MaxASCII {
			ascii = false
		}
		if unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana) {
			cjk = true
		}
	}
	switch {
	case ascii:
		return s
	case cjk:
		return mime.BEncoding.Encode("UTF-8", s)
	}
	return mime.QEncoding.Encode("UTF-8", s)
}

func (m message) bytes() []byte {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	from := m.rawFrom
	if from == "" {
		from = m.from.String()
	}
	line("Date", m.at.Format(time.RFC1123Z))
	line("From", from)
	if len(m.to) > 0 {
		line("To", addrList(m.to))
	}
	if len(m.cc) > 0 {
		line("Cc", addrList(m.cc))
	}
	subject := m.rawSubject
	if subject == "" {
		subject = encodeSubject(m.subject)
	}
	line("Subject", subject)
	line("Message-ID", "<"+m.id+">")
	if m.inReplyTo != "" {
		line("In-Reply-To", "<"+m.inReplyTo+">")
	}
	if len(m.refs) > 0 {
		line("References", "<"+strings.Join(m.refs, "> <")+">")
	}
	for _, l := range m.extra {
		b.WriteString(l + "\r\n")
	}
	line("MIME-Version", "1.0")
	for _, l := range m.body.header {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(m.body.body)
	return []byte(b.String())
}

// tinyPNG is a valid 16×16 PNG (a two-colour badge) for the cid: message.
func tinyPNG() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for y := 0; y < 16; y++ {
		for x := 0; x < 16; x++ {
			c := color.RGBA{0x2b, 0x6c, 0xb0, 0xff}
			if (x-8)*(x-8)+(y-8)*(y-8) < 20 {
				c = color.RGBA{0xf6, 0xc3, 0x3b, 0xff}
			}
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// tinyPDF is a small, well-formed one-page PDF showing a line of text.
func tinyPDF(line string) []byte {
	stream := fmt.Sprintf("BT /F1 14 Tf 72 720 Td (%s) Tj ET", strings.NewReplacer(`\`, `\\`, "(", `\(`, ")", `\)`).Replace(line))
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(stream), stream),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}
