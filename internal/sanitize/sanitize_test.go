package sanitize

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

func cidMap(m map[string]string) func(string) (string, bool) {
	return func(cid string) (string, bool) {
		u, ok := m[cid]
		return u, ok
	}
}

func TestHTML(t *testing.T) {
	t.Parallel()
	cids := cidMap(map[string]string{
		"badge@example.org": "/msg/INBOX/7/part/2",
		"dot@x":             "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
		"evil@x":            "//evil.example/x.png",
		"js@x":              "javascript:alert(1)",
		"svg@x":             "data:image/svg+xml;base64,PHN2Zz4=",
	})
	tests := []struct {
		name        string
		in          string
		remote      bool
		want        []string // substrings of the output
		notWant     []string
		wantBlocked int
	}{
		{name: "plain formatting survives", in: `<p>Hello <b>bold</b> <i>it</i></p><ul><li>one</li></ul>`,
			want: []string{"<p>Hello <b>bold</b> <i>it</i></p>", "<li>one</li>"}},
		{name: "script removed with its content", in: `<p>a</p><script>alert(1)</script><p>b</p>`,
			want: []string{"<p>a</p>", "<p>b</p>"}, notWant: []string{"script", "alert"}},
		{name: "event handlers removed", in: `<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" onerror="alert(1)"><div onclick="x()">d</div>`,
			want: []string{`<div>d</div>`, `src="data:image/gif;base64,R0lGODlhAQABAAAAACw="`}, notWant: []string{"onerror", "onclick"}},
		{name: "http link gets target and rel", in: `<a href="https://example.org/a?b=1&amp;c=2" target="_self" rel="opener">x</a>`,
			want: []string{`<a href="https://example.org/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">x</a>`}},
		{name: "mailto link kept", in: `<a href="mailto:bob@example.test">bob</a>`,
			want: []string{`href="mailto:bob@example.test"`, `rel="noopener noreferrer"`}},
		{name: "javascript link dropped", in: `<a href="java&#x09;script:alert(1)">x</a><a href=" JAVASCRIPT:alert(1)">y</a>`,
			want: []string{"x", "y"}, notWant: []string{"href", "javascript", "JAVASCRIPT"}},
		{name: "data link dropped", in: `<a href="data:text/html,<script>alert(1)</script>">x</a>`, notWant: []string{"href", "data:"}},
		{name: "relative and fragment links dropped", in: `<a href="/logout">x</a><a href="#top">y</a><a href="//evil.example/">z</a>`,
			notWant: []string{"href"}},
		{name: "tracking pixel blocked and counted", in: `<img src="https://t.example/p.gif" width="1" height="1"><img src="//t.example/q.gif">`,
			notWant: []string{"t.example"}, wantBlocked: 2},
		{name: "remote image kept when allowed", in: `<img src="https://t.example/p.gif"><img src="//t.example/q.gif">`, remote: true,
			want: []string{`src="https://t.example/p.gif"`, `src="https://t.example/q.gif"`}},
		{name: "cid rewritten to part URL", in: `<img src="cid:badge@example.org" alt="badge">`,
			want: []string{`<img src="/msg/INBOX/7/part/2" alt="badge"/>`}},
		{name: "cid with angle brackets and percent-encoding", in: `<img src="cid:%3Cbadge@example.org%3E">`,
			want: []string{`src="/msg/INBOX/7/part/2"`}},
		{name: "cid rewritten to data URL", in: `<img src="cid:dot@x">`,
			want: []string{`src="data:image/gif;base64,R0lGODlhAQABAAAAACw="`}},
		{name: "unknown cid dropped", in: `<img src="cid:nope@x" alt="n">`, want: []string{`<img alt="n"/>`}},
		{name: "CIDURL cannot smuggle remote, script or svg", in: `<img src="cid:evil@x"><img src="cid:js@x"><img src="cid:svg@x">`,
			notWant: []string{"evil.example", "javascript", "svg", "src="}},
		{name: "cid link dropped", in: `<a href="cid:badge@example.org">x</a>`, notWant: []string{"href"}},
		{name: "data svg image dropped", in: `<img src="data:image/svg+xml;base64,PHN2Zz4=">`, notWant: []string{"src="}},
		{name: "base meta link form dropped", in: `<base href="http://evil.example/"><meta http-equiv="refresh" content="0;url=http://evil.example/"><link rel="stylesheet" href="https://evil.example/s.css"><form action="http://evil.example/"><input name="p">text</form>`,
			want: []string{"text"}, notWant: []string{"base", "meta", "link", "form", "input", "evil"}, wantBlocked: 1},
		{name: "iframe object embed svg dropped", in: `<iframe src="https://evil.example/"></iframe><object data="x"></object><embed src="https://evil.example/e"><svg><image href="https://evil.example/i.png"/></svg><p>ok</p>`,
			want: []string{"<p>ok</p>"}, notWant: []string{"iframe", "object", "embed", "svg", "evil"}, wantBlocked: 3},
		{name: "style element dropped, remote counted", in: `<style>@import url(http://evil.example/a.css); body{background:url('https://evil.example/b.png')}</style><p>x</p>`,
			notWant: []string{"style", "evil"}, wantBlocked: 2},
		{name: "safe inline style kept", in: `<p style="color: red; font-weight: bold; position: fixed">x</p>`,
			want: []string{`color: red`, `font-weight: bold`}, notWant: []string{"position"}},
		{name: "style with url dropped whole and counted", in: `<p style="color: red; background: url(//evil.example/x.png)">x</p>`,
			want: []string{"<p>x</p>"}, notWant: []string{"evil", "url"}, wantBlocked: 1},
		{name: "style with escapes dropped", in: `<p style="background:u\72l(https://evil.example/e.png)">x</p>`,
			want: []string{"<p>x</p>"}, notWant: []string{"evil"}},
		{name: "expression dropped", in: `<p style="width: expression(alert(1))">x</p>`, want: []string{"<p>x</p>"}},
		{name: "srcset poster background removed and counted", in: `<img srcset="https://evil.example/a.png 2x" alt="a"><video poster="https://evil.example/p.png"></video><table background="http://evil.example/t.png"><tr><td>c</td></tr></table>`,
			notWant: []string{"evil", "srcset", "video"}, wantBlocked: 3},
		{name: "table background kept with remote", in: `<table background="http://evil.example/t.png"><tr><td>c</td></tr></table>`, remote: true,
			want: []string{`background="http://evil.example/t.png"`}},
		{name: "body attributes carried on a div", in: `<html><body bgcolor="#ffeeee" style="color: blue" onload="alert(1)"><p>x</p></body></html>`,
			want: []string{`<div bgcolor="#ffeeee" style="color: blue"><p>x</p></div>`}},
		{name: "comments and conditional comments dropped", in: `<!--[if mso]><script>alert(1)</script><![endif]--><p>x</p>`,
			want: []string{"<p>x</p>"}, notWant: []string{"<!--", "mso"}},
		{name: "unknown elements unwrapped", in: `<o:p>office</o:p><custom-el onclick="x">c</custom-el>`,
			want: []string{"office", "c"}, notWant: []string{"o:p", "custom", "onclick"}},
		{name: "text that looks like markup stays text", in: `<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>`,
			want: []string{"&lt;script&gt;"}},
		{name: "tables keep their layout attributes", in: `<table width="600" cellpadding="0" border="0" bgcolor="#ffffff"><tr><td align="center" valign="top" colspan="2">c</td></tr></table>`,
			want: []string{`width="600"`, `cellpadding="0"`, `bgcolor="#ffffff"`, `align="center"`, `valign="top"`, `colspan="2"`}},
		{name: "empty input", in: "", want: []string{""}},
		{name: "frameset document", in: `<frameset><frame src="https://evil.example/"></frameset>`, notWant: []string{"evil", "frame"}, wantBlocked: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := HTML(tt.in, Options{AllowRemote: tt.remote, CIDURL: cids})
			for _, w := range tt.want {
				if !strings.Contains(r.HTML, w) {
					t.Errorf("HTML(%q) = %q, want it to contain %q", tt.in, r.HTML, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(r.HTML, w) {
					t.Errorf("HTML(%q) = %q, want no %q", tt.in, r.HTML, w)
				}
			}
			if r.RemoteBlocked != tt.wantBlocked {
				t.Errorf("HTML(%q).RemoteBlocked = %d, want %d", tt.in, r.RemoteBlocked, tt.wantBlocked)
			}
			if err := checkSafe(r.HTML, tt.remote); err != nil {
				t.Errorf("HTML(%q) = %q: %v", tt.in, r.HTML, err)
			}
		})
	}
}

func TestNilCIDURL(t *testing.T) {
	t.Parallel()
	r := HTML(`<img src="cid:a@b" alt="x">`, Options{})
	if strings.Contains(r.HTML, "src") {
		t.Errorf("HTML with nil CIDURL = %q, want the cid reference dropped", r.HTML)
	}
}

// TestDeepNesting checks that a message nested far deeper than any real one neither crashes (a stack overflow would
// take the whole server down, not just this request) nor loses its text: nesting past maxDepth is flattened, and
// past what x/net/html parses (512 open elements) the message is shown as text only.
func TestDeepNesting(t *testing.T) {
	t.Parallel()
	for _, n := range []int{maxDepth + 50, 200_000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			in := strings.Repeat("<div><b>", n/2) + "deep text<script>alert(1)</script><img src=x onerror=alert(2)>" + strings.Repeat("</b></div>", n/2)
			r := HTML(in, Options{})
			if !strings.Contains(r.HTML, "deep text") {
				t.Error("the text of deeply nested markup was lost")
			}
			if strings.Contains(r.HTML, "alert") {
				t.Error("script inside deeply nested markup survived")
			}
			if d := strings.Count(r.HTML, "<div"); d > maxDepth+2 {
				t.Errorf("output nests %d divs, want at most %d", d, maxDepth+2)
			}
			if err := checkSafe(r.HTML, false); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestHostileCorpus runs every message of testdata/hostile through HTML: each text/html part found by a lenient
// MIME walk, and the whole raw message as if it were HTML (what a broken message might be taken for). Every output
// must pass checkSafe, with and without remote content. A message may pin its blocked count with an
// X-Postern-Test-Blocked header.
func TestHostileCorpus(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "hostile", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("hostile corpus has %d messages, want at least 15", len(files))
	}
	cids := func(cid string) (string, bool) { return "/msg/INBOX/1/part/2", true }
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			parts, blockedWant := htmlParts(t, raw)
			parts = append(parts, string(raw))
			for i, p := range parts {
				for _, remote := range []bool{false, true} {
					r := HTML(p, Options{AllowRemote: remote, CIDURL: cids})
					if err := checkSafe(r.HTML, remote); err != nil {
						t.Errorf("part %d (remote=%v): %v\noutput: %s", i, remote, err, r.HTML)
					}
					// The corpus's payloads may survive as text (escaped, harmless), never in an attribute.
					for _, v := range attrValues(r.HTML) {
						low := strings.ToLower(v)
						if strings.Contains(low, "pwned") || strings.Contains(low, "alert(") || (!remote && strings.Contains(low, "evil.example")) {
							t.Errorf("part %d (remote=%v): attribute value %q survived:\n%s", i, remote, v, r.HTML)
						}
					}
					if i == 0 && !remote && blockedWant >= 0 && r.RemoteBlocked != blockedWant {
						t.Errorf("RemoteBlocked = %d, want %d", r.RemoteBlocked, blockedWant)
					}
				}
			}
		})
	}
}

func attrValues(out string) []string {
	var vals []string
	z := html.NewTokenizer(strings.NewReader(out))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		for _, a := range z.Token().Attr {
			vals = append(vals, a.Val)
		}
	}
	return vals
}

// htmlParts returns the decoded text/html parts of a message, leniently: a part that does not decode is returned as
// it stands. blocked is the X-Postern-Test-Blocked header, or -1.
func htmlParts(t *testing.T, raw []byte) (parts []string, blocked int) {
	t.Helper()
	blocked = -1
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, blocked
	}
	if v := m.Header.Get("X-Postern-Test-Blocked"); v != "" {
		blocked, _ = strconv.Atoi(v)
	}
	body, _ := io.ReadAll(m.Body)
	walkMIME(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), body, &parts, 0)
	return parts, blocked
}

func walkMIME(ctype, cte string, body []byte, out *[]string, depth int) {
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil || depth > 5 {
		return
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(p)
			walkMIME(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), b, out, depth+1)
		}
	}
	if mt != "text/html" {
		return
	}
	switch strings.ToLower(cte) {
	case "base64":
		if d, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.ReplaceAll(body, []byte("\n"), nil)))); err == nil {
			body = d
		}
	case "quoted-printable":
		if d, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body))); err == nil {
			body = d
		}
	}
	*out = append(*out, string(body))
}

// checkSafe asserts the invariants of HTML's output, as the browser will see it: no script element, no other
// element outside the allowlist, no event handler attribute, no script or data URL (except raster data: images in
// <img src>), links only to http, https and mailto, and, unless remote, nothing that loads from another host.
// It looks at the output twice: as a token stream and as the tree the HTML5 parser builds in a body context, which
// is where mutation XSS (markup that changes meaning when parsed again) would show.
func checkSafe(out string, remote bool) error {
	if strings.Contains(strings.ToLower(out), "<script") {
		return fmt.Errorf("output contains <script")
	}
	z := html.NewTokenizer(strings.NewReader(out))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		if err := checkElement(tok.Data, tok.Attr, remote); err != nil {
			return fmt.Errorf("token stream: %w", err)
		}
	}
	nodes, err := html.ParseFragment(strings.NewReader(out), &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body})
	if err != nil {
		return err
	}
	var walk func(*html.Node) error
	walk = func(n *html.Node) error {
		if n.Type == html.ElementNode {
			if n.Namespace != "" {
				return fmt.Errorf("parsed tree: foreign element %s:%s", n.Namespace, n.Data)
			}
			if err := checkElement(n.Data, n.Attr, remote); err != nil {
				return fmt.Errorf("parsed tree: %w", err)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range nodes {
		if err := walk(n); err != nil {
			return err
		}
	}
	return nil
}

func checkElement(name string, attrs []html.Attribute, remote bool) error {
	if !slices.Contains(allowedElements, name) {
		return fmt.Errorf("element <%s> is not on the allowlist", name)
	}
	for _, a := range attrs {
		key := strings.ToLower(a.Key)
		v, _ := cleanURL(a.Val)
		low := strings.ToLower(v)
		switch {
		case strings.HasPrefix(key, "on"):
			return fmt.Errorf("<%s %s=...>: event handler", name, key)
		case strings.Contains(low, "javascript:") || strings.Contains(low, "vbscript:"):
			return fmt.Errorf("<%s %s=%q>: script URL", name, key, a.Val)
		case key == "style" && (strings.Contains(low, "url(") || strings.Contains(low, "expression") || strings.Contains(low, "@import")):
			return fmt.Errorf("<%s style=%q>: style that can fetch or run", name, a.Val)
		case key == "href":
			if name != "a" || !link.MatchString(a.Val) {
				return fmt.Errorf("<%s href=%q>: not an http, https or mailto link", name, a.Val)
			}
		case key == "src":
			if name != "img" {
				return fmt.Errorf("<%s src>: only images have a src", name)
			}
			ok := localOrData.MatchString(a.Val) || (remote && strings.HasPrefix(low, "http"))
			if !ok || (strings.HasPrefix(low, "data:") && !dataImage.MatchString(a.Val)) {
				return fmt.Errorf("<img src=%q>: not a part URL, raster data: image or allowed remote image", a.Val)
			}
		case strings.HasPrefix(low, "data:"):
			return fmt.Errorf("<%s %s=%q>: data URL", name, key, a.Val)
		case key == "srcset" || key == "poster" || key == "action" || key == "formaction" || key == "data":
			return fmt.Errorf("<%s %s>: attribute that loads or submits", name, key)
		case key == "background" && !remote:
			return fmt.Errorf("<%s background=%q> without remote content", name, a.Val)
		}
	}
	return nil
}

// FuzzHTML feeds arbitrary markup to HTML and checks its invariants (checkSafe). Seeds: the table tests' inputs and
// the hostile corpus. Run: go test -fuzz=FuzzHTML ./internal/sanitize/
func FuzzHTML(f *testing.F) {
	for _, s := range []string{
		`<p>hi</p>`, `<script>alert(1)</script>`, `<img src=x onerror=alert(1)>`, `<a href="javascript:alert(1)">x</a>`,
		`<svg><script>alert(1)</script></svg>`, `<style>@import url(http://e/)</style>`, `<img src="cid:a@b">`,
		`<img src="//e/p.gif">`, `<a href="jav&#x09;ascript:x">`, `<math><mi><table><mglyph><style><!--</style><img title="--&gt;&lt;/mglyph&gt;&lt;img&Tab;src=1&Tab;onerror=alert(1)&gt;">`,
		`<noscript><p title="</noscript><img src=x onerror=alert(1)>">`, `<p style="background:url(//e/x)">`,
		`<table background="http://e/b"><tr><td>x`, `<img srcset="http://e/a 1x">`, `<base href="http://e/"><img src="a">`,
	} {
		f.Add(s, false)
	}
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "hostile", "*.eml"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(string(b), false)
		}
	}
	cids := func(cid string) (string, bool) {
		switch {
		case strings.HasPrefix(cid, "d"):
			return "data:image/png;base64,iVBORw0KGgo=", true
		case strings.HasPrefix(cid, "x"):
			return cid, true // hostile CIDURL results must be refused too
		}
		return "/msg/INBOX/1/part/" + segment(cid), true
	}
	f.Fuzz(func(t *testing.T, in string, remote bool) {
		r := HTML(in, Options{AllowRemote: remote, CIDURL: cids})
		if err := checkSafe(r.HTML, remote); err != nil {
			t.Fatalf("HTML(%q) = %q: %v", in, r.HTML, err)
		}
		if r.RemoteBlocked < 0 {
			t.Fatalf("RemoteBlocked = %d", r.RemoteBlocked)
		}
	})
}

// segment makes a fuzzer-chosen cid safe to use as a path segment the way the web layer does.
func segment(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestLayout(t *testing.T) {
	invoice := `<p>Hello,</p><p>please find our invoice attached.</p><p>Kind regards,<br>ACME</p>`
	long := "<p>" + strings.Repeat("word ", 2000) + "</p>"
	tests := []struct {
		name           string
		in             string
		width          int
		atLeast, below int
		colored        bool
	}{
		// Three short paragraphs: four lines, three gaps and the padding, far from the old 600 px slab.
		{"three-line invoice", invoice, 900, 4 * lineHeight, 250, false},
		{"three-line invoice, narrow", invoice, 320, 4 * lineHeight, 300, false},
		// 10,000 characters at about 115 a line at 900 px: some 87 lines; at 320 px many more.
		{"long paragraph", long, 900, 80 * lineHeight, 110 * lineHeight, false},
		{"long paragraph, narrow", long, 320, 250 * lineHeight, maxHeight + 1, false},
		{"image with height", `<p>x</p><img src="data:image/png;base64,iVBORw0KGgo=" width="600" height="400">`, 900, 400, 520, false},
		// max-width: 100% scales the image down to the frame, and its height with it.
		{"image scaled down", `<img src="data:image/png;base64,iVBORw0KGgo=" width="1200" height="800">`, 632, 400, 520, false},
		{"image without size", `<img src="data:image/png;base64,iVBORw0KGgo=">`, 900, imageAssume, imageAssume + 120, false},
		{"empty", ``, 900, minHeight, minHeight + 1, false},
		{"huge", strings.Repeat("<p>x</p>", 5000), 900, maxHeight, maxHeight + 1, false},
		{"bgcolor", `<table bgcolor="#ffeecc"><tr><td>x</td></tr></table>`, 900, minHeight, 200, true},
		{"font color", `<font color="red">x</font>`, 900, minHeight, 200, true},
		{"style colour", `<div style="color: #333">x</div>`, 900, minHeight, 200, true},
		{"style background", `<div style="background-color: #fff">x</div>`, 900, minHeight, 200, true},
		{"body bgcolor", `<body bgcolor="#000"><p>x</p></body>`, 900, minHeight, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := HTML(tt.in, Options{CIDURL: func(string) (string, bool) { return "", false }})
			h := res.Layout.HeightAt(tt.width)
			if h < tt.atLeast || h >= tt.below {
				t.Errorf("HeightAt(%d) = %d, want in [%d, %d); layout %+v", tt.width, h, tt.atLeast, tt.below, res.Layout)
			}
			if res.Layout.Colored != tt.colored {
				t.Errorf("Colored = %v, want %v", res.Layout.Colored, tt.colored)
			}
		})
	}
	// Narrower frames are never estimated shorter (the page script relies on it to interpolate).
	res := HTML(long+invoice, Options{})
	for w := 300; w < 1400; w += 100 {
		if a, b := res.Layout.HeightAt(w), res.Layout.HeightAt(w+100); a < b {
			t.Errorf("HeightAt(%d) = %d < HeightAt(%d) = %d", w, a, w+100, b)
		}
	}
}
