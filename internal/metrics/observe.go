package metrics

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// The Observe methods make *Metrics a web.Observer: cmd passes the registry in web.Config.Observer, and web reports
// each request, sign-in callback and submission. They are safe for concurrent use.

// ObserveRequest records one request's duration in postern_http_request_duration_seconds, labelled with its route
// pattern ("GET /mail/{box...}") and status code. A request no route matched is labelled "unmatched": the path itself
// never becomes a label.
func (m *Metrics) ObserveRequest(route string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.httpDuration.WithLabelValues(route, strconv.Itoa(status)).Observe(d.Seconds())
}

// ObserveSignIn counts one sign-in callback: success in postern_sign_ins_total, failure by reason in
// postern_sign_in_failures_total.
func (m *Metrics) ObserveSignIn(err error) {
	if err == nil {
		m.signIns.Inc()
		return
	}
	m.signInFails.WithLabelValues(signInReason(err)).Inc()
}

// sendOutcomes label postern_smtp_sends_total; each is reported at 0 until it happens.
var sendOutcomes = []string{"ok", "auth_failed", "auth_unavailable", "error"}

// ObserveSend counts one submission by outcome in postern_smtp_sends_total.
func (m *Metrics) ObserveSend(err error) {
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
	m.sends.WithLabelValues(outcome).Inc()
}

// signInReason names a failed callback for the reason label: its auth.CallbackError code when that is one of
// signInReasons, "other" otherwise. The callback query is attacker-controlled, so an unknown code must not create a
// series.
func signInReason(err error) string {
	var ce *auth.CallbackError
	if errors.As(err, &ce) && slices.Contains(signInReasons, ce.Code) {
		return ce.Code
	}
	return "other"
}

// signInReasons bound the reason label: auth's callback codes (RFC 6749 §4.1.2.1 and §5.2, OIDC Core §3.1.2.6 and
// Postern's own checks), and "other".
var signInReasons = append(labels(auth.CallbackCodes()), "other")
