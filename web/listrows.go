package web

// The rows of the folder list, written in Go (issue 14). html/template spent about 70 % of the list page's own CPU
// on its 50 rows: every action is a reflective field or method look-up (through the embedded mail.Summary) and a
// call of an escaper through reflect.Value.Call, some twenty-five per row. Everything else on the page stays in
// templates/mailbox.html; only the <tr> elements come from here, as one template.HTML value.
//
// The escaping is html/template's own, byte for byte, for the contexts these rows use: escText is its htmlEscaper
// (element content) and attrEscaper (a double-quoted attribute value) for a plain string, escHref its urlFilter,
// urlNormalizer and attrEscaper for an href. Untrusted text (subjects, names, addresses, warnings, snippets, folder
// names) goes through text and isolate (display.go) exactly as the template sent it, so the bidi and invisible
// character walls are unchanged. TestListRowsMatchTemplate renders hostile rows both ways and requires the same
// bytes; change the two together.

import (
	"html/template"
	"strconv"
	"strings"
)

// rowsHTML renders the page's rows as templates/mailbox.html did with {{range .Rows}}, including the white space
// between them.
func (p *mailboxPage) rowsHTML() template.HTML {
	if len(p.Rows) == 0 {
		return ""
	}
	var b strings.Builder
	// About 1.2 kB a row with a snippet; growing once saves the builder's doublings.
	b.Grow(len(p.Rows) * 1536)
	inSent := p.InSent()
	for i := range p.Rows {
		p.writeRow(&b, &p.Rows[i], inSent)
	}
	return template.HTML(b.String())
}

func (p *mailboxPage) writeRow(b *strings.Builder, r *listRow, inSent bool) {
	uid := strconv.FormatUint(uint64(r.UID), 10)
	b.WriteString("\n    <tr class=\"")
	if !r.Seen {
		b.WriteString("unread")
	}
	if r.Flagged {
		b.WriteString(" flagged")
	}
	b.WriteString(`" data-uid="`)
	b.WriteString(uid)
	b.WriteString(`" id="m-`)
	b.WriteString(uid)
	b.WriteString("\">\n      <td class=\"sel\">")
	if !p.AllFolders {
		b.WriteString(`<input type="checkbox" name="uids" value="`)
		escText(b, r.SelectValue())
		b.WriteString(`" id="sel-`)
		b.WriteString(uid)
		b.WriteByte('"')
		if p.Flash.IsSelected(r.UID) {
			b.WriteString(" checked")
		}
		b.WriteString(` aria-label="Select: `)
		if r.Subject != "" {
			escText(b, text(r.Subject))
		} else {
			b.WriteString("(no subject)")
		}
		if r.Count > 1 {
			b.WriteString(" (")
			b.WriteString(strconv.Itoa(r.Count))
			b.WriteString(" messages)")
		}
		b.WriteString(`">`)
	}
	b.WriteString("</td>\n      <td class=\"from\">")
	if inSent {
		b.WriteString(`<span class="visually-hidden">To: </span>`)
	}
	for i, who := range people(r.Who, true) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`<bdi title="`)
		escText(b, who.Email)
		b.WriteString(`">`)
		if who.Name != "" {
			escText(b, who.Name)
		} else {
			escText(b, who.Email)
		}
		b.WriteString("</bdi>")
		if who.Warn != "" {
			b.WriteString(` <span class="spoof-flag" title="`)
			escText(b, who.Warn)
			b.WriteString(`" role="img" aria-label="Warning: `)
			escText(b, who.Warn)
			b.WriteString(`">⚠</span>`)
		}
	}
	b.WriteString("</td>\n      <td class=\"subject\"><a href=\"")
	escHref(b, r.URL)
	b.WriteString(`" class="open">`)
	// Text for screen readers goes first: an absolutely positioned (visually hidden) span after a long subject would
	// stick out of the row on a phone, as the cell's overflow does not clip it.
	if !r.Seen {
		b.WriteString(`<span class="visually-hidden">Unread: </span>`)
	}
	if r.Count > 1 {
		b.WriteString(`<span class="visually-hidden">Conversation of `)
		b.WriteString(strconv.Itoa(r.Count))
		b.WriteString(" messages")
		if r.Unread != 0 {
			b.WriteString(", ")
			b.WriteString(strconv.Itoa(r.Unread))
			b.WriteString(" unread")
		}
		b.WriteString(": </span>")
	}
	if r.Folder != "" {
		b.WriteString(`<span class="visually-hidden">In `)
		escText(b, text(r.FolderLabel))
		b.WriteString(": </span>")
	}
	if r.Flagged {
		b.WriteString(`<span class="flag" title="Flagged" aria-label="Flagged">★</span> `)
	}
	if r.Subject != "" {
		b.WriteString(string(isolate(r.Subject)))
	} else {
		b.WriteString("<em>(no subject)</em>")
	}
	if r.Count > 1 {
		n := strconv.Itoa(r.Count)
		b.WriteString(` <span class="count" title="`)
		b.WriteString(n)
		b.WriteString(" messages in this conversation")
		if r.Unread != 0 {
			b.WriteString(", ")
			b.WriteString(strconv.Itoa(r.Unread))
			b.WriteString(" unread")
		}
		b.WriteString(`" aria-hidden="true">`)
		b.WriteString(n)
		b.WriteString("</span>")
	}
	b.WriteString("</a>")
	if r.HasAttachment {
		b.WriteString(clipIcon)
	}
	if r.Folder != "" {
		b.WriteString(` <span class="folder-tag" aria-hidden="true">`)
		b.WriteString(string(isolate(r.FolderLabel)))
		b.WriteString("</span>")
	}
	if r.Snippet != "" {
		b.WriteString(`<span class="snippet">`)
		b.WriteString(string(isolate(r.Snippet)))
		b.WriteString("</span>")
	}
	b.WriteString("</td>\n      <td class=\"date\">")
	b.WriteString(string(p.Clock.List(r.Date)))
	b.WriteString("</td>\n    </tr>\n    ")
}

// clipIcon marks a row with attachments.
const clipIcon = ` <svg class="clip" role="img" aria-label="Has attachments" viewBox="0 0 16 16" width="16" height="16" focusable="false"><title>Has attachments</title><path d="M10.5 4.5v6a2.5 2.5 0 0 1-5 0V4a1.75 1.75 0 0 1 3.5 0v6.25a.75.75 0 0 1-1.5 0V5" fill="none" stroke="currentColor" stroke-width="1.3" stroke-linecap="round" transform="rotate(35 8 8)"/></svg>`

// escText writes s escaped for element content or a double-quoted attribute value, as html/template's htmlEscaper
// and attrEscaper do for a plain string: the HTML specials, '+' (against UTF-7 sniffing) and NUL (which a parser
// turns into U+FFFD anyway). All are ASCII, so a byte loop cannot split a UTF-8 sequence.
func escText(b *strings.Builder, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var repl string
		switch s[i] {
		case 0:
			repl = "\uFFFD"
		case '"':
			repl = "&#34;"
		case '&':
			repl = "&amp;"
		case '\'':
			repl = "&#39;"
		case '+':
			repl = "&#43;"
		case '<':
			repl = "&lt;"
		case '>':
			repl = "&gt;"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(repl)
		last = i + 1
	}
	b.WriteString(s[last:])
}

// escHref writes a URL into a double-quoted href as html/template does: a scheme other than http, https or mailto
// becomes "#ZgotmplZ" (urlFilter), bytes a URL may not hold are percent-encoded while valid escapes stay
// (urlNormalizer), and the result is attribute-escaped. The rows' URLs are Postern's own paths, so in practice only
// the last step changes anything ('&' in a folder name's path segment).
func escHref(b *strings.Builder, u string) {
	if scheme, _, ok := strings.Cut(u, ":"); ok && !strings.Contains(scheme, "/") &&
		!strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") && !strings.EqualFold(scheme, "mailto") {
		b.WriteString("#ZgotmplZ")
		return
	}
	const hex = "0123456789abcdef"
	var norm strings.Builder
	last := 0
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		case strings.IndexByte("!#$&*+,/:;=?@[]-._~", c) >= 0:
			continue
		case c == '%' && i+2 < len(u) && isHexDigit(u[i+1]) && isHexDigit(u[i+2]):
			continue
		}
		if last == 0 && norm.Len() == 0 {
			norm.Grow(len(u) + 16)
		}
		norm.WriteString(u[last:i])
		norm.WriteByte('%')
		norm.WriteByte(hex[c>>4])
		norm.WriteByte(hex[c&15])
		last = i + 1
	}
	if norm.Len() > 0 {
		norm.WriteString(u[last:])
		u = norm.String()
	}
	escText(b, u)
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
