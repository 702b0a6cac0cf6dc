// Package bench is the load generator of scripts/bench: it fills a maildir with realistic mail, drives Postern and
// Roundcube over HTTP as concurrent users, samples the CPU time and memory of the processes behind them, and writes
// the tables and the latency chart of docs/benchmarks.md. It is a tool, not part of the server: nothing else
// imports it.
package bench

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Kind is what a generated message looks like; the load generator opens messages by kind.
type Kind int

// The kinds, by message index modulo 10.
const (
	KindPlain      Kind = iota // text/plain, a few paragraphs
	KindHTML                   // multipart/alternative, text and a newsletter-like HTML part
	KindAttachment             // multipart/mixed with a PDF of 20 KB to 2 MB
	KindReply                  // a plain reply in a thread (In-Reply-To, References, "Re:")
	KindHTMLImage              // multipart/related HTML with an inline image
)

// KindOf returns the kind of message i (0-based; UID i+1 in a freshly filled mailbox).
func KindOf(i int) Kind {
	switch i % 10 {
	case 0, 1, 2:
		return KindPlain
	case 3, 4, 5:
		return KindHTML
	case 6:
		return KindAttachment
	case 7, 8:
		return KindReply
	}
	return KindHTMLImage
}

// SubjectOf is message i's subject (searches look for its words).
func SubjectOf(i int) string {
	topics := []string{"Quarterly report", "Team offsite", "Invoice", "Release planning", "Coffee?", "Server migration",
		"Holiday schedule", "Design review", "Budget 2027", "Customer feedback", "Weekly newsletter", "Security update"}
	return fmt.Sprintf("%s #%d", topics[i%len(topics)], i/len(topics))
}

var words = strings.Fields(`the of and to in is that for it as was with be by on not he this are or his from at which
but have an they you were her she there been one all we their has would when if so no what up out can more about into
them some could time these two may then do first any my now such like other how over our even most made after also
did many before must through back years where much your way well down should because each just those people mail
server meeting report review project budget deadline draft please thanks regards attached schedule update`)

func paragraph(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := range n {
		w := words[r.IntN(len(words))]
		if i == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		b.WriteString(w)
		if i%14 == 13 {
			b.WriteString(".\r\n")
		} else {
			b.WriteByte(' ')
		}
	}
	b.WriteString(".\r\n")
	return b.String()
}

// Message returns message i of a mailbox owned by to, dated at t.
func Message(i int, to string, t time.Time) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 14))
	kind := KindOf(i)
	from := fmt.Sprintf("Sender %d <sender%d@example.org>", i%97, i%97)
	subject := SubjectOf(i)
	var h strings.Builder
	fmt.Fprintf(&h, "Return-Path: <sender%d@example.org>\r\nFrom: %s\r\nTo: %s\r\nDate: %s\r\nMessage-ID: <m%d@example.org>\r\nMIME-Version: 1.0\r\n",
		i%97, from, to, t.Format(time.RFC1123Z), i)
	if kind == KindReply {
		subject = "Re: " + SubjectOf(i-1)
		fmt.Fprintf(&h, "In-Reply-To: <m%d@example.org>\r\nReferences: <m%d@example.org> <m%d@example.org>\r\n", i-1, i-8, i-1)
	}
	fmt.Fprintf(&h, "Subject: %s\r\n", subject)
	// Sizes roughly log-normal: most text mail is a few KB, a tail is tens of KB.
	paras := 1 + int(r.ExpFloat64()*4)
	text := ""
	for range paras {
		text += paragraph(r, 40+r.IntN(80)) + "\r\n"
	}
	switch kind {
	case KindPlain, KindReply:
		if kind == KindReply {
			text += "\r\nOn an earlier day, someone wrote:\r\n> " + strings.ReplaceAll(paragraph(r, 60), "\r\n", "\r\n> ") + "\r\n"
		}
		h.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		h.WriteString(text)
	case KindHTML, KindHTMLImage:
		html := "<!DOCTYPE html><html><head><style>body{font-family:sans-serif} td{padding:4px}</style></head><body><table>"
		for p := range paras * 3 {
			html += fmt.Sprintf(`<tr><td><h2>Item %d</h2><p>%s</p><a href="https://example.org/item/%d">Read more</a></td></tr>`, p, paragraph(r, 50), p)
		}
		html += `</table><img src="https://tracker.example.org/pixel.gif" width="1" height="1"></body></html>`
		if kind == KindHTMLImage {
			html = strings.Replace(html, "<table>", `<img src="cid:logo@example.org" alt="logo"><table>`, 1)
		}
		h.WriteString("Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		h.WriteString(text)
		h.WriteString("\r\n--alt\r\n")
		if kind == KindHTMLImage {
			h.WriteString("Content-Type: multipart/related; boundary=\"rel\"\r\n\r\n--rel\r\n")
		}
		h.WriteString("Content-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n")
		if kind == KindHTMLImage {
			h.WriteString("--rel\r\nContent-Type: image/png\r\nContent-ID: <logo@example.org>\r\nContent-Transfer-Encoding: base64\r\n\r\n")
			h.WriteString(b64(randBytes(r, 4<<10+r.IntN(20<<10))))
			h.WriteString("--rel--\r\n")
		}
		h.WriteString("--alt--\r\n")
	case KindAttachment:
		size := 20<<10 + int(r.ExpFloat64()*150*1024)
		size = min(size, 2<<20)
		h.WriteString("Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		h.WriteString(text)
		fmt.Fprintf(&h, "\r\n--mix\r\nContent-Type: application/pdf; name=\"report-%d.pdf\"\r\nContent-Disposition: attachment; filename=\"report-%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i)
		h.WriteString(b64(append([]byte("%PDF-1.4\n"), randBytes(r, size)...)))
		h.WriteString("--mix--\r\n")
	}
	return []byte(h.String())
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func b64(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s + "\r\n")
	return out.String()
}

// FillMaildir writes n messages into the maildir folder dir (created; "cur" entries, \Seen for most older mail),
// oldest first, so that a server assigns UIDs in index order. It returns the bytes written.
func FillMaildir(dir, to string, n, seed int) (int64, error) {
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return 0, err
		}
	}
	var total int64
	start := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	for i := range n {
		t := start.Add(time.Duration(i) * 17 * time.Minute)
		raw := Message(seed+i, to, t)
		flags := "S"
		if i >= n-30 || i%23 == 0 {
			flags = "" // unread: the newest, and a few older ones
		}
		name := fmt.Sprintf("%d.M%dP%d.bench,S=%d:2,%s", t.Unix(), i, seed, len(raw), flags)
		p := filepath.Join(dir, "cur", name)
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			return total, err
		}
		if err := os.Chtimes(p, t, t); err != nil {
			return total, err
		}
		total += int64(len(raw))
	}
	return total, nil
}
