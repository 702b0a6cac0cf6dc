package web

// Reading mail. Every message is hostile until proven otherwise, so the HTML of a message never shares a document
// with Postern's own pages. The security model, in the order a browser meets it:
//
//   - GET /msg/{box}/{uid} is Postern's page: headers and the text/plain body are rendered by html/template, which
//     escapes everything, and links found in plain text are made clickable only for http, https and mailto. An HTML
//     body is not inserted here at all: the page holds an <iframe sandbox="allow-popups
//     allow-popups-to-escape-sandbox"> pointing at the next route.
//   - GET /msg/{box}/{uid}/html serves the sanitised HTML (internal/sanitize) as a document of its own. Three walls
//     stand between it and the user's session, each written as if the others had failed:
//     1. the sanitiser removed scripts, handlers, forms, foreign content and remote references;
//     2. the iframe's sandbox has no allow-scripts (no script runs, whatever got through) and no allow-same-origin
//     (the document gets an opaque origin, so it can read neither Postern's cookies, storage or DOM, nor make
//     credentialed same-site requests as Postern); allow-popups lets links open, in a new, unsandboxed window
//     (allow-popups-to-escape-sandbox) so that the sites users follow work, with rel=noopener noreferrer;
//     3. the response's own CSP, default-src 'none', lets the document load images only from data: URLs and
//     Postern ('self'), and from http(s) only when the user asked for remote content; inline styles are allowed
//     (style-src 'unsafe-inline'), which is acceptable in this frame only, since nothing in it can run and CSS
//     cannot fetch past img-src. The CSP carries a sandbox directive as well, so the document is sandboxed even when
//     opened on its own, outside the frame. frame-ancestors 'self' and X-Frame-Options: SAMEORIGIN (overriding the
//     site-wide DENY for this route only) let Postern, and only Postern, frame it.
//   - "Show remote content" (?remote=1) changes only which CSP and allowlist the frame gets: the browser fetches
//     remote images, Postern never does, so it can neither be made to fetch internal URLs (SSRF) nor to confirm an
//     address to a tracker from the server's IP.
//   - GET /msg/{box}/{uid}/part/{path} serves one part. Only raster images (PNG, JPEG, GIF, WebP; never SVG) are
//     ever served inline, as the attachment list's "View" (CSP imageViewCSP); everything else is Content-Disposition:
//     attachment, with a type from a short list or application/octet-stream, and always X-Content-Type-Options:
//     nosniff and CSP default-src 'none'; sandbox, so an HTML or SVG part can never render as a page on Postern's
//     origin. PDFs are downloaded, never shown in the browser's viewer, which would run their JavaScript (see
//     docs/security.md, "Viewing attachments").
//   - GET /msg/{box}/{uid}/raw shows the source as text/plain under the same headers.
//
// The images a message embeds (cid:, RFC 2392) are inlined into the frame document as data: URLs rather than
// linked: the frame's opaque origin makes its requests cross-site, so browsers do not send the SameSite session
// cookie with them, and a linked part would fail to load.

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/postern/postern/internal/sanitize"
	"github.com/postern/postern/mail"
)

// messagePath is the URL of a message's page. The mailbox is one path segment, "/" escaped as %2F, so that the
// routes below can tell the mailbox from the UID and the suffix.
func messagePath(box string, uid uint32) string {
	return "/msg/" + url.PathEscape(box) + "/" + strconv.FormatUint(uint64(uid), 10)
}

// msgTarget parses {box} and {uid} of the /msg routes.
func msgTarget(r *http.Request) (box string, uid uint32, err error) {
	box = r.PathValue("box")
	n, perr := strconv.ParseUint(r.PathValue("uid"), 10, 32)
	if box == "" || !validBoxName(box) || perr != nil || n == 0 {
		return "", 0, &Error{Status: http.StatusNotFound, Msg: "There is no message at this address.", Retry: defaultReturnTo}
	}
	return box, uint32(n), nil
}

// readError maps what the mail side says about a missing message or mailbox onto a friendly 404; the rest goes
// through mailError.
func readError(err error, box string) error {
	switch {
	case errors.Is(err, mail.ErrNoMessage):
		return &Error{Status: http.StatusNotFound, Msg: "That message is no longer in " + boxLabel(box) + " — it may have been moved or deleted.", Retry: mailboxURL(box), Err: err}
	case errors.Is(err, mail.ErrNoMailbox):
		return &Error{Status: http.StatusNotFound, Msg: "There is no folder with this name.", Retry: defaultReturnTo}
	case errors.Is(err, mail.ErrTooLarge):
		return &Error{Status: http.StatusRequestEntityTooLarge, Msg: "This is too large to open through Postern (an attachment may have at most " +
			formatSize(mail.MaxPartSize) + "). Use a desktop mail client for this message.", Retry: mailboxURL(box), Err: err}
	}
	return mailError(err)
}

type messagePage struct {
	pageBase
	Box, BoxURL string
	// Ref names the message for the compose links ("box/uid", the form /compose?reply= takes).
	Ref       string
	DateISO   string
	TextURL   string // this page as plain text, when the message has both
	HTMLURL   string // this page as HTML, when showing text of a message that has both
	SourceURL string
	// NewerURL and OlderURL are the reader's previous/next links (handleNeighbour).
	NewerURL, OlderURL string
	messageBody
}

// messageBody is what the "message-body" template block shows of one message: its attachments and its body, as
// text blocks or a sandboxed, sized frame. The conversation view shows one per message.
type messageBody struct {
	Msg *mail.Message
	// Text is the plain-text body cut into blocks: quoted blocks fold away.
	Text []textBlock
	// FrameURL is the sandboxed HTML document, "" when the message is shown as text.
	FrameURL string
	// FrameHeight is the frame's height in CSS pixels as the server estimates it for a frame as wide as the
	// message column on a desktop screen; FrameHeights the estimates at a few widths ("360 h 600 h 960 h"), from
	// which app.js picks the height for the frame's actual width. FrameClass is "msg-paper" for a message that sets
	// its own colours, else "msg-adaptive" (see sanitize.FrameCSS).
	FrameHeight   int
	FrameHeights  string
	FrameClass    string
	RemoteBlocked int
	Remote        bool
	RemoteURL     string // the message's page with remote content shown
	Attachments   []partLink
	// TrustSender is the sender the "Always show from …" button adds to the remote-content list (settings.go);
	// AutoRemote says remote content shows because the sender is on that list.
	TrustSender string
	AutoRemote  bool
}

// newMessageBody prepares m, whose page is at self, for the "message-body" block: as HTML in the frame unless
// asText (or the message has no HTML), with remote content when remote.
func newMessageBody(m *mail.Message, self string, remote, asText bool) messageBody {
	b := messageBody{Msg: m, Remote: remote, Attachments: attachmentLinks(self, m.Attachments)}
	switch {
	case m.Malformed:
		// The MIME structure could not be parsed: Text holds the raw message. Show it as it is, escaped, with no
		// links and no folding, rather than an error page.
		b.Text = []textBlock{{Segs: []textSeg{{Text: m.Text}}}}
	case m.HTML != "" && !asText:
		b.FrameURL = self + "/html"
		if remote {
			b.FrameURL += "?remote=1"
		}
		// Sanitising here too costs one parse; it tells the reader what was held back and sizes the frame. The frame
		// will inline the cid: images it can (handleMessageHTML): they are stood in for by their part URL here, so
		// that the estimate counts them.
		in := m.HTML
		if len(in) > maxSanitizeHTML {
			in = tooLargeHTML
		}
		res := sanitize.HTML(in, sanitize.Options{AllowRemote: remote, CIDURL: func(cid string) (string, bool) {
			p, ok := inlinePart(m.Inline, cid)
			if !ok || !inlineImageTypes[p.ContentType] || p.Size > maxInlineImage {
				return "", false
			}
			return self + "/part/" + url.PathEscape(p.Path), true
		}})
		if !remote {
			b.RemoteBlocked = res.RemoteBlocked
		}
		b.sizeFrame(res.Layout)
		b.RemoteURL = self + "?remote=1"
	default:
		b.Text = textBlocks(m.Text)
	}
	return b
}

// A partLink is one attachment in the list above the body.
type partLink struct {
	Name string
	Kind fileKind
	// URL downloads the part; ViewURL, set for raster images only, opens it in the browser's own image viewer.
	URL, ViewURL string
	Size         int64
}

// frameWidths are the frame widths, in CSS pixels, at which the page states the estimated height of an HTML body:
// a phone, a narrow window, and the message column at its widest (60rem), which is also the height attribute the
// frame has without script.
var frameWidths = []int{360, 600, 960}

// handleMessage shows one message and marks it \Seen.
func (s *Server) handleMessage(w http.ResponseWriter, r *http.Request) error {
	box, uid, err := msgTarget(r)
	if err != nil {
		return err
	}
	// One round trip on a warm connection: the SELECT, the FETCH, the STORE of \Seen and the folder list are
	// pipelined (mail.Session.Read). Reading marks the message read, as every mail client does, but only on the
	// user's own navigation (sameOriginView); failing to is not worth an error page.
	var rd mail.Reading
	addr, err := s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		var err error
		rd, err = ms.Read(r.Context(), box, uid, mail.ReadOptions{MarkSeen: sameOriginView(r), Mailboxes: true})
		return err
	})
	if err != nil {
		return readError(err, box)
	}
	if rd.MarkErr != nil {
		s.log(r).Warn("mark seen", slog.Any("err", rd.MarkErr))
	}
	m, boxes := rd.Message, rd.Mailboxes

	self := messagePath(box, uid)
	q := r.URL.Query()
	// Remote content: asked for on this view, or always for a sender on the user's list (Settings).
	remote, autoRemote, trust := q.Get("remote") == "1", false, ""
	if len(m.From) > 0 && !remote {
		autoRemote = s.prefs(r).ShowsRemote(m.From[0].Email)
		remote, trust = autoRemote, m.From[0].Email
	}
	page := messagePage{
		pageBase:    s.base(r, subjectOr(m.Subject)),
		Box:         box,
		BoxURL:      mailboxURL(box),
		Ref:         box + "/" + strconv.FormatUint(uint64(uid), 10),
		SourceURL:   self + "/raw",
		messageBody: newMessageBody(m, self, remote, q.Get("text") == "1"),
		// The previous/next links are asked for only when followed (handleNeighbour): finding them costs a round
		// trip (two UID SEARCHes) that every view would pay otherwise (issue 14: the page costs one).
		NewerURL: self + "/newer",
		OlderURL: self + "/older",
	}
	page.AutoRemote, page.TrustSender = autoRemote, trust
	page.User = addr
	page.Folders = folderLinks(boxes, box)
	if !m.Date.IsZero() {
		page.DateISO = m.Date.Format("2006-01-02T15:04:05Z07:00")
	}
	switch {
	case page.FrameURL != "" && m.Text != "":
		page.TextURL = self + "?text=1"
	case page.FrameURL == "" && m.HTML != "" && !m.Malformed:
		page.HTMLURL = self
	}
	s.render(w, r, http.StatusOK, "message", &page)
	return nil
}

// attachmentLinks describes the attachments of the message at self for the list above its body.
func attachmentLinks(self string, parts []mail.Part) []partLink {
	var out []partLink
	for _, p := range parts {
		l := partLink{
			Name: displayName(p), Kind: kindOf(p.ContentType, p.Filename), Size: p.Size,
			URL: self + "/part/" + url.PathEscape(p.Path) + "?download=1",
		}
		if inlineImageTypes[p.ContentType] {
			l.ViewURL = self + "/part/" + url.PathEscape(p.Path)
		}
		out = append(out, l)
	}
	return out
}

// sizeFrame sets the frame's height from the sanitiser's layout estimate, and its class from whether the message
// sets its own colours.
//
// Why an estimate: the frame can neither tell its height nor have it read. It runs no script (no allow-scripts), so
// it cannot post its size; it has an opaque origin (no allow-same-origin), so the page cannot look inside it; and
// granting either to size a frame would undo a wall of the security model above. What the server can do is measure
// the sanitised tree it already builds (sanitize.Layout) and state the height in the iframe's height attribute (an
// attribute, not an inline style, so the page's CSP is untouched). app.js then only rescales that figure to the
// frame's actual width, from the estimates at frameWidths, reading the width of Postern's own iframe element and
// nothing from the frame. A wrong estimate costs a little space, or a scroll bar inside the frame; it never hides
// content.
func (p *messageBody) sizeFrame(l sanitize.Layout) {
	var hs []string
	for _, w := range frameWidths {
		hs = append(hs, strconv.Itoa(w), strconv.Itoa(l.HeightAt(w)))
	}
	p.FrameHeights = strings.Join(hs, " ")
	p.FrameHeight = l.HeightAt(frameWidths[len(frameWidths)-1])
	p.FrameClass = "msg-adaptive"
	if l.Colored {
		p.FrameClass = "msg-paper"
	}
}

func subjectOr(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(no subject)"
	}
	return s
}

// frameHeaders replaces the site-wide headers for the HTML frame document; see the comment at the top of this file
// for why each is there. It runs before anything else, so that an error page rendered into the frame gets them too.
func frameHeaders(h http.Header, remote bool) {
	img := "img-src data: 'self'"
	if remote {
		img += " https: http:"
	}
	h.Set("Content-Security-Policy", "default-src 'none'; "+img+"; style-src 'unsafe-inline'; "+
		"frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox allow-popups allow-popups-to-escape-sandbox")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	// Remote images and followed links must not learn the message's URL (it names the mailbox).
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// maxInlineImage and maxInlineTotal bound the cid: images inlined as data: URLs into one frame document;
// maxInlineParts bounds how many distinct parts one document may fetch, whatever their size (a hostile message can
// reference thousands of tiny parts); maxSanitizeHTML bounds the HTML that is parsed and sanitised at all.
const (
	maxInlineImage  = 4 << 20
	maxInlineTotal  = 16 << 20
	maxInlineParts  = 50
	maxSanitizeHTML = 8 << 20
)

// tooLargeHTML replaces an HTML body over maxSanitizeHTML: it is not rendered, and the source stays available.
const tooLargeHTML = "<p>This message's formatted version is too large to display here. Use “View source” or the plain-text version.</p>"

// handleMessageHTML serves the sanitised HTML body as the standalone document of the sandboxed frame.
func (s *Server) handleMessageHTML(w http.ResponseWriter, r *http.Request) error {
	remote := r.URL.Query().Get("remote") == "1"
	frameHeaders(w.Header(), remote)
	box, uid, err := msgTarget(r)
	if err != nil {
		return err
	}
	var res sanitize.Result
	_, err = s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		m, err := ms.Message(r.Context(), box, uid)
		if err != nil {
			return err
		}
		total, fetched, failed := 0, 0, false
		// Each Content-ID is looked up once per document, at most maxInlineParts of them, and the first failure
		// (or a cancelled request) stops further fetches.
		seen := map[string]string{}
		cidURL := func(cid string) (string, bool) {
			if u, ok := seen[cid]; ok {
				return u, u != ""
			}
			seen[cid] = ""
			p, ok := inlinePart(m.Inline, cid)
			if !ok || failed || fetched >= maxInlineParts || r.Context().Err() != nil ||
				!inlineImageTypes[p.ContentType] || p.Size > maxInlineImage || total+int(p.Size) > maxInlineTotal {
				return "", false
			}
			fetched++
			_, data, err := ms.Part(r.Context(), box, uid, p.Path)
			if err != nil || len(data) > maxInlineImage {
				failed = true
				s.log(r).Warn("inline image", slog.String("part", p.Path), slog.Any("err", err))
				return "", false
			}
			total += len(data)
			u := "data:" + p.ContentType + ";base64," + base64.StdEncoding.EncodeToString(data)
			seen[cid] = u
			return u, true
		}
		in := m.HTML
		if len(in) > maxSanitizeHTML {
			in = tooLargeHTML
		}
		if m.Malformed {
			in = "" // the message page shows the raw text instead
		}
		res = sanitize.HTML(in, sanitize.Options{AllowRemote: remote, CIDURL: cidURL})
		return nil
	})
	if err != nil {
		return readError(err, box)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	// The document's own stylesheet (sanitize.FrameCSS): a readable sans-serif base, and dark colours in a dark
	// theme only for a message that sets none of its own; one that does stays on light paper (class="paper").
	root := `<html>`
	if res.Layout.Colored {
		root = `<html class="paper">`
	}
	b.WriteString(`<!doctype html>` + root + `<head><meta charset="utf-8"><meta name="referrer" content="no-referrer">` +
		`<style>` + sanitize.FrameCSS + `</style></head><body>`)
	b.WriteString(res.HTML)
	b.WriteString("</body></html>\n")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
	return nil
}

// inlinePart finds the part a cid: reference names. Content-IDs are compared exactly, then without regard to case,
// since some senders change the case between header and reference.
func inlinePart(parts []mail.Part, cid string) (mail.Part, bool) {
	for _, p := range parts {
		if p.ContentID == cid {
			return p, true
		}
	}
	for _, p := range parts {
		if strings.EqualFold(p.ContentID, cid) {
			return p, true
		}
	}
	return mail.Part{}, false
}

// A textBlock is a run of lines of a plain-text body: either the author's own, or quoted ("> ") and folded.
type textBlock struct {
	Quoted bool
	Lines  int
	Segs   []textSeg
}

// A textSeg is a piece of text, or a link when URL is set. The template escapes both, and html/template checks the
// URL again when it lands in href.
type textSeg struct {
	Text, URL string
}

// textBlocks splits a plain-text body into unquoted and quoted blocks and finds the links in each.
func textBlocks(text string) []textBlock {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	var (
		blocks []textBlock
		cur    strings.Builder
		quoted bool
		lines  int
	)
	flush := func() {
		if lines > 0 {
			blocks = append(blocks, textBlock{Quoted: quoted, Lines: lines, Segs: linkify(strings.TrimSuffix(cur.String(), "\n"))})
		}
		cur.Reset()
		lines = 0
	}
	for _, line := range strings.SplitAfter(text, "\n") {
		if line == "" {
			continue
		}
		q := strings.HasPrefix(line, ">")
		if q != quoted {
			flush()
			quoted = q
		}
		cur.WriteString(line)
		lines++
	}
	flush()
	return blocks
}

var linkPattern = regexp.MustCompile(`(?i)\b(?:https?://|mailto:)[^\s<>"'` + "`" + `]+`)

// linkify finds http, https and mailto URLs in text. Trailing punctuation belongs to the sentence, not the URL,
// except a closing parenthesis that closes one in the URL (Wikipedia links).
func linkify(text string) []textSeg {
	var segs []textSeg
	last := 0
	for _, loc := range linkPattern.FindAllStringIndex(text, -1) {
		start, end := loc[0], loc[1]
		for end > start {
			c := text[end-1]
			if strings.IndexByte(".,;:!?'\"]}>*", c) >= 0 ||
				(c == ')' && strings.Count(text[start:end], "(") < strings.Count(text[start:end], ")")) {
				end--
				continue
			}
			break
		}
		u, err := url.Parse(text[start:end])
		if err != nil || (u.Scheme != "mailto" && u.Host == "") || (u.Scheme == "mailto" && u.Opaque == "") {
			continue
		}
		if start > last {
			segs = append(segs, textSeg{Text: text[last:start]})
		}
		segs = append(segs, textSeg{Text: text[start:end], URL: text[start:end]})
		last = end
	}
	if last < len(text) {
		segs = append(segs, textSeg{Text: text[last:]})
	}
	return segs
}

// sameOriginView reports whether the request is the user's own navigation: reading marks a message read, the one
// state change made by a GET, so a link on another site (or a prefetcher following one) must not do it. Browsers
// send Sec-Fetch-Site; its absence (old browsers, non-browser clients) counts as the user's own.
func sameOriginView(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}
