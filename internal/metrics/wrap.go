package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// Authenticator is the sign-in half of auth.Provider, as web.Authenticator declares it.
type Authenticator interface {
	Begin(returnTo string) (auth.Flow, string)
	Finish(ctx context.Context, f auth.Flow, q url.Values) (*auth.Login, error)
}

// signInReasons bound the reason label: the codes of RFC 6749 §4.1.2.1 and §5.2, OIDC Core §3.1.2.6 and Postern's
// own checks (auth.CallbackError.Code). The callback query is attacker-controlled, so any other code counts as
// "other" instead of creating a series.
var signInReasons = []string{
	// authorization endpoint (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6)
	"access_denied", "invalid_request", "unauthorized_client", "unsupported_response_type", "invalid_scope",
	"server_error", "temporarily_unavailable", "login_required", "consent_required", "interaction_required",
	"account_selection_required",
	// token endpoint (RFC 6749 §5.2)
	"invalid_grant", "invalid_client", "token_error", "token_request_failed",
	// Postern's checks
	"flow_expired", "state_mismatch", "issuer_mismatch", "invalid_id_token", "nonce_mismatch", "at_hash_mismatch",
	"userinfo_failed", "sub_mismatch", "no_email",
	"other",
}

// CountSignIns wraps a so that every Finish is counted: success in postern_sign_ins_total, failure by reason in
// postern_sign_in_failures_total. Pass the result to web.New instead of the provider.
func (m *Metrics) CountSignIns(a Authenticator) Authenticator { return signInCounter{a, m} }

type signInCounter struct {
	Authenticator
	m *Metrics
}

// Finish implements Authenticator.
func (c signInCounter) Finish(ctx context.Context, f auth.Flow, q url.Values) (*auth.Login, error) {
	l, err := c.Authenticator.Finish(ctx, f, q)
	if err == nil {
		c.m.signIns.Inc()
		return l, nil
	}
	reason := "other"
	var ce *auth.CallbackError
	if errors.As(err, &ce) && slices.Contains(signInReasons, ce.Code) {
		reason = ce.Code
	}
	c.m.signInFails.WithLabelValues(reason).Inc()
	return l, err
}

// Sender submits one message; web.Sender and web.SMTPSender have this shape.
type Sender interface {
	Send(ctx context.Context, c mail.Credentials, from string, to []string, msg io.Reader) error
}

// CountSends wraps s so that every submission is counted by outcome in postern_smtp_sends_total.
func (m *Metrics) CountSends(s Sender) Sender { return sendCounter{s, m} }

type sendCounter struct {
	Sender
	m *Metrics
}

// Send implements Sender.
func (c sendCounter) Send(ctx context.Context, cr mail.Credentials, from string, to []string, msg io.Reader) error {
	err := c.Sender.Send(ctx, cr, from, to, msg)
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, mail.ErrAuthFailed):
		outcome = "auth_failed"
	case errors.Is(err, mail.ErrAuthUnavailable):
		outcome = "auth_unavailable"
	default:
		outcome = "error"
	}
	c.m.sends.WithLabelValues(outcome).Inc()
	return err
}

// Middleware returns an HTTP middleware that observes every request's duration in
// postern_http_request_duration_seconds, labelled with its route pattern ("GET /mail/{box...}") and status code.
//
// patternOf names the route; pass (*web.Server).RoutePattern. When it is nil, the request's own Pattern is used
// after the handler ran, which is set only when the handler is a ServeMux that routes the very same *http.Request
// (web's request log passes a copy on). An unknown route is labelled "unmatched"; the path itself never becomes a
// label.
func (m *Metrics) Middleware(patternOf func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			route := ""
			if patternOf != nil {
				route = patternOf(r)
			}
			rec := &statusRecorder{ResponseWriter: w}
			start := time.Now()
			defer func() {
				if route == "" {
					route = r.Pattern
				}
				if route == "" {
					route = "unmatched"
				}
				code := rec.status
				if code == 0 {
					code = http.StatusOK
				}
				m.httpDuration.WithLabelValues(route, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

// statusRecorder remembers the status code. Unwrap lets http.ResponseController reach Flush (the live-update
// stream needs it) through the wrapper.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes a flush on, for handlers that assert http.Flusher rather than use a ResponseController.
func (w *statusRecorder) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
