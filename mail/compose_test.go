package mail

import (
	"bytes"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/mailserver"
)

var buildTime = time.Date(2026, 11, 20, 14, 30, 0, 0, time.FixedZone("CET", 3600))

func TestBuildRoundTrip(t *testing.T) {
	pdf := []byte("%PDF-1.4\n" + strings.Repeat("\x00\xff binary ", 200))
	d := Draft{
		From:       Address{"Alice Ærø", alice},
		To:         []Address{{"Bob Lindqvist", "bob@example.org"}, {"", "dave@example.org"}},
		Cc:         []Address{{"山田 太郎", "taro.yamada@example.jp"}},
		Bcc:        []Address{{"Secret Sam", "sam@example.org"}},
		Subject:    "Grüße – Übersicht für Q4 und ein sehr langer Betreff, der gefaltet werden muss, weil er lang ist",
		Text:       "Hallo Bob,\n\nanbei die Übersicht.\n=3D looks like QP but is not.\nA line that is quite long and goes on and on and on and on and on and on and on and on and on.\n",
		InReplyTo:  "q4-uebersicht@example.de",
		References: []string{"root@example.de", "q4-uebersicht@example.de"},
		Attachments: []Attachment{
			{Filename: "Übersicht März.pdf", ContentType: "application/pdf", Data: pdf},
			{Filename: "notes.txt", ContentType: "text/plain; charset=utf-8", Data: []byte("plain notes\n")},
			{Filename: "data.bin", ContentType: "not a type", Data: []byte{1, 2, 3}},
		},
	}
	raw, err := d.Build(buildTime, "postern.example.test")
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	head := string(raw[:bytes.Index(raw, []byte("\r\n\r\n"))])
	for _, re := range []string{
		`(?m)^Date: Fri, 20 Nov 2026 14:30:00 \+0100\r?$`,
		`(?m)^Message-Id: <[a-z2-7]{26}@postern\.example\.test>\r$`,
		`(?m)^Mime-Version: 1\.0\r$`,
		`(?m)^Content-Type: multipart/mixed;\s+boundary=`,
		`(?m)^In-Reply-To: <q4-uebersicht@example\.de>\r$`,
		`(?m)^References: <root@example\.de> <q4-uebersicht@example\.de>\r$`,
	} {
		if !regexp.MustCompile("(?i)" + re).MatchString(head) {
			t.Errorf("header does not match %s:\n%s", re, head)
		}
	}
	if bytes.Contains(raw, []byte("sam@example.org")) || bytes.Contains(raw, []byte("Secret Sam")) || regexp.MustCompile(`(?im)^bcc:`).Match(raw) {
		// (Not any "bcc": the random Message-ID and boundary contain it now and then.)
		t.Error("Bcc written into the message")
	}
	for i, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 || strings.ContainsRune(line, '\n') {
			t.Fatalf("line %d is %d bytes or holds a bare LF (RFC 5322 section 2.1.1)", i, len(line))
		}
		if i < strings.Count(head, "\r\n")+1 && strings.ContainsFunc(line, func(r rune) bool { return r > 127 }) {
			t.Errorf("non-ASCII header line %q", line)
		}
	}
	if !bytes.Contains(raw, []byte(`filename*=utf-8''%C3%9Cbersicht%20M%C3%A4rz.pdf`)) {
		t.Errorf("attachment filename is not RFC 2231 encoded:\n%s", raw)
	}
	if got := d.Recipients(); !slices.Equal(got, []string{"bob@example.org", "dave@example.org", "taro.yamada@example.jp", "sam@example.org"}) {
		t.Errorf("Recipients() = %v", got)
	}

	check := func(t *testing.T, m *Message, data func(Part) []byte) {
		t.Helper()
		if m.Malformed || m.Subject != d.Subject || m.Text != d.Text || m.HTML != "" {
			t.Errorf("parsed: malformed %v, subject %q, text %q", m.Malformed, m.Subject, m.Text)
		}
		if !slices.Equal(m.From, []Address{d.From}) || !slices.Equal(m.To, d.To) || !slices.Equal(m.Cc, d.Cc) {
			t.Errorf("parsed addresses: From %v To %v Cc %v", m.From, m.To, m.Cc)
		}
		if m.InReplyTo != d.InReplyTo || !slices.Equal(m.References, d.References) || !m.Date.Equal(buildTime) {
			t.Errorf("parsed: In-Reply-To %q References %q Date %v", m.InReplyTo, m.References, m.Date)
		}
		want := []Part{
			{Path: "2", ContentType: "application/pdf", Filename: "Übersicht März.pdf", Disposition: "attachment", Size: int64(len(pdf))},
			{Path: "3", ContentType: "text/plain", Filename: "notes.txt", Disposition: "attachment", Size: 12},
			{Path: "4", ContentType: "application/octet-stream", Filename: "data.bin", Disposition: "attachment", Size: 3},
		}
		if !slices.Equal(m.Attachments, want) {
			t.Fatalf("Attachments = %+v, want %+v", m.Attachments, want)
		}
		for i, p := range want {
			if got := data(p); !bytes.Equal(got, d.Attachments[i].Data) {
				t.Errorf("attachment %s content differs", p.Path)
			}
		}
	}
	t.Run("parse", func(t *testing.T) {
		w := &walker{keep: func(string) bool { return true }}
		e, _ := messageRead(raw)
		w.walk(e, nil, 0, false)
		check(t, parseMessage(raw), func(p Part) []byte { return w.kept[p.Path] })
	})
	t.Run("through the server", func(t *testing.T) {
		_, s := seededSession(t, mailserver.Options{})
		ctx := ctxT(t)
		if err := s.Append(ctx, "Sent", []Flag{FlagSeen}, raw); err != nil {
			t.Fatal(err)
		}
		p, err := s.List(ctx, "Sent", 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		uid := p.Summaries[0].UID
		m, err := s.Message(ctx, "Sent", uid)
		if err != nil {
			t.Fatal(err)
		}
		check(t, m, func(part Part) []byte {
			got, data, err := s.Part(ctx, "Sent", uid, part.Path)
			if err != nil || got != part {
				t.Errorf("Part(%s) = %+v, %v; want %+v", part.Path, got, err, part)
			}
			return data
		})
	})
}

func TestBuildSimpleAndForwarded(t *testing.T) {
	d := Draft{From: Address{"", alice}, To: []Address{{"", "bob@example.org"}}, Subject: "Plain", Text: "Just text.\r\n"}
	raw, err := d.Build(buildTime, "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?mi)^Content-Type: text/plain; charset=utf-8\r$`).Match(raw) || bytes.Contains(raw, []byte("multipart")) {
		t.Errorf("simple draft is not a single text/plain part:\n%s", raw)
	}
	if m := parseMessage(raw); m.Text != "Just text.\n" || len(m.Attachments) != 0 {
		t.Errorf("parsed simple draft: %+v", m)
	}

	inner := "From: Carol <carol@example.org>\nSubject: =?utf-8?q?Protokoll_M=C3=A4rz?=\nMessage-ID: <inner@example.org>\n\nBody with bare LF and é.\n"
	d.Forwarded = []byte(inner)
	raw, err = d.Build(buildTime, "example.test")
	if err != nil {
		t.Fatal(err)
	}
	m := parseMessage(raw)
	want := []Part{{Path: "2", ContentType: "message/rfc822", Filename: "Protokoll März.eml", Disposition: "attachment", Size: int64(len(inner) + strings.Count(inner, "\n"))}}
	if !slices.Equal(m.Attachments, want) {
		t.Errorf("Attachments = %+v, want %+v", m.Attachments, want)
	}
	if !regexp.MustCompile(`(?mi)^Content-Transfer-Encoding: 8bit\r$`).Match(raw) || bytes.Contains(raw, []byte("\r\nQm9keSB3")) {
		t.Errorf("message/rfc822 must be 7bit or 8bit, not base64 (RFC 2046 section 5.2.1):\n%s", raw)
	}
}

func TestBuildHeaderInjection(t *testing.T) {
	base := func() Draft {
		return Draft{
			From:        Address{"Alice", alice},
			To:          []Address{{"Bob", "bob@example.org"}},
			Cc:          []Address{{"Carol", "carol@example.org"}},
			Bcc:         []Address{{"Dave", "dave@example.org"}},
			Subject:     "Hello",
			InReplyTo:   "a@example.org",
			References:  []string{"a@example.org"},
			Attachments: []Attachment{{Filename: "a.txt", ContentType: "text/plain", Data: []byte("a")}},
		}
	}
	fields := map[string]func(d *Draft, v string){
		"From name":               func(d *Draft, v string) { d.From.Name = v },
		"From address":            func(d *Draft, v string) { d.From.Email = v },
		"To name":                 func(d *Draft, v string) { d.To[0].Name = v },
		"To address":              func(d *Draft, v string) { d.To[0].Email = v },
		"Cc name":                 func(d *Draft, v string) { d.Cc[0].Name = v },
		"Cc address":              func(d *Draft, v string) { d.Cc[0].Email = v },
		"Bcc name":                func(d *Draft, v string) { d.Bcc[0].Name = v },
		"Bcc address":             func(d *Draft, v string) { d.Bcc[0].Email = v },
		"Subject":                 func(d *Draft, v string) { d.Subject = v },
		"In-Reply-To":             func(d *Draft, v string) { d.InReplyTo = v },
		"References":              func(d *Draft, v string) { d.References = []string{v} },
		"attachment filename":     func(d *Draft, v string) { d.Attachments[0].Filename = v },
		"attachment content type": func(d *Draft, v string) { d.Attachments[0].ContentType = v },
	}
	values := []string{
		"x\r\nBcc: victim@example.org",
		"x\nBcc: victim@example.org",
		"x\rBcc: victim@example.org",
		"x\r\n",
		"\n",
		"\r",
		"x\r\n\r\nbody",
		"x\n X-Folded: continuation",
	}
	for name, set := range fields {
		for _, v := range values {
			t.Run(name+"/"+strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(v), func(t *testing.T) {
				d := base()
				set(&d, v)
				raw, err := d.Build(buildTime, "example.test")
				if !errors.Is(err, ErrHeaderInjection) {
					t.Errorf("Build() error = %v, want ErrHeaderInjection", err)
				}
				if raw != nil {
					t.Error("Build() returned a message")
				}
			})
		}
	}
	d := base()
	if _, err := d.Build(buildTime, "example.test\r\nX: y"); !errors.Is(err, ErrHeaderInjection) {
		t.Errorf("Build(domain with CRLF) error = %v, want ErrHeaderInjection", err)
	}
	if _, err := base().Build(buildTime, "example.test"); err != nil {
		t.Errorf("Build(valid) error = %v", err)
	}
}

func TestBuildInvalid(t *testing.T) {
	tests := map[string]func(d *Draft){
		"no From":              func(d *Draft) { d.From = Address{} },
		"From not an address":  func(d *Draft) { d.From.Email = "alice" },
		"To with display name": func(d *Draft) { d.To[0].Email = "Bob <bob@example.org>" },
		"To two addresses":     func(d *Draft) { d.To[0].Email = "bob@example.org, carol@example.org" },
		"Cc angle brackets":    func(d *Draft) { d.Cc = []Address{{"", "<carol@example.org>"}} },
		"message id spaces":    func(d *Draft) { d.InReplyTo = "a b@example.org" },
		"message id brackets":  func(d *Draft) { d.References = []string{"<a@example.org>"} },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			d := Draft{From: Address{"", alice}, To: []Address{{"", "bob@example.org"}}}
			mutate(&d)
			if _, err := d.Build(buildTime, "example.test"); err == nil || errors.Is(err, ErrHeaderInjection) {
				t.Errorf("Build() error = %v, want a validation error", err)
			}
		})
	}
	if _, err := (Draft{From: Address{"", alice}}).Build(buildTime, "bad domain"); err == nil {
		t.Error("Build(bad domain) succeeded")
	}
}

func TestParseAddressList(t *testing.T) {
	tests := []struct {
		in      string
		want    []Address
		wantErr string // substring; "" means success
	}{
		{"", nil, ""},
		{"  ", nil, ""},
		{"bob@example.org", []Address{{"", "bob@example.org"}}, ""},
		{`Bob <bob@example.org>, "Nguyen, Carol" <carol@example.org>; dave@example.org,`,
			[]Address{{"Bob", "bob@example.org"}, {"Nguyen, Carol", "carol@example.org"}, {"", "dave@example.org"}}, ""},
		{"=?utf-8?q?J=C3=BCrgen?= <j@example.de>", []Address{{"Jürgen", "j@example.de"}}, ""},
		{"Grete Müller <grete@example.de>", []Address{{"Grete Müller", "grete@example.de"}}, ""},
		{"bob@example.org, not an address, carol@example.org", nil, `"not an address"`},
		{"bob@example.org,,carol@", nil, `"carol@"`},
		{"bob@example.org\r\nBcc: x@example.org", nil, "CR or LF"},
	}
	for _, tt := range tests {
		got, err := ParseAddressList(tt.in)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ParseAddressList(%q) error = %v", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseAddressList(%q) error = %v, want one naming %s", tt.in, err, tt.wantErr)
		case !slices.Equal(got, tt.want):
			t.Errorf("ParseAddressList(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

var (
	me       = Address{"Alice Example", alice}
	bobA     = Address{"Bob", "bob@example.org"}
	carolA   = Address{"Carol", "carol@example.org"}
	daveA    = Address{"Dave", "dave@example.org"}
	original = &Message{
		Box: "INBOX", UID: 7,
		From:       []Address{bobA},
		To:         []Address{me, carolA},
		Cc:         []Address{daveA, {"Alice again", "ALICE@example.test"}, carolA},
		Subject:    "Plans",
		Date:       time.Date(2026, 11, 17, 9, 5, 0, 0, time.UTC),
		MessageID:  "plans-2@example.org",
		InReplyTo:  "plans-1@example.org",
		References: []string{"plans-0@example.org", "plans-1@example.org"},
		Text:       "Line one.\n\n> earlier quote\nLine three.\n",
		Attachments: []Part{
			{Path: "2", ContentType: "application/pdf", Filename: "plan.pdf", Disposition: "attachment"},
		},
	}
)

func TestReply(t *testing.T) {
	tests := []struct {
		name    string
		m       func(m *Message)
		all     bool
		to, cc  []Address
		subject string
	}{
		{"reply", nil, false, []Address{bobA}, nil, "Re: Plans"},
		{"reply all", nil, true, []Address{bobA}, []Address{carolA, daveA}, "Re: Plans"},
		{"reply-to wins", func(m *Message) { m.ReplyTo = []Address{{"List", "list@example.org"}} }, false, []Address{{"List", "list@example.org"}}, nil, "Re: Plans"},
		{"Re once", func(m *Message) { m.Subject = "RE: Plans" }, false, []Address{bobA}, nil, "RE: Plans"},
		{"empty subject", func(m *Message) { m.Subject = "" }, false, []Address{bobA}, nil, "Re:"},
		{"own message", func(m *Message) { m.From = []Address{me} }, true, []Address{carolA}, []Address{daveA}, "Re: Plans"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := *original
			if tt.m != nil {
				tt.m(&m)
			}
			d := Reply(&m, me, tt.all)
			if d.From != me || !slices.Equal(d.To, tt.to) || !slices.Equal(d.Cc, tt.cc) || d.Subject != tt.subject || d.Bcc != nil {
				t.Errorf("Reply() = From %v To %v Cc %v Subject %q; want To %v Cc %v Subject %q", d.From, d.To, d.Cc, d.Subject, tt.to, tt.cc, tt.subject)
			}
			if d.InReplyTo != "plans-2@example.org" || !slices.Equal(d.References, []string{"plans-0@example.org", "plans-1@example.org", "plans-2@example.org"}) {
				t.Errorf("Reply() In-Reply-To %q References %q", d.InReplyTo, d.References)
			}
			want := "\n\nOn Tue, 17 Nov 2026 at 09:05, " + addressList(m.From) + " wrote:\n> Line one.\n>\n>> earlier quote\n> Line three.\n"
			if d.Text != want {
				t.Errorf("Reply() Text = %q, want %q", d.Text, want)
			}
			if _, err := d.Build(buildTime, "example.test"); err != nil {
				t.Errorf("Build(reply) error = %v", err)
			}
		})
	}

	t.Run("references from In-Reply-To and trimmed", func(t *testing.T) {
		m := *original
		m.References = nil
		if d := Reply(&m, me, false); !slices.Equal(d.References, []string{"plans-1@example.org", "plans-2@example.org"}) {
			t.Errorf("References = %q", d.References)
		}
		for i := range 30 {
			m.References = append(m.References, strings.Repeat("x", i+1)+"@example.org")
		}
		d := Reply(&m, me, false)
		if len(d.References) != maxReferences || d.References[0] != "x@example.org" || d.References[maxReferences-1] != m.MessageID {
			t.Errorf("References = %q", d.References)
		}
	})
	t.Run("HTML-only original", func(t *testing.T) {
		m := *original
		m.Text = ""
		m.HTML = "<html><head><style>p{}</style><script>x()</script></head><body><p>Hello <b>there</b>,</p><p>second<br>line &amp; more</p></body></html>"
		d := Reply(&m, me, false)
		if !strings.HasSuffix(d.Text, "wrote:\n> Hello there,\n>\n> second\n> line & more\n") {
			t.Errorf("Reply(HTML) Text = %q", d.Text)
		}
	})
}

func TestForward(t *testing.T) {
	raw := []byte("From: Bob <bob@example.org>\r\nSubject: Plans\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nLine one.\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=plan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n")
	m := *original
	d := Forward(&m, me, raw, false)
	if d.Subject != "Fwd: Plans" || d.To != nil || d.InReplyTo != "" || d.Forwarded != nil {
		t.Errorf("Forward(inline) = %+v", d)
	}
	for _, want := range []string{"---------- Forwarded message ----------\nFrom: Bob <bob@example.org>\nDate: Tue, 17 Nov 2026 09:05:00 +0000\nSubject: Plans\nTo: Alice Example <alice@example.test>, Carol <carol@example.org>\nCc: ", "\n\nLine one.\n"} {
		if !strings.Contains(d.Text, want) {
			t.Errorf("Forward(inline) Text = %q, want it to contain %q", d.Text, want)
		}
	}
	if len(d.Attachments) != 1 || d.Attachments[0].Filename != "plan.pdf" || string(d.Attachments[0].Data) != "%PDF-1.4\n" {
		t.Errorf("Forward(inline) Attachments = %+v", d.Attachments)
	}
	m.Subject = "Fwd: Plans"
	d = Forward(&m, me, raw, true)
	if d.Subject != "Fwd: Plans" || !bytes.Equal(d.Forwarded, raw) || d.Text != "" || d.Attachments != nil {
		t.Errorf("Forward(attachment) = %+v", d)
	}
	d.To = []Address{carolA}
	built, err := d.Build(buildTime, "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := parseMessage(built); len(got.Attachments) != 1 || got.Attachments[0].Filename != "Plans.eml" {
		t.Errorf("built forward attachments = %+v", got.Attachments)
	}
}
