package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/postern/postern/mail"
)

// An error page of a signed-in user is a page of the app: the header with the user and the account links, the folder
// list when it can be had cheaply, a heading in plain words, and links that do what they say. A signed-out user gets
// the simple frame of the sign-in pages.

// frameFolderWait bounds the folder list's IMAP round trip on an error page. The page is about something else; a
// slow or busy mail server shows the frame without folders rather than delay the answer.
const frameFolderWait = 750 * time.Millisecond

// errorHeading is the page's heading for status, in the user's words rather than HTTP's reason phrases.
func errorHeading(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "That did not work"
	case http.StatusUnauthorized:
		return "Please sign in"
	case http.StatusForbidden:
		return "That is not allowed"
	case http.StatusNotFound:
		return "Nothing here"
	case http.StatusConflict:
		return "That cannot be done right now"
	case http.StatusRequestEntityTooLarge:
		return "That is too large"
	case http.StatusTooManyRequests:
		return "Too many at once"
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return "Temporarily unavailable"
	case http.StatusInsufficientStorage:
		return "Your mailbox is full"
	}
	if status >= 500 {
		return "Something went wrong"
	}
	return "That did not work"
}

// errorFrame fills the frame of a signed-in user's error page and reports whether the request is signed in. The
// address comes from the grant in the store (no IdP call, no IMAP). The folder list costs one IMAP round trip, so it
// is asked for only when the mail side is not what failed (frameFolders) and only for frameFolderWait; a 401 (the
// sign-in has ended) is shown as signed out.
func (s *Server) errorFrame(r *http.Request, e *Error, base *pageBase) bool {
	if e.Status == http.StatusUnauthorized {
		return false
	}
	sess, err := s.session(r)
	if err != nil {
		return false
	}
	grant := sess.GrantID()
	if grant == "" {
		return false
	}
	if info, err := s.tokens.Info(r.Context(), grant); err == nil {
		base.User = info.Identity.Email
	}
	if !frameFolders(e) {
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), frameFolderWait)
	defer cancel()
	var boxes []mail.Mailbox
	addr, err := s.withMail(ctx, grant, func(ms *mail.Session) error {
		var err error
		boxes, err = ms.Mailboxes(ctx)
		return err
	})
	if err != nil {
		s.log(r).Info("error page without folders", "err", err)
		return true
	}
	if addr != "" {
		base.User = addr
	}
	base.Folders = folderLinks(boxes, r.PathValue("box"))
	return true
}

// frameFolders reports whether the error page may ask the mail server for the folder list: not when the mail server
// or the IdP is what failed (5xx: unreachable, refusing, overloaded, quota), where the round trip would fail or
// wait again, and not when the sign-in has ended (401).
func frameFolders(e *Error) bool {
	return e.Status < 500 && e.Status != http.StatusUnauthorized
}

// errorWays returns the links of an error page, the one to offer first first. Each does what its label says:
//   - "Try again" is the very request again, so it is offered for GETs only (a link cannot repeat a POST), when
//     the handler asked for it (Error.Retry is this URL) or the failure is one that passes (passing);
//   - any other destination (Error.Retry, or for a refused form its return_to) is labelled by where it goes: "Back
//     to Inbox", "Sign in again", "Back to Devices";
//   - without either, the user's way home: the Inbox when signed in, the start page when not.
func errorWays(r *http.Request, public *url.URL, isPage func(path string) bool, e *Error, signedIn bool) []errorWay {
	self := r.URL.RequestURI()
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	dest := e.Retry
	if !get {
		// A form's own URL is a page to go back to only when it has a GET route too (/folders, /devices; not /act).
		if dest == self && !isPage(r.URL.Path) {
			dest = ""
		}
		// A refused form without a more specific way: back to the page that had the form, when the browser says
		// which (Referrer-Policy same-origin sends it to us alone).
		if dest == "" || dest == defaultReturnTo {
			if from := refererPath(r, public); from != "" {
				dest = from
			}
		}
	}
	var ways []errorWay
	if get && (dest == self || passing(e.Status)) {
		ways = append(ways, errorWay{Label: "Try again", URL: self})
	}
	if dest != "" && (dest != self || !get) {
		if dest == "/" && signedIn {
			dest = defaultReturnTo
		}
		ways = append(ways, wayTo(dest))
	}
	if len(ways) == 0 {
		if signedIn {
			ways = append(ways, wayTo(defaultReturnTo))
		} else {
			ways = append(ways, wayTo("/"))
		}
	}
	return ways
}

// isPage reports whether a GET of path reaches a page of its own rather than the catch-all "not found".
func (s *Server) isPage(path string) bool {
	if s.ops.mux == nil {
		return false
	}
	_, pattern := s.ops.mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}, Host: s.cfg.PublicURL.Host})
	return pattern != "" && pattern != "/"
}

// passing reports a status that a later attempt may not get: a failure of ours or of a server behind us. A full
// mailbox (507) or a refusal (4xx) answers the same until the user does something else.
func passing(status int) bool {
	switch status {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// refererPath is the path and query of the request's Referer when it is a page of Postern (public is its public
// URL), else "".
func refererPath(r *http.Request, public *url.URL) string {
	ref := r.Referer()
	if ref == "" {
		return ""
	}
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != public.Scheme || u.Host != public.Host {
		return ""
	}
	if p := u.RequestURI(); safeReturnTo(p) == p {
		return p
	}
	return ""
}

// wayTo labels a same-origin link by where it goes.
func wayTo(dest string) errorWay {
	w := errorWay{URL: dest}
	u, err := url.Parse(dest)
	if err != nil {
		w.Label = "Continue"
		return w
	}
	p := u.Path
	switch {
	case p == "/login":
		w.Label = "Sign in again"
	case strings.HasPrefix(p, "/mail/") && len(p) > len("/mail/"):
		// url.Parse has undone mailboxURL's escaping of each segment.
		w.Label, w.Name = "Back to", boxLabel(strings.TrimPrefix(p, "/mail/"))
	case strings.HasPrefix(p, "/msg/"):
		w.Label = "Back to the message"
	case p == "/devices":
		w.Label = "Back to Devices"
	case p == "/folders":
		w.Label = "Back to Manage folders"
	case p == "/compose":
		w.Label = "Back to Compose"
	case p == "/session":
		w.Label = "Back to your session"
	case p == "/":
		w.Label = "Go to the start page"
	default:
		w.Label = "Continue"
	}
	return w
}
