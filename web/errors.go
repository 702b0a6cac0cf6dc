package web

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// Error is what a handler returns when it wants the user to see a specific message. Msg is shown as is and must be
// safe for any audience; Err is the cause and goes only to the log, with the request id, so that a message from a
// library (which may quote a server reply) never reaches a page.
type Error struct {
	Status int
	Msg    string
	// Retry, when set, is a same-origin link the page offers ("Try again").
	Retry string
	Err   error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.Msg, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// handlerFunc is the shape of every handler: it writes a response or returns an error, and serveError turns the error
// into a page in one place.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// errorPage is the data of templates/error.html. For a signed-in user it keeps the app's frame (pageBase.User and,
// when they can be had cheaply, pageBase.Folders), so that an error is a page of the app and not a dead end.
type errorPage struct {
	pageBase
	Status  int
	Heading string
	Msg     string
	// Ways are the links on: the first is the one the page offers first (id "retry"); each does what its label
	// says (errorWays).
	Ways []errorWay
}

// errorWay is a link of the error page: Label, then Name (a folder name, isolated in the page) if any.
type errorWay struct {
	Label, Name, URL string
}

// serveError maps domain errors onto responses. The mapping lives here only, so that handlers can return what they got:
//   - auth.ErrNeedsSignIn: the grant is gone (refresh token expired, revoked, reused); send the user through sign-in
//     and back to the page they asked for, instead of showing an error.
//   - mail.ErrAuthFailed that survived the retries with a fresh token (mail.WithToken): the same, since the mail server no longer accepts
//     what the IdP gave us.
//   - auth.ErrTransient and friends (the IdP is down while the access token needs renewing), mail.ErrAuthUnavailable
//     and connection errors: a friendly "try again shortly" page; nothing is lost, the next view retries by itself.
func (s *Server) serveError(w http.ResponseWriter, r *http.Request, err error) {
	log := s.log(r)
	if errors.Is(err, auth.ErrNeedsSignIn) {
		log.Info("grant needs sign-in", slog.String("path", r.URL.Path))
		if r.Method == http.MethodGet {
			http.Redirect(w, r, "/login?return_to="+urlQueryEscape(safeReturnTo(r.URL.RequestURI())), http.StatusSeeOther)
			return
		}
		err = &Error{Status: http.StatusUnauthorized, Msg: "Your sign-in has ended. Please sign in again.", Retry: "/login", Err: err}
	}
	var e *Error
	if !errors.As(err, &e) {
		switch {
		case errors.Is(err, mail.ErrAuthFailed):
			e = &Error{Status: http.StatusBadGateway, Msg: "The mail server did not accept your sign-in. Signing in again usually fixes this.", Retry: "/login", Err: err}
		case idpUnavailable(err):
			// The grant is intact (a transient failure never drops tokens) and the refresher retries on its own;
			// the user only has to come back.
			e = &Error{Status: http.StatusServiceUnavailable, Msg: "Your identity provider cannot be reached right now, so your session cannot be renewed. Nothing is lost: Postern keeps retrying; try again in a minute.", Retry: r.URL.RequestURI(), Err: err}
		case errors.Is(err, mail.ErrAuthUnavailable):
			e = &Error{Status: http.StatusServiceUnavailable, Msg: "The mail server could not check your sign-in just now (is the identity provider down?). Please try again in a minute.", Retry: r.URL.RequestURI(), Err: err}
		default:
			e = &Error{Status: http.StatusInternalServerError, Msg: "Something went wrong on our side. It has been logged; please try again.", Retry: r.URL.RequestURI(), Err: err}
		}
	}
	if e.Err != nil || e.Status >= 500 {
		log.Error("request failed", slog.Int("status", e.Status), slog.String("path", r.URL.Path), slog.Any("err", e.Err))
	} else {
		log.Info("request refused", slog.Int("status", e.Status), slog.String("path", r.URL.Path), slog.String("msg", e.Msg))
	}
	heading := errorHeading(e.Status)
	page := errorPage{pageBase: s.base(r, heading), Status: e.Status, Heading: heading, Msg: e.Msg}
	signedIn := s.errorFrame(r, e, &page.pageBase)
	page.Ways = errorWays(r, s.cfg.PublicURL, s.isPage, e, signedIn)
	s.render(w, r, e.Status, "error", &page)
}

// handle adapts a handlerFunc to http.Handler.
func (s *Server) handle(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.serveError(w, r, err)
		}
	})
}

// idpUnavailable reports a failure to renew the access token that left the grant intact: the IdP was unreachable,
// answered 5xx, or refused the client (a configuration problem, which the refresher also keeps retrying).
func idpUnavailable(err error) bool {
	return errors.Is(err, auth.ErrTransient) || errors.Is(err, auth.ErrOutcomeUnknown) || errors.Is(err, auth.ErrRejected)
}
