package mail

import (
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/html"
)

// maxReferences bounds the References of a reply; RFC 5322 section 3.6.4
// lets a long chain be trimmed, keeping the first (thread root) id.
const maxReferences = 20

// Reply drafts a reply to m from self (RFC 5322 section 3.6.4): Subject
// "Re: " (once), To the original Reply-To or else From (or, replying to
// one's own message, the original To), In-Reply-To the original
// Message-ID, References the original's References (or In-Reply-To) plus
// its Message-ID, and the original text quoted with "> " under an
// attribution line. With all (reply-all), Cc gets the original To and Cc
// minus self and minus those already in To.
func Reply(m *Message, self Address, all bool) Draft {
	d := Draft{From: self, Subject: prefixSubject(m.Subject, "Re:", "re:")}
	fromSelf := len(m.From) > 0
	for _, a := range m.From {
		fromSelf = fromSelf && sameAddress(a, self)
	}
	switch {
	case fromSelf:
		// Replying to one's own message continues with its recipients.
		if d.To = dedupe(m.To, nil, self); len(d.To) == 0 {
			d.To = m.To
		}
	case len(m.ReplyTo) > 0:
		d.To = m.ReplyTo
	default:
		d.To = m.From
	}
	d.To = dedupe(d.To, nil, Address{})
	if all {
		var cc []Address
		if !fromSelf {
			cc = append(cc, m.To...)
		}
		cc = append(cc, m.Cc...)
		d.Cc = dedupe(cc, d.To, self)
	}
	if m.MessageID != "" {
		d.InReplyTo = m.MessageID
		refs := m.References
		if len(refs) == 0 && m.InReplyTo != "" {
			refs = []string{m.InReplyTo}
		}
		refs = append(refs[:len(refs):len(refs)], m.MessageID)
		if len(refs) > maxReferences {
			refs = append(refs[:1:1], refs[len(refs)-maxReferences+1:]...)
		}
		d.References = refs
	}
	d.Text = "\n\n" + attribution(m) + "\n" + quote(bodyText(m))
	return d
}

// Forward drafts a forward of m from self: Subject "Fwd: " (once), and
// either the original attached whole as message/rfc822 (asAttachment; raw
// is the message as Session.Raw returns it), or inline: a forwarded-header
// block, the text, and the original's attachments and inline parts taken
// from raw (none if raw is nil).
func Forward(m *Message, self Address, raw []byte, asAttachment bool) Draft {
	d := Draft{From: self, Subject: prefixSubject(m.Subject, "Fwd:", "fwd:", "fw:")}
	if asAttachment {
		d.Forwarded = raw
		return d
	}
	var b strings.Builder
	b.WriteString("\n\n---------- Forwarded message ----------\n")
	b.WriteString("From: " + addressList(m.From) + "\n")
	if !m.Date.IsZero() {
		b.WriteString("Date: " + m.Date.Format(time.RFC1123Z) + "\n")
	}
	b.WriteString("Subject: " + m.Subject + "\n")
	if len(m.To) > 0 {
		b.WriteString("To: " + addressList(m.To) + "\n")
	}
	if len(m.Cc) > 0 {
		b.WriteString("Cc: " + addressList(m.Cc) + "\n")
	}
	b.WriteString("\n" + bodyText(m))
	d.Text = b.String()
	if raw != nil {
		d.Attachments = partsOf(m, raw)
	}
	return d
}

// partsOf returns the attachments and inline parts of m with their
// content, decoded from raw.
func partsOf(m *Message, raw []byte) []Attachment {
	want := map[string]Part{}
	for _, p := range append(m.Attachments, m.Inline...) {
		want[p.Path] = p
	}
	if len(want) == 0 {
		return nil
	}
	w := &walker{keep: func(path string) bool { _, ok := want[path]; return ok }}
	if e, err := messageRead(raw); err == nil {
		w.walk(e, nil, 0, false)
	}
	var out []Attachment
	done := map[string]bool{}
	for _, p := range append(m.Attachments, m.Inline...) {
		data, ok := w.kept[p.Path]
		if !ok || done[p.Path] {
			continue
		}
		done[p.Path] = true
		name := p.Filename
		if name == "" {
			name = "part-" + p.Path
		}
		out = append(out, Attachment{Filename: name, ContentType: p.ContentType, Data: data})
	}
	return out
}

// prefixSubject puts prefix before s unless s already starts with one of
// the given (lower-case) prefixes.
func prefixSubject(s, prefix string, known ...string) string {
	t := strings.TrimSpace(s)
	for _, k := range known {
		if len(t) >= len(k) && strings.EqualFold(t[:len(k)], k) {
			return t
		}
	}
	if t == "" {
		return prefix
	}
	return prefix + " " + t
}

func sameAddress(a, b Address) bool { return strings.EqualFold(a.Email, b.Email) }

// dedupe drops repeated addresses, those in exclude and self.
func dedupe(l, exclude []Address, self Address) []Address {
	var out []Address
	for _, a := range l {
		if a.Email == "" || (self.Email != "" && sameAddress(a, self)) {
			continue
		}
		dup := false
		for _, b := range append(exclude[:len(exclude):len(exclude)], out...) {
			dup = dup || sameAddress(a, b)
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}

func addressList(l []Address) string {
	s := make([]string, len(l))
	for i, a := range l {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func attribution(m *Message) string {
	who := addressList(m.From)
	if who == "" {
		who = "Someone"
	}
	if m.Date.IsZero() {
		return who + " wrote:"
	}
	return "On " + m.Date.Format("Mon, 2 Jan 2006 at 15:04") + ", " + who + " wrote:"
}

// quote prefixes each line with "> " (">" for empty lines and lines
// already quoted, so that levels read ">>").
func quote(text string) string {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		switch {
		case l == "":
			lines[i] = ">"
		case strings.HasPrefix(l, ">"):
			lines[i] = ">" + l
		default:
			lines[i] = "> " + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// bodyText is the text to quote or forward: the plain text, else text
// extracted from the HTML.
func bodyText(m *Message) string {
	if m.Text != "" || m.HTML == "" {
		return m.Text
	}
	return htmlText(m.HTML)
}

// htmlText extracts readable text from HTML: text nodes, line breaks at
// block elements, nothing from script or style.
func htmlText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b strings.Builder
	skip := 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			return tidyLines(b.String())
		case html.TextToken:
			if skip > 0 {
				continue
			}
			raw := string(z.Text()) // unescaped by the tokenizer
			words := strings.Fields(raw)
			if len(words) == 0 {
				if raw != "" {
					space(&b)
				}
				continue
			}
			if unicode.IsSpace(rune(raw[0])) {
				space(&b)
			}
			b.WriteString(strings.Join(words, " "))
			if unicode.IsSpace(rune(raw[len(raw)-1])) {
				space(&b)
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, _ := z.TagName()
			tok := z.Token()
			switch string(name) {
			case "script", "style", "head", "title":
				if tok.Type == html.StartTagToken {
					skip++
				} else if tok.Type == html.EndTagToken && skip > 0 {
					skip--
				}
			case "br":
				b.WriteByte('\n')
			case "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "pre", "hr":
				b.WriteByte('\n')
			}
		}
	}
}

// space adds a space unless the text already ends in white space.
func space(b *strings.Builder) {
	if s := b.String(); s != "" && !strings.HasSuffix(s, " ") && !strings.HasSuffix(s, "\n") {
		b.WriteByte(' ')
	}
}

// tidyLines trims each line and collapses runs of blank lines.
func tidyLines(s string) string {
	var out []string
	blank := true
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			if !blank {
				out = append(out, "")
			}
			blank = true
			continue
		}
		out = append(out, l)
		blank = false
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
