package web

// Serving the parts of a message: attachments, inline images and the source. The security model is in the comment at
// the top of message.go; the headers are set here.

import (
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/mail"
)

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
				// The attachment list's "View": the browser's own image viewer, a document that is the image.
				disp = "inline"
				h.Set("Content-Security-Policy", imageViewCSP)
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

// imageViewCSP is the policy of a raster image served inline (opened with "View"): nothing may load but images from
// Postern, and the document is sandboxed (no script, opaque origin). Chromium's image viewer shows the image under
// it (message_browser_test.go checks). PDFs are not viewed inline at all: see docs/security.md, "Viewing
// attachments".
const imageViewCSP = "default-src 'none'; img-src 'self'; sandbox"

// setInertHeaders makes a response that carries message content inert wherever a browser meets it: no sniffing into
// HTML, a CSP that loads nothing and sandboxes the document, no referrer, and no caching of private mail.
func setInertHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "private, no-store")
}
