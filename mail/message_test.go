package mail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// uidBySubject finds a message in box by its exact decoded subject.
func uidBySubject(t *testing.T, s *Session, box, subject string) uint32 {
	t.Helper()
	p, err := s.List(ctxT(t), box, 0, MaxPage)
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range p.Summaries {
		if sum.Subject == subject {
			return sum.UID
		}
	}
	t.Fatalf("no message %q in %s", subject, box)
	return 0
}

func TestMessageSeeded(t *testing.T) {
	e, s := seededSession(t, mailserver.Options{})
	type part struct{ path, ctype, filename, cid, disp, prefix string }
	tests := []struct {
		box, subject         string
		from                 Address
		text, html           string // substrings; "-" means must be empty
		attachments, inline  []part
		messageID, inReplyTo string
		references           int
	}{
		{
			box: "INBOX", subject: "Photos from the offsite",
			from: Address{"Carol Nguyen", "carol@example.org"},
			text: "team badge we voted for", html: `src="cid:badge@example.org"`,
			inline:    []part{{"2", "image/png", "badge.png", "badge@example.org", "inline", "\x89PNG"}},
			messageID: "offsite-photos@example.org",
		},
		{
			box: "INBOX", subject: "Your invoice INV-2026-1042 for October",
			text: "Invoice INV-2026-1042 (EUR 14.90) is attached", html: "<b>INV-2026-1042</b>",
			attachments: []part{
				{"2", "application/pdf", "INV-2026-1042.pdf", "", "attachment", "%PDF-1.4"},
				{"3", "text/plain", "usage-2026-10.txt", "", "attachment", "service        hours   cost\r\n"},
			},
		},
		{
			// ISO-8859-1: RFC 2047 Q in From and Subject, quoted-printable body.
			box: "INBOX", subject: "Rückfrage zur Rechnung Nr. 2026-118",
			from: Address{"Jürgen Weiß", "juergen.weiss@example.de"},
			text: "habe ich eine Rückfrage: Der Betrag", html: "-",
		},
		{
			// ISO-2022-JP in Subject (RFC 2047 B) and body (7bit).
			box: "INBOX", subject: "来週の予定について",
			from: Address{"山田 太郎", "taro.yamada@example.jp"},
			text: "来週の火曜日と水曜日は大阪に出張します。", html: "-",
		},
		{
			box: "INBOX", subject: "Grüße aus München – Übersicht für Q4",
			text: "• Postfächer migriert: 214 von 230",
		},
		{
			box: "INBOX", subject: "The Self-Hosted Weekly #213",
			text: "-", html: "<!DOCTYPE html>",
		},
		{
			box: "INBOX", subject: "Invitation: Quarterly infrastructure review @ Thu 26 Nov 2026 14:00 (UTC)",
			attachments: []part{{"2", "text/calendar", "invite.ics", "", "attachment", "BEGIN:VCALENDAR\r\n"}},
		},
		{
			box: "Junk", subject: "You have WON a free cruise!!!",
			text: "-", html: "<script>alert(1)</script>",
		},
		{
			box: "Receipts", subject: "Your invoice INV-2026-0871 for August",
			text: "-", html: "INV-2026-0871",
			attachments: []part{{"2", "application/pdf", "INV-2026-0871.pdf", "", "attachment", "%PDF"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			ctx := ctxT(t)
			uid := uidBySubject(t, s, tt.box, tt.subject)
			m, err := s.Message(ctx, tt.box, uid)
			if err != nil {
				t.Fatalf("Message() error = %v", err)
			}
			if m.Box != tt.box || m.UID != uid || m.Subject != tt.subject || m.Malformed || m.Size == 0 || m.Date.IsZero() {
				t.Errorf("Message() = box %q uid %d subject %q malformed %v size %d date %v", m.Box, m.UID, m.Subject, m.Malformed, m.Size, m.Date)
			}
			if tt.from.Email != "" && (len(m.From) != 1 || m.From[0] != tt.from) {
				t.Errorf("From = %v, want %v", m.From, tt.from)
			}
			for _, c := range []struct{ name, got, want string }{{"Text", m.Text, tt.text}, {"HTML", m.HTML, tt.html}} {
				switch {
				case c.want == "-" && c.got != "":
					t.Errorf("%s = %q, want empty", c.name, c.got)
				case c.want != "-" && !strings.Contains(c.got, c.want):
					t.Errorf("%s = %q, want it to contain %q", c.name, c.got, c.want)
				}
			}
			if tt.messageID != "" && m.MessageID != tt.messageID {
				t.Errorf("MessageID = %q, want %q", m.MessageID, tt.messageID)
			}
			check := func(name string, got []Part, want []part) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s = %+v, want %d parts", name, got, len(want))
				}
				for i, w := range want {
					g := got[i]
					if g.Path != w.path || g.ContentType != w.ctype || g.Filename != w.filename || g.ContentID != w.cid || g.Disposition != w.disp || g.Size == 0 {
						t.Errorf("%s[%d] = %+v, want %+v", name, i, g, w)
					}
					p, data, err := s.Part(ctx, tt.box, uid, g.Path)
					if err != nil {
						t.Fatalf("Part(%s) error = %v", g.Path, err)
					}
					if p != g {
						t.Errorf("Part(%s) = %+v, want %+v as listed by Message", g.Path, p, g)
					}
					if !bytes.HasPrefix(data, []byte(w.prefix)) || int64(len(data)) != g.Size {
						t.Errorf("Part(%s) content = %d bytes %q..., want %d bytes starting %q", g.Path, len(data), data[:min(len(data), 16)], g.Size, w.prefix)
					}
				}
			}
			check("Attachments", m.Attachments, tt.attachments)
			check("Inline", m.Inline, tt.inline)
		})
	}

	t.Run("thread headers", func(t *testing.T) {
		p, err := s.Search(ctxT(t), "INBOX", Query{Subject: "Migration plan"}, 0, 1)
		if err != nil || len(p.Summaries) != 1 {
			t.Fatalf("Search() = %+v, %v", p, err)
		}
		m, err := s.Message(ctxT(t), "INBOX", p.Summaries[0].UID)
		if err != nil {
			t.Fatal(err)
		}
		if m.InReplyTo == "" || len(m.References) < 2 || m.References[0] != "mailmigration-01@example.org" || m.References[len(m.References)-1] != m.InReplyTo {
			t.Errorf("InReplyTo = %q, References = %q", m.InReplyTo, m.References)
		}
	})

	t.Run("does not set seen", func(t *testing.T) {
		uid := uidBySubject(t, s, "INBOX", "Quick question about the IMAP pool")
		m, err := s.Message(ctxT(t), "INBOX", uid)
		if err != nil {
			t.Fatal(err)
		}
		if m.Seen {
			t.Fatal("seeded unread message reported as seen")
		}
		if _, _, err := s.Part(ctxT(t), "INBOX", uid, "1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Raw(ctxT(t), "INBOX", uid); err != nil {
			t.Fatal(err)
		}
		stored, err := e.srv.Messages(alice, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		for _, sm := range stored {
			if sm.UID == uid && slices.Contains(sm.Flags, `\Seen`) {
				t.Error("reading set \\Seen")
			}
		}
	})
}

func TestRaw(t *testing.T) {
	e, s := seededSession(t, mailserver.Options{})
	stored, err := e.srv.Messages(alice, "Projects")
	if err != nil {
		t.Fatal(err)
	}
	for _, sm := range stored {
		raw, err := s.Raw(ctxT(t), "Projects", sm.UID)
		if err != nil {
			t.Fatalf("Raw(%d) error = %v", sm.UID, err)
		}
		if !bytes.Equal(raw, sm.Raw) {
			t.Errorf("Raw(%d) differs from the stored message", sm.UID)
		}
	}
}

func TestMessageErrors(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	uid := uidBySubject(t, s, "INBOX", "Slides for Thursday")
	if _, err := s.Message(ctx, "INBOX", 9999); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Message(9999) error = %v, want ErrNoMessage", err)
	}
	if _, err := s.Raw(ctx, "INBOX", 9999); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Raw(9999) error = %v, want ErrNoMessage", err)
	}
	if _, _, err := s.Part(ctx, "INBOX", 9999, "1"); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Part(9999, 1) error = %v, want ErrNoMessage", err)
	}
	if _, err := s.Message(ctx, "No such box", 1); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("Message(no such box) error = %v, want ErrNoMailbox", err)
	}
	for _, path := range []string{"3", "1.1", "2.1"} {
		if _, _, err := s.Part(ctx, "INBOX", uid, path); !errors.Is(err, ErrNoMessage) {
			t.Errorf("Part(%q) error = %v, want ErrNoMessage", path, err)
		}
	}
	for _, path := range []string{"", "0", "01", "1.", ".1", "a", "1..2", "-1", "+1", "1 2", "1.MIME", "99999999999"} {
		if _, _, err := s.Part(ctx, "INBOX", uid, path); err == nil || errors.Is(err, ErrNoMessage) {
			t.Errorf("Part(%q) error = %v, want an invalid path error", path, err)
		}
	}
	// A NO leaves the session usable.
	if _, err := s.Message(ctx, "INBOX", uid); err != nil {
		t.Errorf("Message() after errors: %v", err)
	}
}

func readCorpus(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "mime", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCorpus(t *testing.T) {
	type part struct{ path, ctype, filename, cid, disp string }
	tests := []struct {
		file        string
		subject     string
		text, html  string // substrings
		malformed   bool
		attachments []part
		inline      []part
	}{
		{file: "rfc2231-utf8.eml", text: "See the attached CV.",
			attachments: []part{{"2", "application/pdf", "Résumé – Ann.pdf", "", "attachment"}}},
		{file: "rfc2231-latin1-continued.eml",
			attachments: []part{{"2", "application/octet-stream", "Rückfrage zur Rechnung Nr. 118.pdf", "", "attachment"}}},
		{file: "rfc2047-filename.eml", subject: "Grüße mit Anhang", text: "Schöne Grüße",
			attachments: []part{{"2", "image/jpeg", "Übersicht März 2026.jpg", "", "attachment"}}},
		{file: "name-only-path.eml", text: "body",
			attachments: []part{{"2", "text/csv", "report.csv", "", ""}}},
		{file: "cp1252-no-charset.eml", text: "Café au lait – 5 €"},
		{file: "html-meta-charset.eml", html: "Grüße aus München"},
		{file: "unknown-charset.eml", text: "Plain ASCII text in a charset nobody knows."},
		{file: "no-boundary.eml", malformed: true, text: "You should still be able to read this."},
		{file: "truncated-multipart.eml", text: "The first part is complete.",
			attachments: []part{{"2", "application/pdf", "cut.pdf", "", "attachment"}}},
		{file: "bad-header.eml", malformed: true, text: "This line is not a header field"},
		{file: "corrupt-base64.eml", text: "Text survives.",
			attachments: []part{{"2", "image/png", "broken.png", "", "attachment"}}},
		{file: "forwarded-rfc822.eml", text: "Forwarding the minutes.",
			attachments: []part{{"2", "message/rfc822", "Minutes of 17 November.eml", "", "attachment"}}},
		{file: "cid-attachment.eml", html: `cid:logo@example.org`,
			attachments: []part{{"2", "image/gif", "logo.gif", "logo@example.org", "attachment"}},
			inline:      []part{{"2", "image/gif", "logo.gif", "logo@example.org", "attachment"}}},
		{file: "mixed-inline-text.eml", text: "Before the picture.\n\nAfter the picture.",
			attachments: []part{{"2", "image/png", "", "", "inline"}}},
		{file: "nested-alternative.eml", text: "Plain rendering.", html: "HTML rendering",
			attachments: []part{{"2", "text/plain", "notes.txt", "", "attachment"}},
			inline:      []part{{"1.2.2", "image/png", "", "pic", ""}}},
		{file: "deep-nesting.eml", malformed: true, text: "deep text"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw := readCorpus(t, tt.file)
			m := parseMessage(raw)
			if m.Malformed != tt.malformed {
				t.Errorf("Malformed = %v, want %v", m.Malformed, tt.malformed)
			}
			if m.Malformed && m.Text != toText(raw) {
				t.Errorf("Malformed message: Text is not the raw message")
			}
			if tt.subject != "" && m.Subject != tt.subject {
				t.Errorf("Subject = %q, want %q", m.Subject, tt.subject)
			}
			if !strings.Contains(m.Text, tt.text) || !strings.Contains(m.HTML, tt.html) {
				t.Errorf("Text = %q, HTML = %q; want %q and %q", m.Text, m.HTML, tt.text, tt.html)
			}
			check := func(name string, got []Part, want []part) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s = %+v, want %+v", name, got, want)
				}
				for i, w := range want {
					g := got[i]
					if (part{g.Path, g.ContentType, g.Filename, g.ContentID, g.Disposition}) != w {
						t.Errorf("%s[%d] = %+v, want %+v", name, i, g, w)
					}
				}
			}
			check("Attachments", m.Attachments, tt.attachments)
			check("Inline", m.Inline, tt.inline)
		})
	}
}

// TestCorpusPartsMatchServer appends the corpus to the dev server and
// checks that every part Message lists is what Part fetches by section
// path, i.e. that our numbering is the server's (RFC 9051 section 6.4.5).
func TestCorpusPartsMatchServer(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	if err := s.CreateMailbox(ctx, "Corpus"); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "mime", "*.eml"))
	for _, f := range files {
		if err := s.Append(ctx, "Corpus", nil, readCorpus(t, filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range files {
		name := filepath.Base(f)
		if name == "truncated-multipart.eml" || name == "corrupt-base64.eml" {
			continue // the server's structure of broken input may differ
		}
		uid := uint32(i + 1)
		m, err := s.Message(ctx, "Corpus", uid)
		if err != nil {
			t.Fatalf("%s: Message() error = %v", name, err)
		}
		w := &walker{keep: func(string) bool { return true }}
		if e, err := messageRead(readCorpus(t, name)); err == nil {
			w.walk(e, nil, 0, false)
		}
		for _, p := range append(m.Attachments, m.Inline...) {
			got, data, err := s.Part(ctx, "Corpus", uid, p.Path)
			if err != nil {
				t.Errorf("%s: Part(%s) error = %v", name, p.Path, err)
				continue
			}
			if got != p || !bytes.Equal(data, w.kept[p.Path]) {
				t.Errorf("%s: Part(%s) = %+v (%d bytes), want %+v (%d bytes)", name, p.Path, got, len(data), p, len(w.kept[p.Path]))
			}
		}
	}
}

func TestParseLimits(t *testing.T) {
	big := strings.Repeat("x", maxTextBytes+1000)
	raw := "Subject: big\r\nContent-Type: text/plain\r\n\r\n" + big
	m := parseMessage([]byte(raw))
	if len(m.Text) != maxTextBytes {
		t.Errorf("len(Text) = %d, want %d", len(m.Text), maxTextBytes)
	}
	var b strings.Builder
	b.WriteString("Subject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for range maxParts + 10 {
		b.WriteString("--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	m = parseMessage([]byte(b.String()))
	if len(m.Attachments) >= maxParts || !m.Malformed {
		t.Errorf("%d attachments, Malformed %v; want fewer than %d and malformed", len(m.Attachments), m.Malformed, maxParts)
	}
}

func TestLenientParam(t *testing.T) {
	tests := []struct{ in, name, want string }{
		{`attachment; filename="a b.pdf"`, "filename", "a b.pdf"},
		{`attachment; filename=a.pdf; filename=b.pdf`, "filename", "b.pdf"},
		{`attachment; filename*=utf-8''%E2%82%AC.txt`, "filename", "€.txt"},
		{`attachment; filename*=iso-8859-1'de'%E4.txt`, "filename", "ä.txt"},
		{`attachment; FILENAME*0="part one "; filename*1="part two"`, "filename", "part one part two"},
		{`attachment; filename="with \"quotes\"; and semicolon"`, "filename", `with "quotes"; and semicolon`},
		{`attachment; name=x`, "filename", ""},
		{`attachment; filename*=utf-8''%ZZ`, "filename", "%ZZ"},
	}
	for _, tt := range tests {
		if got := lenientParam(tt.in, tt.name); got != tt.want {
			t.Errorf("lenientParam(%q, %q) = %q, want %q", tt.in, tt.name, got, tt.want)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "mime", "*.eml"))
	for _, name := range files {
		f.Add(readCorpus(f, filepath.Base(name)))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := parseMessage(raw)
		if m.Malformed && len(raw) > 0 && m.Text == "" && strings.TrimSpace(toText(raw)) != "" {
			t.Errorf("malformed message without text")
		}
		for _, p := range append(m.Attachments, m.Inline...) {
			if _, err := parsePartPath(p.Path); err != nil {
				t.Errorf("part path %q: %v", p.Path, err)
			}
		}
	})
}

// TestPartTooLarge: a part over MaxPartSize is refused from its BODYSTRUCTURE size, before anything is fetched.
func TestPartTooLarge(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // 32 MiB through the in-process server; slow under -race
	defer cancel()
	big := bytes.Repeat([]byte("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\r\n"), MaxPartSize/76+1024)
	raw := append([]byte("From: bob@example.test\r\nTo: alice@example.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"+
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"), big...)
	raw = append(raw, "--b--\r\n"...)
	if err := s.Append(ctx, "INBOX", nil, raw); err != nil {
		t.Fatal(err)
	}
	p, err := s.List(ctx, "INBOX", 0, 1)
	if err != nil || len(p.Summaries) == 0 {
		t.Fatal(err)
	}
	uid := p.Summaries[0].UID
	if _, _, err := s.Part(ctx, "INBOX", uid, "2"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Part(over MaxPartSize) = %v, want ErrTooLarge", err)
	}
	if _, data, err := s.Part(ctx, "INBOX", uid, "1"); err != nil || !bytes.Contains(data, []byte("see attached")) {
		t.Errorf("Part(small sibling) = %q, %v", data, err)
	}
}

// TestWritePart: the streamed content equals Part's decoded content; a refusal by the caller leaves the session
// usable; a missing part is ErrNoMessage.
func TestWritePart(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	raw := []byte("From: bob@example.test\r\nTo: alice@example.test\r\nSubject: w\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n--b\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Disposition: attachment; filename=x.bin\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b--\r\n")
	if err := s.Append(ctx, "INBOX", nil, raw); err != nil {
		t.Fatal(err)
	}
	pg, err := s.List(ctx, "INBOX", 0, 1)
	if err != nil || len(pg.Summaries) == 0 {
		t.Fatal(err)
	}
	uid := pg.Summaries[0].UID
	for _, path := range []string{"1", "2"} {
		_, want, err := s.Part(ctx, "INBOX", uid, path)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		var seen Part
		err = s.WritePart(ctx, "INBOX", uid, path, func(p Part) (io.Writer, error) { seen = p; return &got, nil })
		if err != nil || !bytes.Equal(got.Bytes(), want) {
			t.Errorf("WritePart(%s) = %q, %v; want %q", path, got.Bytes(), err, want)
		}
		if path == "2" && (seen.Filename != "x.bin" || seen.ContentType != "application/octet-stream") {
			t.Errorf("WritePart(2) saw %+v", seen)
		}
	}
	refused := errors.New("no thanks")
	if err := s.WritePart(ctx, "INBOX", uid, "2", func(Part) (io.Writer, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Errorf("WritePart with a refusing start = %v, want it wrapped", err)
	}
	if err := s.Noop(ctx); err != nil {
		t.Errorf("session unusable after a refused WritePart: %v", err)
	}
	if err := s.WritePart(ctx, "INBOX", uid, "7", func(Part) (io.Writer, error) { return io.Discard, nil }); !errors.Is(err, ErrNoMessage) {
		t.Errorf("WritePart(missing part) = %v, want ErrNoMessage", err)
	}
}
