package web

import (
	"context"
	"io"
	"net/url"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// Observer is told what the web layer did, so that cmd can count it (internal/metrics implements it) without
// wrapping web's dependencies or knowing its routes. Its methods run on the request's goroutine: they must be safe
// for concurrent use and return at once. None of their arguments carries a user, an address, a path or a secret.
type Observer interface {
	// ObserveRequest is called once per request, when it ends, with the pattern of the route that served it
	// ("GET /mail/{box...}"; "" when no route matched), the status code and how long it took.
	ObserveRequest(route string, status int, d time.Duration)
	// ObserveSignIn is called once per sign-in callback with the error of auth's Finish: nil when every check
	// passed, otherwise usually an *auth.CallbackError whose Code names the failed check.
	ObserveSignIn(err error)
	// ObserveSend is called once per SMTP submission with the Sender's error, nil when the server accepted the
	// message.
	ObserveSend(err error)
}

// nopObserver is the Observer of a Server configured without one.
type nopObserver struct{}

func (nopObserver) ObserveRequest(string, int, time.Duration) {}
func (nopObserver) ObserveSignIn(error)                       {}
func (nopObserver) ObserveSend(error)                         {}

// observedAuth reports every Finish to the Observer; Begin passes through.
type observedAuth struct {
	Authenticator
	obs Observer
}

func (a observedAuth) Finish(ctx context.Context, f auth.Flow, q url.Values) (*auth.Login, error) {
	l, err := a.Authenticator.Finish(ctx, f, q)
	a.obs.ObserveSignIn(err)
	return l, err
}

// observedSender reports every submission to the Observer.
type observedSender struct {
	Sender
	obs Observer
}

func (s observedSender) Send(ctx context.Context, c mail.Credentials, from string, to []string, msg io.Reader) error {
	err := s.Sender.Send(ctx, c, from, to, msg)
	s.obs.ObserveSend(err)
	return err
}

// observe puts the Observer between the Server and its Authenticator and Sender; the request hook is called by
// withRequestLog, which already records the status.
func (s *Server) observe(obs Observer) {
	if obs == nil {
		obs = nopObserver{}
	}
	s.obs = obs
	s.auth = observedAuth{s.auth, obs}
	if s.cfg.Sender != nil {
		s.cfg.Sender = observedSender{s.cfg.Sender, obs}
	}
}
