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
//   - GET /msg/{box}/{uid}/part/{path} serves one part. Only raster images are ever served inline; everything else is
//     Content-Disposition: attachment, with a type from a short list or application/octet-stream, and always
//     X-Content-Type-Options: nosniff and CSP default-src 'none'; sandbox, so an HTML or SVG part can never render
//     as a page on Postern's origin.
//   - GET /msg/{box}/{uid}/raw shows the source as text/plain under the same headers.
//
// The images a message embeds (cid:, RFC 2392) are inlined into the frame document as data: URLs rather than
// linked: the frame's opaque origin makes its requests cross-site, so browsers do not send the SameSite session
// cookie with them, and a linked part would fail to load.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

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
	Ref     string
	Msg     *mail.Message
	DateISO string
	// Text is the plain-text body cut into blocks: quoted blocks fold away.
	Text []textBlock
	// FrameURL is the sandboxed HTML document, "" when the message is shown as text.
	FrameURL      string
	RemoteBlocked int
	Remote        bool
	RemoteURL     string // this page with remote content shown
	TextURL       string // this page as plain text, when the message has both
	HTMLURL       string // this page as HTML, when showing text of a message that has both
	SourceURL     string
	Attachments   []partLink
}

type partLink struct {
	Name, Type, URL string
	Size            int64
}

// handleMessage shows one message and marks it \Seen.
func (s *Server) handleMessage(w http.ResponseWriter, r *http.Request) error {
	box, uid, err := msgTarget(r)
	if err != nil {
		return err
	}
	var (
		m     *mail.Message
		boxes []mail.Mailbox
	)
	addr, err := s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		var err error
		if m, err = ms.Message(r.Context(), box, uid); err != nil {
			return err
		}
		if !m.Seen && sameOriginView(r) {
			// Reading marks the message read, as every mail client does; failing to is not worth an error page.
			if err := ms.SetFlag(r.Context(), box, []uint32{uid}, mail.FlagSeen, true); err != nil {
				s.log(r).Warn("mark seen", slog.Any("err", err))
			} else {
				m.Seen = true
			}
		}
		boxes, err = ms.Mailboxes(r.Context())
		return err
	})
	if err != nil {
		return readError(err, box)
	}

	self := messagePath(box, uid)
	q := r.URL.Query()
	page := messagePage{
		pageBase:  s.base(r, subjectOr(m.Subject)),
		Box:       box,
		BoxURL:    mailboxURL(box),
		Ref:       box + "/" + strconv.FormatUint(uint64(uid), 10),
		Msg:       m,
		Remote:    q.Get("remote") == "1",
		SourceURL: self + "/raw",
	}
	page.User = addr
	page.Folders = folderLinks(boxes, box)
	if !m.Date.IsZero() {
		page.DateISO = m.Date.Format("2006-01-02T15:04:05Z07:00")
	}
	switch {
	case m.Malformed:
		// The MIME structure could not be parsed: Text holds the raw message. Show it as it is, escaped, with no
		// links and no folding, rather than an error page.
		page.Text = []textBlock{{Segs: []textSeg{{Text: m.Text}}}}
	case m.HTML != "" && q.Get("text") != "1":
		page.FrameURL = self + "/html"
		if page.Remote {
			page.FrameURL += "?remote=1"
		}
		// Sanitising here too costs one parse and tells the reader what was held back.
		if len(m.HTML) <= maxSanitizeHTML {
			page.RemoteBlocked = sanitize.HTML(m.HTML, sanitize.Options{}).RemoteBlocked
		}
		page.RemoteURL = self + "?remote=1"
		if m.Text != "" {
			page.TextURL = self + "?text=1"
		}
	default:
		page.Text = textBlocks(m.Text)
		if m.HTML != "" {
			page.HTMLURL = self
		}
	}
	for _, p := range m.Attachments {
		page.Attachments = append(page.Attachments, partLink{
			Name: displayName(p), Type: p.ContentType, Size: p.Size,
			URL: self + "/part/" + url.PathEscape(p.Path),
		})
	}
	s.render(w, r, http.StatusOK, "message", &page)
	return nil
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
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">` +
		`<style>body{margin:0;padding:.5rem;overflow-wrap:break-word}img{max-width:100%;height:auto}table{max-width:100%}</style></head><body>`)
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

// inlineImageTypes are the only types ever served inline: raster images, which browsers decode as images and never
// run. SVG is not among them: opened as a document, it is a scripting context.
var inlineImageTypes = map[string]bool{
	"image/png": true, "image/gif": true, "image/jpeg": true, "image/webp": true,
}

// downloadTypes are the types a downloaded part keeps; anything else is sent as application/octet-stream, so that
// no HTML, SVG, XML or script type ever reaches the browser from a part, even as a download.
var downloadTypes = map[string]bool{
	"image/png": true, "image/gif": true, "image/jpeg": true, "image/webp": true,
	"application/pdf": true, "text/plain": true, "text/csv": true, "text/calendar": true,
	"application/zip": true, "application/gzip": true,
	"audio/mpeg": true, "audio/ogg": true, "video/mp4": true, "video/webm": true,
}

var partPath = regexp.MustCompile(`^[1-9][0-9]{0,3}(\.[1-9][0-9]{0,3}){0,15}$`)

// handlePart serves one part of a message: raster images inline (unless ?download=1), everything else as an
// attachment. See the comment at the top of this file for the headers.
func (s *Server) handlePart(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	setInertHeaders(h)
	box, uid, err := msgTarget(r)
	if err != nil {
		return err
	}
	pp := r.PathValue("path")
	if !partPath.MatchString(pp) {
		return &Error{Status: http.StatusNotFound, Msg: "This message has no such part.", Retry: messagePath(box, uid)}
	}
	// The part streams from the IMAP literal to the response: an attachment's size never becomes Postern's memory.
	// Once the status is out, a failure can only be logged (the browser sees a truncated download).
	//
	// The stream holds a pooled IMAP connection, so a client that stops reading must not hold it for ever (issue 10,
	// finding 2): every write gets a deadline of StallTimeout, and a write that makes no progress for that long
	// fails, which ends WritePart and discards the connection (its literal is half read).
	started := false
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{}) // the connection may serve another request
	out := &stallWriter{w: w, rc: rc, stall: s.cfg.StallTimeout}
	_, err = s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		return ms.WritePart(r.Context(), box, uid, pp, func(p mail.Part) (io.Writer, error) {
			ctype := "application/octet-stream"
			if downloadTypes[p.ContentType] {
				ctype = p.ContentType
			}
			disp := "attachment"
			if inlineImageTypes[p.ContentType] && r.URL.Query().Get("download") != "1" {
				disp = "inline"
			}
			h.Set("Content-Type", ctype)
			h.Set("Content-Disposition", contentDisposition(disp, downloadName(p, pp)))
			out.deadline()
			w.WriteHeader(http.StatusOK)
			started = true
			return out, nil
		})
	})
	if err != nil && started {
		s.log(r).Warn("part download cut short", slog.String("part", pp), slog.Any("err", err))
		return nil
	}
	if err != nil {
		return readError(err, box)
	}
	return nil
}

// stallWriter sets a write deadline of stall from now before each write to an HTTP response, so that a client
// that takes no more bytes for that long ends the response with an error (RFC 9110 leaves slow readers to the
// server; http.Server's WriteTimeout would bound the whole download instead, which a big file on a slow link
// legitimately exceeds).
type stallWriter struct {
	w     io.Writer
	rc    *http.ResponseController
	stall time.Duration
}

func (s *stallWriter) deadline() {
	// ErrNotSupported (a ResponseWriter without deadlines, e.g. in tests) leaves the write unbounded.
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
}

func (s *stallWriter) Write(p []byte) (int, error) {
	s.deadline()
	return s.w.Write(p)
}

// contentDisposition formats the header with mime.FormatMediaType, which quotes the filename and switches to the
// RFC 2231 extended form (a filename* parameter in UTF-8) for non-ASCII names, as RFC 6266 section 4.3 asks.
func contentDisposition(disp, name string) string {
	if v := mime.FormatMediaType(disp, map[string]string{"filename": name}); v != "" {
		return v
	}
	return disp
}

// downloadName is the filename a part is saved under: the sender's name as mail.CleanFilename leaves it (last path
// element, no control, bidi-override or zero-width characters, which can make "evil‮fdp.exe" look like
// "evil.exe.pdf"), without quotes, else "part-1.2".
func downloadName(p mail.Part, pp string) string {
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == '"' {
			return -1
		}
		return r
	}, mail.CleanFilename(p.Filename))
	name = strings.TrimLeft(strings.TrimSpace(path.Base("/"+name)), ".")
	if name == "" || name == "/" {
		name = "part-" + pp
		if exts, _ := mime.ExtensionsByType(p.ContentType); len(exts) > 0 && downloadTypes[p.ContentType] {
			name += exts[0]
		}
	}
	if len(name) > 200 {
		name = name[:200]
	}
	return strings.ToValidUTF8(name, "")
}

func displayName(p mail.Part) string {
	if n := mail.CleanFilename(p.Filename); n != "" {
		return n
	}
	return fmt.Sprintf("part %s (%s)", p.Path, p.ContentType)
}

// handleRaw shows the message source as plain text. The headers make sure that no browser renders it as anything
// else: text/plain, nosniff, and a CSP with sandbox in case one tried.
func (s *Server) handleRaw(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	setInertHeaders(h)
	box, uid, err := msgTarget(r)
	if err != nil {
		return err
	}
	var raw []byte
	_, err = s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		var err error
		raw, err = ms.Raw(r.Context(), box, uid)
		return err
	})
	if err != nil {
		return readError(err, box)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if r.URL.Query().Get("download") == "1" {
		h.Set("Content-Disposition", contentDisposition("attachment", fmt.Sprintf("message-%d.eml", uid)))
	} else {
		h.Set("Content-Disposition", "inline")
	}
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(raw)
	return nil
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

// setInertHeaders makes a response that carries message content inert wherever a browser meets it: no sniffing into
// HTML, a CSP that loads nothing and sandboxes the document, no referrer, and no caching of private mail.
func setInertHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "private, no-store")
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
