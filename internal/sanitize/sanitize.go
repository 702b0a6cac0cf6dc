// Package sanitize turns the HTML body of an untrusted mail message into HTML that is safe to show in Postern's
// message frame.
//
// # Security model
//
// Sanitising is the first of two walls, never the only one. The web layer serves the output of HTML as its own
// document, at its own URL, inside an <iframe sandbox> without allow-scripts and without allow-same-origin, under a
// Content-Security-Policy of default-src 'none' (the model of mox's webmail). If a trick gets past this package, the
// browser still runs no script and loads nothing that the frame's CSP does not name; if the browser had a hole in
// the sandbox, this package would still have removed the script. Each wall is written as if the other did not exist.
//
// HTML works in two passes:
//
//  1. A pass over the tree that golang.org/x/net/html builds, the same tree a browser builds (HTML5 parsing, so
//     mis-nested tags, entities and odd whitespace mean here what they mean in the frame). It drops whole subtrees
//     that are active or foreign content (script, style, iframe, object, embed, svg, math, template, form controls,
//     base, meta, link, head), every event handler and every attribute whose name it does not know as harmless,
//     rewrites cid: references (RFC 2392) to the URL that opts.CIDURL gives, removes every reference that would make
//     the browser fetch something from another host (a tracking pixel tells the sender when and where the mail was
//     read) unless opts.AllowRemote, and counts what it removed. URLs are checked after the clean-up a browser does
//     (tabs and newlines removed, control characters trimmed, entities already decoded), so "jav&#x09;ascript:" is
//     seen as what it is.
//  2. A bluemonday allowlist over the rendered result: only listed elements, attributes and inline style properties
//     survive, and URL attributes must parse and use http, https or mailto (data: only for raster images). This pass
//     knows nothing of the first: it is what makes a gap in the first pass harmless.
//
// Remote content: with AllowRemote the output keeps remote <img src> and the legacy background attribute of tables,
// and nothing else; CSS url(), srcset and video posters are removed either way. Postern never fetches remote content
// itself: "show remote content" only relaxes what the frame's browser may load.
package sanitize

import (
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Options says how to treat references out of the message.
type Options struct {
	// AllowRemote keeps remote images (http, https, protocol-relative src), which the browser then loads from the
	// sender's server. Off by default: remote images are how senders track reading.
	AllowRemote bool
	// CIDURL maps a Content-ID (without angle brackets, %-decoded) to the URL that serves that part: a same-origin
	// path ("/msg/INBOX/7/part/1.2") or a data:image/{png,gif,jpeg,webp};base64 URL. ok=false drops the reference.
	// A nil CIDURL drops every cid: reference.
	CIDURL func(cid string) (u string, ok bool)
}

// Result is the sanitised HTML and what was taken out.
type Result struct {
	// HTML is a fragment (the content of the message's body, wrapped in one div that carries the body's own
	// attributes) to be placed in a document of the caller's.
	HTML string
	// RemoteBlocked counts the remote references removed: each src, srcset, background, poster, data attribute,
	// each CSS url() or @import that pointed to another host.
	RemoteBlocked int
	// Layout describes the output for sizing the frame that shows it.
	Layout Layout
}

// maxDepth bounds the element nesting the first pass keeps. A hostile message of a few megabytes of "<div>" would
// otherwise nest millions deep, and the recursive walk and renderer could exhaust the goroutine stack, which crashes
// the whole process rather than failing the request. Deeper subtrees are flattened to their text.
const maxDepth = 200

// HTML sanitises in (the decoded text/html part of a message) for display in the sandboxed message frame.
func HTML(in string, opts Options) Result {
	doc, err := html.Parse(strings.NewReader(in))
	if err != nil {
		// x/net/html refuses documents nested deeper than 512 open elements (and would fail on a failing reader,
		// which a strings.Reader is not). No real message nests so deep: show its text only.
		out := textOnly(in)
		return Result{HTML: out, Layout: Layout{Blocks: []int{utf8.RuneCountInString(out)}}}
	}
	w := walker{opts: opts}
	w.clean(doc, 0)
	body := find(doc, atom.Body)
	if body == nil {
		// A frameset document has no body; its frames were dropped.
		return Result{RemoteBlocked: w.blocked}
	}
	// The body's own attributes (bgcolor, style) live on, on a div, since the fragment goes into our own body.
	body.Data, body.DataAtom = "div", atom.Div
	var b strings.Builder
	if err := html.Render(&b, body); err != nil {
		return Result{RemoteBlocked: w.blocked}
	}
	p := strictPolicy
	if opts.AllowRemote {
		p = remotePolicy
	}
	// Measured on the cleaned tree, before the second pass: that pass only removes, so the estimate leans high.
	return Result{HTML: p.Sanitize(b.String()), RemoteBlocked: w.blocked, Layout: layoutOf(body)}
}

type walker struct {
	opts    Options
	blocked int
}

// dropped elements lose their whole subtree: they are active content, foreign content (SVG can carry script, and
// <feImage> or <image> fetch remote images that no img-src check of ours would see), fetch resources, or submit
// data. The sandbox disables forms and scripts as well; this is the second wall.
var dropped = map[atom.Atom]bool{
	atom.Script: true, atom.Noscript: true, atom.Style: true, atom.Template: true,
	atom.Iframe: true, atom.Frame: true, atom.Frameset: true, atom.Noframes: true,
	atom.Object: true, atom.Embed: true, atom.Applet: true, atom.Param: true, atom.Noembed: true,
	atom.Svg: true, atom.Math: true, atom.Canvas: true,
	atom.Head: true, atom.Title: true, atom.Base: true, atom.Meta: true, atom.Link: true,
	atom.Input: true, atom.Button: true, atom.Select: true, atom.Textarea: true, atom.Option: true,
	atom.Optgroup: true, atom.Datalist: true, atom.Output: true, atom.Keygen: true,
	atom.Audio: true, atom.Video: true, atom.Source: true, atom.Track: true,
	atom.Dialog: true, atom.Xmp: true, atom.Plaintext: true,
}

// unwrapped elements go, their children stay: a form around a newsletter's content is usually layout.
var unwrapped = map[atom.Atom]bool{
	atom.Form: true, atom.Picture: true, atom.Label: true, atom.Fieldset: true, atom.Legend: true,
	atom.Html: true,
}

// clean sanitises the children of n in place.
func (w *walker) clean(n *html.Node, depth int) {
	for c := n.FirstChild; c != nil; {
		next := c.NextSibling
		switch c.Type {
		case html.TextNode:
		case html.ElementNode:
			switch {
			case c.Namespace != "" || dropped[c.DataAtom]:
				w.countRemote(c)
				n.RemoveChild(c)
			case depth >= maxDepth:
				w.countRemote(c)
				flatten(c)
			case unwrapped[c.DataAtom] || c.DataAtom == 0:
				// An unknown element (Outlook's <o:p>, vendor tags) is usually layout: keep its cleaned content.
				w.clean(c, depth+1)
				unwrap(c)
			default:
				w.cleanAttrs(c)
				w.clean(c, depth+1)
			}
		default:
			// Comments (conditional comments carry markup for old Outlook), doctypes and the like.
			n.RemoveChild(c)
		}
		c = next
	}
}

// unwrap replaces n with its children.
func unwrap(n *html.Node) {
	p := n.Parent
	for c := n.FirstChild; c != nil; {
		next := c.NextSibling
		n.RemoveChild(c)
		p.InsertBefore(c, n)
		c = next
	}
	p.RemoveChild(n)
}

// flatten replaces n with one text node of its text, without recursion.
func flatten(n *html.Node) {
	var b strings.Builder
	stack := []*html.Node{n}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x.Type == html.TextNode {
			b.WriteString(x.Data)
			continue
		}
		if x.Type == html.ElementNode && (dropped[x.DataAtom] || x.Namespace != "") {
			continue
		}
		for c := x.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, c)
		}
	}
	n.Parent.InsertBefore(&html.Node{Type: html.TextNode, Data: b.String()}, n)
	n.Parent.RemoveChild(n)
}

// countRemote counts the remote references in a subtree that is about to go (link stylesheets, style sheets, SVG
// images, video posters), without recursion.
func (w *walker) countRemote(n *html.Node) {
	stack := []*html.Node{n}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x.Type == html.ElementNode {
			for _, a := range x.Attr {
				if loads(x, a) && isRemote(a.Val) {
					w.blocked++
				}
				if strings.EqualFold(a.Key, "style") {
					w.blocked += countCSSRemote(a.Val)
				}
			}
			if x.DataAtom == atom.Style && x.Namespace == "" {
				for c := x.FirstChild; c != nil; c = c.NextSibling {
					if c.Type == html.TextNode {
						w.blocked += countCSSRemote(c.Data)
					}
				}
				continue
			}
		}
		for c := x.FirstChild; c != nil; c = c.NextSibling {
			stack = append(stack, c)
		}
	}
}

// loads reports whether attribute a of element n makes the browser fetch its value (as opposed to a link the user
// may follow).
func loads(n *html.Node, a html.Attribute) bool {
	switch strings.ToLower(a.Key) {
	case "src", "srcset", "background", "poster", "data", "lowsrc", "dynsrc", "imagesrcset":
		return true
	case "href":
		// <link href> (stylesheets, icons, prefetch) and SVG <image href>, <use href>, <feImage href> load; <a href>
		// does not.
		return n.DataAtom == atom.Link || n.Namespace != ""
	}
	return false
}

// cleanAttrs keeps the attributes that are harmless and rewrites the URL ones.
func (w *walker) cleanAttrs(n *html.Node) {
	out := n.Attr[:0]
	for _, a := range n.Attr {
		if a.Namespace != "" {
			continue
		}
		key := strings.ToLower(a.Key)
		switch {
		case strings.HasPrefix(key, "on"), key == "rel", key == "target", key == "formaction", key == "action":
			// Event handlers run script; rel and target are set below for links only.
			continue
		case key == "style":
			if v, ok := w.cleanStyle(a.Val); ok {
				out = append(out, html.Attribute{Key: key, Val: v})
			}
		case key == "href":
			if n.DataAtom == atom.A || n.DataAtom == atom.Area {
				if v, ok := linkURL(a.Val); ok {
					out = append(out, html.Attribute{Key: key, Val: v})
				}
			}
		case key == "src" && n.DataAtom == atom.Img:
			if v, ok := w.imageURL(a.Val); ok {
				out = append(out, html.Attribute{Key: key, Val: v})
			}
		case key == "background":
			if v, ok := cleanURL(a.Val); ok && isRemote(v) {
				if w.opts.AllowRemote {
					out = append(out, html.Attribute{Key: key, Val: absolute(v)})
				} else {
					w.blocked++
				}
			}
		case loads(n, a) || key == "ping" || key == "longdesc" || key == "usemap" || key == "cite" ||
			key == "manifest" || key == "codebase" || key == "archive" || key == "profile" || key == "xmlns":
			if loads(n, a) && isRemote(a.Val) {
				w.blocked++
			}
		default:
			out = append(out, html.Attribute{Key: key, Val: a.Val})
		}
	}
	n.Attr = out
	if n.DataAtom == atom.A && hasAttr(n, "href") {
		// Links open outside the frame (the sandbox allows popups, which escape the sandbox so that the site the user
		// visits works normally), with no window.opener and no Referer: the page that was opened learns neither the
		// message URL nor a handle on Postern's window.
		n.Attr = append(n.Attr, html.Attribute{Key: "target", Val: "_blank"}, html.Attribute{Key: "rel", Val: "noopener noreferrer"})
	}
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

// cleanURL applies the browser's own clean-up of a URL attribute (WHATWG URL parsing: leading and trailing C0
// controls and spaces trimmed, tabs and newlines removed anywhere), so that what we check is what the browser will
// use, and refuses what still contains control characters.
func cleanURL(v string) (string, bool) {
	v = strings.TrimFunc(v, func(r rune) bool { return r <= 0x20 })
	v = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(v)
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return "", false
		}
	}
	return v, v != ""
}

// scheme returns the lowercased scheme of a cleaned URL, or "" for a relative one.
func scheme(v string) string {
	i := strings.IndexAny(v, ":/?#\\")
	if i <= 0 || v[i] != ':' {
		return ""
	}
	return strings.ToLower(v[:i])
}

// isRemote reports whether the value of a URL attribute points to another host: http, https, or a
// protocol-relative URL ("//host", and "\\host" or "/\host", which browsers read the same way).
func isRemote(v string) bool {
	v, ok := cleanURL(v)
	if !ok {
		return false
	}
	switch scheme(v) {
	case "http", "https", "ftp", "ws", "wss":
		return true
	case "":
		return len(v) >= 2 && (v[0] == '/' || v[0] == '\\') && (v[1] == '/' || v[1] == '\\')
	}
	return false
}

// absolute turns a protocol-relative remote URL into an https one, so that the output never relies on "//".
func absolute(v string) string {
	if scheme(v) == "" {
		return "https://" + strings.TrimLeft(v, "/\\")
	}
	return v
}

// linkURL accepts only absolute http, https and mailto links: no javascript:, data:, vbscript:, no relative or
// fragment links (which would resolve against the frame's own URL on Postern's origin).
func linkURL(v string) (string, bool) {
	v, ok := cleanURL(v)
	if !ok {
		return "", false
	}
	switch scheme(v) {
	case "http", "https", "mailto":
	default:
		return "", false
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", false
	}
	if u.Scheme != "mailto" && u.Host == "" {
		return "", false
	}
	return u.String(), true
}

// dataImage matches the data: URLs an <img> may keep: raster types only (an SVG image cannot run script either,
// but there is no need to reason about it), base64.
var dataImage = regexp.MustCompile(`^data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/]*={0,2}$`)

// imageURL rewrites the src of an <img>.
func (w *walker) imageURL(v string) (string, bool) {
	v, ok := cleanURL(v)
	if !ok {
		return "", false
	}
	switch scheme(v) {
	case "cid":
		if w.opts.CIDURL == nil {
			return "", false
		}
		cid, err := url.PathUnescape(v[len("cid:"):])
		if err != nil {
			return "", false
		}
		u, ok := w.opts.CIDURL(strings.Trim(cid, "<>"))
		if !ok || !(isLocalPath(u) || dataImage.MatchString(u)) {
			return "", false
		}
		return u, true
	case "data":
		v = strings.Join(strings.Fields(v), "")
		if i := strings.Index(v, ";"); i > 0 {
			v = strings.ToLower(v[:i]) + v[i:]
		}
		if !dataImage.MatchString(v) {
			return "", false
		}
		return v, true
	}
	if isRemote(v) {
		if w.opts.AllowRemote {
			return absolute(v), true
		}
		w.blocked++
	}
	return "", false
}

// isLocalPath accepts a same-origin absolute path, and not "//host" or "/\host".
func isLocalPath(u string) bool {
	return len(u) >= 2 && u[0] == '/' && u[1] != '/' && u[1] != '\\' && !strings.ContainsAny(u, "\t\r\n\\\"'<> ")
}

// cssRemote finds url() and @import targets on another host. CSS escapes and comments are not decoded here:
// cleanStyle refuses any declaration list that contains them.
var cssRemote = regexp.MustCompile(`(?i)((url|image-set|image)\(\s*['"]?\s*|@import\s*['"]\s*)(https?:|//|\\\\)`)

func countCSSRemote(css string) int {
	return len(cssRemote.FindAllStringIndex(css, -1))
}

// cssUnsafe are the things that can fetch (url(), image-set(), @import), run code in old browsers (expression(),
// behavior, -moz-binding), or hide either from a text match (escapes, comments). A style attribute containing one is
// dropped whole; bluemonday then checks each remaining declaration against a property allowlist.
var cssUnsafe = []string{"url(", "image-set(", "image(", "@import", "expression", "behavior", "-moz-binding", "javascript:", "\\", "/*", "<", "&"}

func (w *walker) cleanStyle(v string) (string, bool) {
	low := strings.ToLower(v)
	for _, bad := range cssUnsafe {
		if strings.Contains(low, bad) {
			w.blocked += countCSSRemote(v)
			return "", false
		}
	}
	return v, strings.TrimSpace(v) != ""
}

// textOnly returns the text of a document, escaped, without any markup and without the content of the elements
// that HTML drops whole (script, style, ...).
func textOnly(in string) string {
	var b strings.Builder
	b.WriteString("<div>")
	z := html.NewTokenizer(strings.NewReader(in))
	skip := 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			b.WriteString("</div>")
			return b.String()
		case html.TextToken:
			if skip == 0 {
				b.WriteString(html.EscapeString(string(z.Text())))
			}
		case html.StartTagToken:
			name, _ := z.TagName()
			if dropped[atom.Lookup(name)] {
				skip++
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if dropped[atom.Lookup(name)] && skip > 0 {
				skip--
			}
		}
	}
}

func find(n *html.Node, a atom.Atom) *html.Node {
	if n.Type == html.ElementNode && n.DataAtom == a {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := find(c, a); f != nil {
			return f
		}
	}
	return nil
}
