package mail

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	netmail "net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// ErrHeaderInjection means a value destined for a header field held a CR
// or LF, which would end the field and start another (RFC 5322 section
// 2.2), e.g. a Subject smuggling in a Bcc.
var ErrHeaderInjection = errors.New("mail: CR or LF in a header field")

// Attachment is a file to attach to a Draft.
type Attachment struct {
	// Filename may hold any Unicode; it is written RFC 2231 encoded when
	// needed (RFC 6266 section 4.3).
	Filename string
	// ContentType is a media type such as "application/pdf"; empty or
	// invalid means application/octet-stream.
	ContentType string
	Data        []byte
}

// Draft is a message to be built and then sent or saved.
type Draft struct {
	From        Address
	To, Cc, Bcc []Address
	// Subject and the names in addresses may hold any Unicode: they are
	// RFC 2047 encoded when needed.
	Subject, Text string
	// InReplyTo and References are message ids without angle brackets
	// (RFC 5322 section 3.6.4).
	InReplyTo  string
	References []string

	Attachments []Attachment
	// Forwarded is a whole message attached as message/rfc822 (RFC 2046
	// section 5.2.1).
	Forwarded []byte
}

// Recipients returns the envelope recipients of the draft (To, Cc and Bcc,
// each address once) for Send. Bcc recipients appear only here, never in
// the built message (RFC 5322 section 3.6.3).
func (d Draft) Recipients() []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range [][]Address{d.To, d.Cc, d.Bcc} {
		for _, a := range l {
			k := strings.ToLower(a.Email)
			if a.Email != "" && !seen[k] {
				seen[k] = true
				out = append(out, a.Email)
			}
		}
	}
	return out
}

// Build renders the draft as an RFC 5322 message with go-message: Date
// (now), Message-ID <random@msgIDDomain>, MIME-Version (RFC 2045 section
// 4), From, To, Cc, Subject, In-Reply-To, References, and a text/plain
// UTF-8 body in quoted-printable; with attachments or a forwarded message,
// a multipart/mixed (RFC 2046 section 5.1.3). Bcc is never written.
//
// A CR or LF in any value that goes into a header field (names, addresses,
// subject, message ids, file names, content types) gives an error wrapping
// ErrHeaderInjection; an invalid address another error.
func (d Draft) Build(now time.Time, msgIDDomain string) ([]byte, error) {
	if err := d.check(msgIDDomain); err != nil {
		return nil, err
	}
	var h gomail.Header
	h.SetDate(now)
	h.SetMessageID(randomID() + "@" + msgIDDomain)
	h.SetAddressList("From", goAddresses([]Address{d.From}))
	h.SetAddressList("To", goAddresses(d.To))
	h.SetAddressList("Cc", goAddresses(d.Cc))
	if strings.Contains(d.Subject, "=?") {
		// Typed text that looks like an RFC 2047 encoded word would be decoded by the recipient's client, to
		// anything (CR/LF included): encode it, so that it arrives as the text the user typed.
		h.Set("Subject", encodeWords(d.Subject))
	} else {
		h.SetSubject(d.Subject)
	}
	if d.InReplyTo != "" {
		h.SetMsgIDList("In-Reply-To", []string{d.InReplyTo})
	}
	if len(d.References) > 0 {
		h.SetMsgIDList("References", d.References)
	}
	text := strings.ReplaceAll(strings.ReplaceAll(d.Text, "\r\n", "\n"), "\r", "\n")

	var buf bytes.Buffer
	var th gomail.InlineHeader
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	if len(d.Attachments) == 0 && d.Forwarded == nil {
		h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := gomail.CreateSingleInlineWriter(&buf, h)
		if err != nil {
			return nil, fmt.Errorf("mail: build: %w", err)
		}
		if _, err := w.Write([]byte(text)); err != nil {
			return nil, fmt.Errorf("mail: build: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("mail: build: %w", err)
		}
		return buf.Bytes(), nil
	}
	mw, err := gomail.CreateWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("mail: build: %w", err)
	}
	parts := []struct {
		h    message.Header
		data []byte
	}{{th.Header, []byte(text)}}
	for _, a := range d.Attachments {
		parts = append(parts, struct {
			h    message.Header
			data []byte
		}{attachmentHeader(CleanFilename(a.Filename), a.ContentType, "base64"), a.Data})
	}
	if d.Forwarded != nil {
		fwd := crlfBytes(d.Forwarded)
		// RFC 2046 section 5.2.1: no base64 or quoted-printable for
		// message/rfc822.
		enc := "7bit"
		for _, c := range fwd {
			if c >= 0x80 {
				enc = "8bit"
				break
			}
		}
		name := rfc822Name(fwd)
		parts = append(parts, struct {
			h    message.Header
			data []byte
		}{attachmentHeader(name, "message/rfc822", enc), fwd})
	}
	for i, p := range parts {
		var w interface {
			Write([]byte) (int, error)
			Close() error
		}
		if i == 0 {
			w, err = mw.CreateSingleInline(gomail.InlineHeader{Header: p.h})
		} else {
			w, err = mw.CreateAttachment(gomail.AttachmentHeader{Header: p.h})
		}
		if err == nil {
			_, err = w.Write(p.data)
		}
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("mail: build: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("mail: build: %w", err)
	}
	return buf.Bytes(), nil
}

// attachmentHeader writes the file name both ways: RFC 2231 in the
// Content-Disposition filename (RFC 6266 section 4.3, what
// mime.FormatMediaType produces for non-ASCII) and, for older clients, an
// RFC 2047 encoded Content-Type name (which go-message produces).
func attachmentHeader(filename, contentType, enc string) message.Header {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.Contains(mt, "/") {
		mt = "application/octet-stream"
	}
	var h message.Header
	params := map[string]string{}
	if filename != "" {
		params["name"] = filename
	}
	h.SetContentType(mt, params)
	disp := "attachment"
	if filename != "" {
		if v := mime.FormatMediaType("attachment", map[string]string{"filename": filename}); v != "" {
			disp = v
		}
	}
	h.Set("Content-Disposition", disp)
	h.Set("Content-Transfer-Encoding", enc)
	return h
}

// check validates everything that goes into a header field.
func (d Draft) check(msgIDDomain string) error {
	inject := func(field, v string) error {
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("%w: %s", ErrHeaderInjection, field)
		}
		return nil
	}
	type fv struct{ field, v string }
	vals := []fv{{"message id domain", msgIDDomain}, {"Subject", d.Subject}, {"In-Reply-To", d.InReplyTo}}
	for i, r := range d.References {
		vals = append(vals, fv{fmt.Sprintf("References[%d]", i), r})
	}
	addrs := map[string][]Address{"From": {d.From}, "To": d.To, "Cc": d.Cc, "Bcc": d.Bcc}
	for _, field := range []string{"From", "To", "Cc", "Bcc"} {
		for i, a := range addrs[field] {
			vals = append(vals, fv{fmt.Sprintf("%s[%d] name", field, i), a.Name}, fv{fmt.Sprintf("%s[%d] address", field, i), a.Email})
		}
	}
	for i, a := range d.Attachments {
		vals = append(vals, fv{fmt.Sprintf("attachment %d filename", i), a.Filename}, fv{fmt.Sprintf("attachment %d content type", i), a.ContentType})
	}
	for _, x := range vals {
		if err := inject(x.field, x.v); err != nil {
			return err
		}
	}
	if !validDomain(msgIDDomain) {
		return fmt.Errorf("mail: invalid message id domain %q", msgIDDomain)
	}
	if d.From.Email == "" {
		return errors.New("mail: build: no From address")
	}
	for _, field := range []string{"From", "To", "Cc", "Bcc"} {
		for _, a := range addrs[field] {
			if !validEmail(a.Email) {
				return fmt.Errorf("mail: invalid %s address %q", field, a.Email)
			}
		}
	}
	for _, id := range append([]string{d.InReplyTo}, d.References...) {
		if id != "" && !validMsgID(id) {
			return fmt.Errorf("mail: invalid message id %q", id)
		}
	}
	return nil
}

// validEmail accepts an addr-spec (RFC 5322 section 3.4.1) as net/mail
// parses it, and nothing around it.
func validEmail(s string) bool {
	if s == "" || len(s) > 254 || !utf8.ValidString(s) {
		return false
	}
	a, err := netmail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, c := range s {
		if !(c == '.' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// validMsgID accepts the inside of a msg-id (RFC 5322 section 3.6.4),
// leniently: printable ASCII without spaces and angle brackets.
func validMsgID(s string) bool {
	if len(s) > 998 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

func goAddresses(l []Address) []*gomail.Address {
	out := make([]*gomail.Address, 0, len(l))
	for _, a := range l {
		out = append(out, &gomail.Address{Name: a.Name, Address: a.Email})
	}
	return out
}

// randomID is the left part of a Message-ID: 128 random bits (RFC 5322
// section 3.6.4 asks for global uniqueness).
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// crlfBytes normalises line endings to CRLF (RFC 5322 section 2.1).
func crlfBytes(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// OwnCopy returns msg (as Build made it) with a Bcc header field in front, for the copy the user keeps in Sent or
// Drafts: Build never writes Bcc, rightly for what goes out (RFC 5322 section 3.6.3), but the user's own copy
// should remember who was blind copied, and a resumed draft gets them back (Message.Bcc). net/mail encodes the
// names (RFC 2047); one address per folded line. An address with a CR or LF (which Build would have refused) is
// left out.
func OwnCopy(msg []byte, bcc []Address) []byte {
	var b bytes.Buffer
	n := 0
	for _, a := range bcc {
		if strings.ContainsAny(a.Name+a.Email, "\r\n") {
			continue
		}
		if n == 0 {
			b.WriteString("Bcc: ")
		} else {
			b.WriteString(",\r\n ")
		}
		n++
		b.WriteString((&netmail.Address{Name: a.Name, Address: a.Email}).String())
	}
	if n == 0 {
		return msg
	}
	b.WriteString("\r\n")
	b.Write(msg)
	return b.Bytes()
}

// encodeWords encodes s as RFC 2047 "B" encoded words whatever it contains, each within the 75-character limit of
// section 2, cut at rune boundaries; the spaces between them are dropped by decoders (section 6.2).
func encodeWords(s string) string {
	var words []string
	for len(s) > 0 {
		n := min(len(s), 45) // 45 bytes → 60 base64 characters + "=?utf-8?b??=" = 72
		for n < len(s) && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, " ")
}
