package web

import (
	"bytes"
	"context"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	nethtml "golang.org/x/net/html"

	"github.com/postern/postern/mail"
)

// templateRows is the list's row markup as templates/mailbox.html had it before listrows.go: the reference that
// rowsHTML must reproduce byte for byte, so that html/template's contextual escaping decides what a hostile value
// becomes, not a hand-written escaper. Change it only together with rowsHTML.
const templateRows = `{{range .Rows}}
    <tr class="{{if not .Seen}}unread{{end}}{{if .Flagged}} flagged{{end}}" data-uid="{{.UID}}" id="m-{{.UID}}">
      <td class="sel">{{if not $.AllFolders}}<input type="checkbox" name="uids" value="{{.SelectValue}}" id="sel-{{.UID}}"{{if $.Flash.IsSelected .UID}} checked{{end}} aria-label="Select: {{if .Subject}}{{text .Subject}}{{else}}(no subject){{end}}{{if gt .Count 1}} ({{.Count}} messages){{end}}">{{end}}</td>
      <td class="from">{{if $.InSent}}<span class="visually-hidden">To: </span>{{end}}{{range $i, $p := people .Who true}}{{if $i}}, {{end}}<bdi title="{{$p.Email}}">{{if $p.Name}}{{$p.Name}}{{else}}{{$p.Email}}{{end}}</bdi>{{if $p.Warn}} <span class="spoof-flag" title="{{$p.Warn}}" role="img" aria-label="Warning: {{$p.Warn}}">⚠</span>{{end}}{{end}}</td>
      <td class="subject"><a href="{{.URL}}" class="open">{{if not .Seen}}<span class="visually-hidden">Unread: </span>{{end}}{{if gt .Count 1}}<span class="visually-hidden">Conversation of {{.Count}} messages{{if .Unread}}, {{.Unread}} unread{{end}}: </span>{{end}}{{if .Folder}}<span class="visually-hidden">In {{text .FolderLabel}}: </span>{{end}}{{if .Flagged}}<span class="flag" title="Flagged" aria-label="Flagged">★</span> {{end}}{{if .Subject}}{{isolate .Subject}}{{else}}<em>(no subject)</em>{{end}}{{if gt .Count 1}} <span class="count" title="{{.Count}} messages in this conversation{{if .Unread}}, {{.Unread}} unread{{end}}" aria-hidden="true">{{.Count}}</span>{{end}}</a>{{if .HasAttachment}} <svg class="clip" role="img" aria-label="Has attachments" viewBox="0 0 16 16" width="16" height="16" focusable="false"><title>Has attachments</title><path d="M10.5 4.5v6a2.5 2.5 0 0 1-5 0V4a1.75 1.75 0 0 1 3.5 0v6.25a.75.75 0 0 1-1.5 0V5" fill="none" stroke="currentColor" stroke-width="1.3" stroke-linecap="round" transform="rotate(35 8 8)"/></svg>{{end}}{{if .Folder}} <span class="folder-tag" aria-hidden="true">{{isolate .FolderLabel}}</span>{{end}}{{if .Snippet}}<span class="snippet">{{isolate .Snippet}}</span>{{end}}</td>
      <td class="date">{{$.Clock.List .Date}}</td>
    </tr>
    {{end}}`

var rowsTemplate = template.Must(template.New("rows").Funcs(template.FuncMap{"text": text, "isolate": isolate, "people": people}).
	Parse(`<table><tbody>` + templateRows + `</tbody></table>`))

// viaTemplate renders p's rows with the reference template.
func viaTemplate(t testing.TB, p *mailboxPage) string {
	t.Helper()
	var buf bytes.Buffer
	if err := rowsTemplate.Execute(&buf, p); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(strings.TrimPrefix(buf.String(), "<table><tbody>"), "</tbody></table>")
}

// hostile are values a sender, or whoever named a folder, controls: markup, attribute break-outs, entities, '+'
// (UTF-7), NUL, bidi controls and invisibles, invalid UTF-8, noncharacters, script URLs, emoji with joiners.
var hostile = []string{
	"",
	"Plain subject",
	"<script>alert(1)</script>",
	`"><img src=x onerror=alert(1)>`,
	`' onmouseover='alert(1)' x='`,
	"a+b &amp; c & d < e > f",
	"+ADw-script+AD4-alert(1)+ADw-/script+AD4-",
	"nul\x00byte",
	"Invoice \u202efdp.exe",
	"Support\u2067\u200b Team\u2069 \u2066x\u2069 \u200e\u200f\u061c\ufeff\u2060",
	"bad \xff\xfe utf-8 \xc3",
	"nonchar \ufdd0 \uffff end",
	"javascript:alert(1)",
	"👩\u200d💻 team · שלום · مرحبا",
	"line\nbreak\rand\ttab\x1b[2J",
	"{{.UID}} {{template}}",
	"</bdi></td></tr><tr><td>",
}

// hostileAddrs are senders with hostile names and addresses, including ones people flags.
var hostileAddrs = []mail.Address{
	{Name: "<b>Bold</b> & co", Email: "bold@example.test"},
	{Name: `"Admin <admin@postern.example>"`, Email: "mallory@evil.example"},
	{Name: "Security team, bank.com", Email: "alerts@evil-bank.net"},
	{Name: "PayPal", Email: "service@p\u0430ypal.com"},
	{Name: "", Email: `"quoted\"local"@example.test`},
	{Name: "\u202emoc.knab", Email: "x'y+z@example.test"},
	{Name: "bob@example.test", Email: "bob@example.test"},
	{Name: "Ünïcödé", Email: "u@bücher.example"},
}

// hostileURLs are hrefs as the handler builds them from hostile folder names, and some it never builds, so that the
// URL context's filter and normaliser are compared too.
var hostileURLs = []string{
	messagePath("INBOX", 7),
	messagePath(`A&B <x> "q" 'y' (z) +1 %41 %zz ü`, 8),
	conversationPath("Ordner/Unterordner", 9) + "#c-10",
	"/compose?draft=11",
	"javascript:alert(1)",
	"JAVASCRIPT:alert(1)",
	"data:text/html,<script>",
	"https://example.test/a b",
	"mailto:x@example.test",
	"/ok:colon/after/slash",
	"%",
	"/%4",
}

// hostileRows mixes every hostile value into every field and every flag combination the row markup branches on.
func hostileRows() []listRow {
	var rows []listRow
	for i := range 3 * len(hostile) {
		h := func(k int) string { return hostile[(i+k)%len(hostile)] }
		r := listRow{
			Summary: mail.Summary{
				UID: uint32(100 + i), Subject: h(0), Snippet: h(1),
				Date: time.Date(2026, 12, 5-i%9, 10, i%60, 0, 0, time.UTC),
				Seen: i%2 == 0, Flagged: i%3 == 0, HasAttachment: i%4 == 1,
			},
			URL:   hostileURLs[i%len(hostileURLs)],
			Count: []int{0, 1, 2, 12}[i%4],
		}
		if r.Count > 1 {
			r.Unread = i % 3
			r.UIDs = "1,2,3"
		}
		if i%5 == 2 {
			r.Folder, r.FolderLabel = h(2), boxLabel(h(2))
		}
		for k := range i % 4 {
			r.Who = append(r.Who, hostileAddrs[(i+k)%len(hostileAddrs)])
		}
		r.Who = append(r.Who, mail.Address{Name: h(3), Email: h(4)})
		rows = append(rows, r)
	}
	if i := len(rows) - 1; i >= 0 {
		rows[i].Date = time.Time{} // no date at all
	}
	return rows
}

// TestListRowsMatchTemplate: the rows written in Go are byte for byte what html/template made of the same rows, for
// hostile values in every field, in every kind of page (plain, Sent, search of all folders, after an action).
func TestListRowsMatchTemplate(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tz database:", err)
	}
	clk := clock{loc: berlin, now: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		name string
		page mailboxPage
	}{
		{"inbox", mailboxPage{Box: "INBOX"}},
		{"sent", mailboxPage{Box: "Sent", Special: mail.SpecialSent}},
		{"all folders", mailboxPage{Box: "INBOX", AllFolders: true}},
		{"after an action", mailboxPage{Box: "INBOX", pageBase: pageBase{Flash: &flash{Selected: []uint32{101, 104, 140}}}}},
		{"empty", mailboxPage{Box: "INBOX"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.page
			p.Clock = clk
			if tc.name != "empty" {
				p.Rows = hostileRows()
			}
			want := viaTemplate(t, &p)
			got := string(p.rowsHTML())
			if got != want {
				t.Fatalf("rowsHTML differs from the template at byte %d:\ngot  …%s\nwant …%s", firstDiff(got, want), around(got, firstDiff(got, want)), around(want, firstDiff(got, want)))
			}
			if tc.name != "empty" && !strings.Contains(want, "#ZgotmplZ") {
				t.Error("the corpus no longer exercises the URL filter")
			}
		})
	}
}

// FuzzListRowsMatchTemplate is TestListRowsMatchTemplate for arbitrary values: go test -fuzz FuzzListRowsMatchTemplate ./web/.
func FuzzListRowsMatchTemplate(f *testing.F) {
	for i, h := range hostile {
		f.Add(h, hostile[(i+1)%len(hostile)], hostile[(i+2)%len(hostile)], hostileURLs[i%len(hostileURLs)])
	}
	f.Fuzz(func(t *testing.T, subject, name, email, url string) {
		for _, all := range []bool{false, true} {
			p := mailboxPage{Box: "INBOX", AllFolders: all, Rows: []listRow{{
				Summary: mail.Summary{UID: 1, Subject: subject, Snippet: name, Date: time.Unix(1e9, 0)},
				URL:     url, Who: []mail.Address{{Name: name, Email: email}, {Email: subject}},
				Count: 2, UIDs: email, Folder: subject, FolderLabel: email,
			}}}
			if got, want := string(p.rowsHTML()), viaTemplate(t, &p); got != want {
				t.Fatalf("rowsHTML = \n%s\nwant\n%s", got, want)
			}
		}
	})
}

func firstDiff(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func around(s string, i int) string {
	return s[max(0, i-80):min(len(s), i+80)]
}

// BenchmarkListRows compares the 50 rows of BenchmarkInboxPage rendered by the former template and by rowsHTML.
func BenchmarkListRows(b *testing.B) {
	p := mailboxPage{Box: "Big"}
	for i := range 50 {
		n := 10000 - i
		p.Rows = append(p.Rows, listRow{
			Summary: mail.Summary{UID: uint32(n), Subject: "Message number " + strconv.Itoa(n), Snippet: "Body of message " + strconv.Itoa(n) + ".",
				Date: time.Date(2026, 11, 2, 10, n%60, 0, 0, time.UTC), Seen: i%3 != 0},
			URL: messagePath("Big", uint32(n)), Who: []mail.Address{{Name: "Sender " + strconv.Itoa(n), Email: "sender" + strconv.Itoa(n) + "@example.test"}},
		})
	}
	b.Run("template", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			viaTemplate(b, &p)
		}
	})
	b.Run("go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = p.rowsHTML()
		}
	})
}

// TestListRowsAreInert: hostile subjects, sender names and addresses, snippets and folder names, delivered through
// the dev mail server, reach the list page (a folder, and a search of all folders, which names the folder) as text:
// the row holds only the list's own elements and attributes, the text reads as sent minus bidi controls and
// invisibles, and no raw markup from the message is in the page.
func TestListRowsAreInert(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	const box = `Q&A <b>x</b> "y" 'z' +1`
	u.imap(t, func(ctx context.Context, ms *mail.Session) error { return ms.CreateMailbox(ctx, box) })
	const (
		subject = `<script>alert(1)</script> "><img src=x onerror=alert(2)> ' onmouseover='alert(3) +ADw-x+AD4- & zz-inert`
		name    = `<img src=x onerror=alert(4)> "Boss" & co`
		snippet = `<b>bold</b><script>alert(5)</script> &amp; "q" 'a' +1`
	)
	from := b64(name+" \u202eevil\u2069") + ` <"x'<y>"@evil.example>`
	u.appendMsg(t, box, from, b64(subject+" \u202efdp.exe\u200b"), snippet)
	for _, url := range []string{mailboxURL(box), mailboxURL(box) + "?q=zz-inert", "/mail/INBOX?scope=all&q=zz-inert"} {
		r := u.b.get(s.ts.URL + url)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %d", url, r.status)
		}
		// Markup needs a raw "<"; attributes smuggled into a tag are looked for in the parsed row below.
		for _, raw := range []string{"<script>alert", "<img", "<b>", "\u202e", "\u200b"} {
			if strings.Contains(r.body, raw) {
				t.Errorf("GET %s: the page contains %q from the message", url, raw)
			}
		}
		doc, err := nethtml.Parse(strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		rows := findAll(doc, func(n *nethtml.Node) bool { return n.Data == "tr" && attr(n, "data-uid") != "" })
		if len(rows) != 1 {
			t.Fatalf("GET %s: %d rows, want 1", url, len(rows))
		}
		allowed := map[string]bool{"tr": true, "td": true, "input": true, "span": true, "bdi": true, "a": true, "em": true, "time": true}
		var texts []string
		for _, n := range findAll(rows[0], func(n *nethtml.Node) bool { return n.Type == nethtml.ElementNode }) {
			if !allowed[n.Data] {
				t.Errorf("GET %s: the row holds a <%s> element", url, n.Data)
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") || a.Key == "src" || a.Key == "style" {
					t.Errorf("GET %s: <%s> has the attribute %s=%q", url, n.Data, a.Key, a.Val)
				}
			}
			if n.Data == "bdi" {
				texts = append(texts, textOf(n))
			}
		}
		want := []string{subject + " fdp.exe", name + " evil"}
		if !strings.Contains(url, "q=") {
			want = append(want, snippet) // searches show no snippets
		}
		for _, want := range want {
			if !slices.Contains(texts, want) {
				t.Errorf("GET %s: no isolated text %q in the row; isolated texts: %q", url, want, texts)
			}
		}
		all := strings.Contains(url, "scope=all")
		if all && !slices.Contains(texts, box) {
			t.Errorf("GET %s: the row does not name the folder %q; isolated texts: %q", url, box, texts)
		}
		if a := findAll(rows[0], func(n *nethtml.Node) bool { return n.Data == "a" }); len(a) != 1 || !strings.HasPrefix(attr(a[0], "href"), "/msg/") {
			t.Errorf("GET %s: the row's link is not one /msg/ link: %d links", url, len(a))
		}
		if in := findAll(rows[0], func(n *nethtml.Node) bool { return n.Data == "input" }); !all && (len(in) != 1 || !strings.HasPrefix(attr(in[0], "aria-label"), "Select: "+subject)) {
			t.Errorf("GET %s: the checkbox's label does not read the subject", url)
		}
	}
}

func findAll(n *nethtml.Node, match func(*nethtml.Node) bool) []*nethtml.Node {
	var out []*nethtml.Node
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if match(c) {
			out = append(out, c)
		}
		out = append(out, findAll(c, match)...)
	}
	return out
}

func attr(n *nethtml.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func textOf(n *nethtml.Node) string {
	var b strings.Builder
	for _, c := range findAll(n, func(c *nethtml.Node) bool { return c.Type == nethtml.TextNode }) {
		b.WriteString(c.Data)
	}
	return b.String()
}
