package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

type (
	grantKey struct{}
	userCtx  struct{}
)

// grantID returns the grant bound to this request by signedIn.
func grantID(r *http.Request) string {
	id, _ := r.Context().Value(grantKey{}).(string)
	return id
}

// userOf returns the user (a userKey) bound to this request by signedIn; for a session signed in before users were
// recorded, the grant stands in for the user.
func userOf(r *http.Request) string { return userOfCtx(r.Context(), grantID(r)) }

// userOfCtx is userOf for code that has only the request's context and grant.
func userOfCtx(ctx context.Context, grant string) string {
	if u, _ := ctx.Value(userCtx{}).(string); u != "" {
		return u
	}
	return grant
}

// withGrant binds a signed-in session's grant and user to the request.
func withGrant(r *http.Request, sess session) *http.Request {
	ctx := context.WithValue(r.Context(), grantKey{}, sess.GrantID())
	ctx = context.WithValue(ctx, prefsKey{}, new(prefsMemo)) // the user's settings, read once per request (settings.go)
	return r.WithContext(context.WithValue(ctx, userCtx{}, sess.UserKey()))
}

// lastSeenEvery limits session writes: a page view refreshes the idle timer at most once a minute.
const lastSeenEvery = time.Minute

func (s *Server) session(r *http.Request) (session, error) {
	raw, err := s.sessions.Get(r, s.cfg.CookieName)
	if err != nil {
		return session{}, err
	}
	return session{s: raw}, nil
}

// signedIn gates a handler on a signed-in session. Without one, a GET is sent to sign-in and then back here.
func (s *Server) signedIn(h handlerFunc) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		sess, err := s.session(r)
		if err != nil {
			return err
		}
		id := sess.GrantID()
		if id == "" {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?return_to="+urlQueryEscape(safeReturnTo(r.URL.RequestURI())), http.StatusSeeOther)
				return nil
			}
			return &Error{Status: http.StatusUnauthorized, Msg: "Please sign in first.", Retry: "/login"}
		}
		if time.Since(sess.LastSeen()) > lastSeenEvery {
			if err := sess.s.Save(r, w); err != nil {
				return err
			}
		}
		return h(w, withGrant(r, sess))
	})
}

type homePage struct {
	pageBase
}

func (s *Server) handleHome(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.session(r)
	if err != nil {
		return err
	}
	if sess.GrantID() != "" {
		http.Redirect(w, r, defaultReturnTo, http.StatusSeeOther)
		return nil
	}
	s.render(w, r, http.StatusOK, "home", &homePage{pageBase: s.base(r, "Sign in")})
	return nil
}

// handleLogin starts an authorization-code flow. The flow (state, nonce, PKCE verifier, return_to) is sealed into a
// cookie of this browser (flowcookie.go), so the callback can only be completed by the browser that started it, and
// an anonymous request writes nothing on the server.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) error {
	flow, authURL := s.auth.Begin(safeReturnTo(r.URL.Query().Get("return_to")))
	if err := s.flows.set(w, flow); err != nil {
		return err
	}
	http.Redirect(w, r, authURL, http.StatusSeeOther)
	return nil
}

func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) error {
	// One redirect URI serves both flows; the state says which this callback answers.
	if df, ok := s.deviceCallback(r); ok {
		return s.finishDevice(w, r, df)
	}
	flow, ok := s.flows.get(r)
	if !ok {
		return &Error{Status: http.StatusBadRequest, Msg: "This sign-in link has expired or was already used. Please start again.", Retry: "/login"}
	}
	// A callback whose state is not this flow's (RFC 6749 section 10.12) was not started by this browser: anyone can
	// make a browser load /callback?state=x from another site. Refuse it without touching the flow, so that such a
	// request cannot cancel the user's sign-in in progress. auth.Finish compares again, with the other checks.
	if subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("state")), []byte(flow.State)) != 1 {
		return &Error{Status: http.StatusBadRequest, Msg: "This sign-in response does not belong to the sign-in started in this browser. If you are signing in, go back to that tab; otherwise please try again.",
			Retry: "/login?return_to=" + urlQueryEscape(flow.ReturnTo), Err: auth.ErrStateMismatch}
	}
	// From here the flow is single-use whatever happens next: a replayed callback finds nothing to complete.
	s.flows.clear(w)
	login, err := s.auth.Finish(r.Context(), flow, r.URL.Query())
	if err != nil {
		var ce *auth.CallbackError
		if errors.As(err, &ce) {
			return &Error{Status: http.StatusBadRequest, Msg: ce.Reason, Retry: "/login?return_to=" + urlQueryEscape(flow.ReturnTo), Err: err}
		}
		return &Error{Status: http.StatusBadGateway, Msg: "The identity provider could not complete your sign-in. Please try again.", Retry: "/login?return_to=" + urlQueryEscape(flow.ReturnTo), Err: err}
	}
	id, err := s.tokens.Start(r.Context(), login)
	if err != nil {
		return err
	}
	sess, err := s.session(r)
	if err != nil {
		return err
	}
	if old := sess.GrantID(); old != "" && old != id {
		// Signing in again (the old grant ended, or "sign in again" from the Session page): retire the old grant so
		// it neither lingers in the store nor keeps pooled connections.
		if err := s.tokens.SignOut(r.Context(), old); err != nil {
			s.log(r).Warn("retire previous grant", slog.Any("err", err))
		}
		s.mail.CloseKey(old)
	}
	if err := sess.SignIn(r.Context(), s.sessions, id, userKey(login.Identity.Issuer, login.Identity.Subject)); err != nil {
		return err
	}
	if err := sess.s.Save(r, w); err != nil {
		return err
	}
	s.log(r).Info("signed in", slog.String("user", userHash(login.Identity.Issuer, login.Identity.Subject)))
	s.warmMail(r, id)
	http.Redirect(w, r, safeReturnTo(flow.ReturnTo), http.StatusSeeOther)
	return nil
}

// mailWarmer is the optional part of Mailer that opens a grant's pooled connection ahead of its first page
// (*mail.Pool.Warm).
type mailWarmer interface {
	Warm(ctx context.Context, key string, ts mail.TokenSource)
}

// warmMail starts the new grant's IMAP login while the browser follows the redirect to its first page, which then
// finds the connection open or joins its dial (the login costs the mail server a call to the identity provider: on
// a real network it overlaps with a browser round trip instead of following it).
func (s *Server) warmMail(r *http.Request, grant string) {
	mw, ok := s.mail.(mailWarmer)
	if !ok || !s.cfg.WarmOnSignIn {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), warmTimeout)
	go func() {
		defer cancel()
		mw.Warm(ctx, grant, s.grantTokens(grant))
	}()
}

// warmTimeout bounds a sign-in's background IMAP login.
const warmTimeout = 30 * time.Second

// handleLogout is a POST (CSRF-protected by CrossOriginProtection). Authelia has no end-session endpoint, so signing
// out means: revoke the refresh token, which kills every token of the grant at the IdP; close the pooled IMAP
// connections, which the mail server would otherwise keep authenticated; delete the session.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.session(r)
	if err != nil {
		return err
	}
	if id := sess.GrantID(); id != "" {
		if err := s.tokens.SignOut(r.Context(), id); err != nil {
			// The local grant is gone either way; the user must not stay signed in because the IdP is down.
			s.log(r).Warn("revocation at the IdP failed; local sign-out done", slog.Any("err", err))
		}
		s.mail.CloseKey(id)
	}
	sess.Destroy()
	if err := sess.s.Save(r, w); err != nil {
		return err
	}
	http.Redirect(w, r, "/signed-out", http.StatusSeeOther)
	return nil
}

func (s *Server) handleSignedOut(w http.ResponseWriter, r *http.Request) error {
	s.render(w, r, http.StatusOK, "signedout", &homePage{pageBase: s.base(r, "Signed out")})
	return nil
}
