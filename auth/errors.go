package auth

import (
	"errors"
	"strings"
)

// Errors from the token, userinfo and revocation endpoints. Refresh wraps
// exactly one of ErrInvalidGrant, ErrTransient, ErrOutcomeUnknown or
// ErrRejected, so a caller can decide with errors.Is whether retrying is safe.
// The distinction matters because Authelia rotates refresh tokens on every use
// and revokes the whole grant when an old one is presented again: a blind
// retry after a refresh that did commit logs the user out.
var (
	// ErrInvalidGrant means the token endpoint answered invalid_grant
	// (RFC 6749 §5.2): the refresh token is expired, revoked or was already
	// used, so the grant is gone and the user must sign in again.
	ErrInvalidGrant = errors.New("auth: invalid grant")

	// ErrTransient means nothing was committed at the identity provider for
	// sure: the connection was refused, DNS or the TLS handshake failed before
	// the request was written, or the provider answered 503 or 429. Retrying
	// later with the same refresh token is safe; back off first.
	ErrTransient = errors.New("auth: identity provider temporarily unavailable")

	// ErrOutcomeUnknown means the request reached the identity provider and may
	// have been processed, but no usable answer came back: a timeout or
	// connection reset after sending, a 500, 502 or 504, or a 200 without an
	// access token. A refresh may have rotated the tokens; the caller must
	// probe (for example call UserInfo with the old access token: Authelia
	// revokes it in the same transaction as a rotation) before any retry.
	ErrOutcomeUnknown = errors.New("auth: outcome of the request is unknown")

	// ErrRejected means the token endpoint refused the request for a reason
	// other than the grant itself (invalid_client, unauthorized_client,
	// invalid_request, invalid_scope, an unexpected 4xx). That is almost
	// always a configuration problem (a wrong client secret, a missing
	// refresh_token grant type), so the tokens are still good: keep them,
	// back off and make the failure visible to the operator. Authelia also
	// answers invalid_request to a refresh that raced another refresh of the
	// same token; reload the grant before trying again.
	ErrRejected = errors.New("auth: request rejected by the identity provider")

	// ErrTokenRejected means the userinfo endpoint answered 401 or 403 to an
	// access token (RFC 6750 §3.1): it is expired, revoked, or lacks the
	// openid scope.
	ErrTokenRejected = errors.New("auth: access token rejected")

	// ErrRevocationUnsupported means the provider's discovery document has no
	// revocation_endpoint (RFC 7009), so Revoke cannot end the grant.
	ErrRevocationUnsupported = errors.New("auth: identity provider has no revocation endpoint")

	// ErrIntrospectionUnsupported means the provider advertises no
	// introspection_endpoint (RFC 8414 §2, RFC 7662) and none is configured,
	// so Introspect cannot be used and an unknown refresh outcome can only
	// be probed with UserInfo.
	ErrIntrospectionUnsupported = errors.New("auth: identity provider has no introspection endpoint")

	// ErrNeedsSignIn means a grant can no longer be used (its refresh token
	// was refused, or it was never granted offline access) and the user has
	// to go through sign-in again. The keeper returns it; web maps it to a
	// redirect to the sign-in page with return_to.
	ErrNeedsSignIn = errors.New("auth: sign-in required")
)

// Errors wrapped by a *CallbackError from Finish, for callers and tests that
// need to tell the checks apart. Each is also reported as CallbackError.Code.
var (
	// ErrFlowExpired means the login flow was missing, incomplete or older
	// than the flow lifetime: the user took too long, or the callback was
	// opened a second time after the flow was consumed.
	ErrFlowExpired = errors.New("auth: sign-in flow expired or already used")

	// ErrStateMismatch means the callback's state did not match the flow's
	// (RFC 6749 §10.12): a forged or cross-session callback.
	ErrStateMismatch = errors.New("auth: state mismatch")

	// ErrIssuerMismatch means the callback's iss parameter was missing while
	// the provider advertises it, or named another issuer (RFC 9207 §2.4): a
	// possible mix-up attack.
	ErrIssuerMismatch = errors.New("auth: issuer mismatch")

	// ErrNonceMismatch means the ID token's nonce did not match the flow's
	// (OIDC Core §3.1.3.7 step 11): a replayed or injected ID token.
	ErrNonceMismatch = errors.New("auth: nonce mismatch")

	// ErrSubjectMismatch means userinfo described a different subject than the
	// ID token (OIDC Core §5.3.2): its claims must not be used.
	ErrSubjectMismatch = errors.New("auth: userinfo subject does not match the ID token")

	// ErrNoEmail means userinfo carried no email claim. Postern needs the
	// address: it is the mail login and the SMTP sender.
	ErrNoEmail = errors.New("auth: account has no email address")
)

// CallbackError is the error Finish returns for every failed check. Reason is
// a short sentence that is safe to show to the user; Code is the identity
// provider's error code (RFC 6749 §4.1.2.1, for example access_denied) or one
// of Postern's own (state_mismatch, issuer_mismatch, …) and is safe to log;
// Err is the cause, for logs. None of them ever holds a token, authorization
// code, verifier, state or nonce value.
type CallbackError struct {
	// Reason is shown to the user.
	Reason string
	// Code names the failure for logs and for callers that branch on it.
	Code string
	// Err is the cause, for logs.
	Err error
}

// Error returns the code and the cause, never the user-facing reason alone, so
// a log line says what actually failed.
func (e *CallbackError) Error() string {
	if e.Err == nil {
		return "auth: callback: " + e.Code
	}
	return "auth: callback: " + e.Code + ": " + e.Err.Error()
}

// Unwrap returns the cause, so errors.Is(err, ErrStateMismatch) and the like
// work through a *CallbackError.
func (e *CallbackError) Unwrap() error { return e.Err }

// safeCode returns an OAuth error code fit for logs and CallbackError.Code.
// Error codes arrive in the callback query, which anyone can craft, so only
// the RFC 6749 §4.1.2.1 character set, in a bounded length, is kept.
func safeCode(code string) string {
	if code == "" || len(code) > 64 {
		return "invalid_error_code"
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return "invalid_error_code"
		}
	}
	return code
}

// safeText trims an error_description for logs: printable ASCII only
// (RFC 6749 §5.2 allows no more), at most 200 bytes. Descriptions never carry
// tokens, but they do come from the network.
func safeText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 200 {
			b.WriteString("…")
			break
		}
		if r >= 0x20 && r <= 0x7e {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// CallbackCode is a value of CallbackError.Code. The field stays a string
// because a provider may send any RFC 6749 code in the callback; the codes
// Postern knows, and the only ones it produces itself, are listed by
// CallbackCodes, so that a caller (metrics) can bound a label by them and
// count anything else as "other".
type CallbackCode string

// Codes of the authorization endpoint (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6),
// passed on from the callback's error parameter.
const (
	CodeAccessDenied             CallbackCode = "access_denied"
	CodeInvalidRequest           CallbackCode = "invalid_request"
	CodeUnauthorizedClient       CallbackCode = "unauthorized_client"
	CodeUnsupportedResponseType  CallbackCode = "unsupported_response_type"
	CodeInvalidScope             CallbackCode = "invalid_scope"
	CodeServerError              CallbackCode = "server_error"
	CodeTemporarilyUnavailable   CallbackCode = "temporarily_unavailable"
	CodeLoginRequired            CallbackCode = "login_required"
	CodeConsentRequired          CallbackCode = "consent_required"
	CodeInteractionRequired      CallbackCode = "interaction_required"
	CodeAccountSelectionRequired CallbackCode = "account_selection_required"
)

// Codes of the token endpoint (RFC 6749 §5.2) during the code exchange, and
// Postern's names for an exchange that failed without one.
const (
	CodeInvalidGrant         CallbackCode = "invalid_grant"
	CodeInvalidClient        CallbackCode = "invalid_client"
	CodeUnsupportedGrantType CallbackCode = "unsupported_grant_type"
	CodeTokenError           CallbackCode = "token_error"          // an error response without a code
	CodeTokenRequestFailed   CallbackCode = "token_request_failed" // no answer from the token endpoint
)

// Postern's own checks in Finish.
const (
	CodeFlowExpired      CallbackCode = "flow_expired"
	CodeStateMismatch    CallbackCode = "state_mismatch"
	CodeIssuerMismatch   CallbackCode = "issuer_mismatch"
	CodeInvalidIDToken   CallbackCode = "invalid_id_token"
	CodeNonceMismatch    CallbackCode = "nonce_mismatch"
	CodeAtHashMismatch   CallbackCode = "at_hash_mismatch"
	CodeUserinfoFailed   CallbackCode = "userinfo_failed"
	CodeSubMismatch      CallbackCode = "sub_mismatch"
	CodeNoEmail          CallbackCode = "no_email"
	CodeInvalidErrorCode CallbackCode = "invalid_error_code" // the provider's code was not a valid RFC 6749 code
)

// CallbackCodes returns every CallbackCode Postern knows, in a stable order: a
// new slice on each call.
func CallbackCodes() []CallbackCode {
	return []CallbackCode{
		CodeAccessDenied, CodeInvalidRequest, CodeUnauthorizedClient, CodeUnsupportedResponseType, CodeInvalidScope,
		CodeServerError, CodeTemporarilyUnavailable, CodeLoginRequired, CodeConsentRequired, CodeInteractionRequired,
		CodeAccountSelectionRequired,
		CodeInvalidGrant, CodeInvalidClient, CodeUnsupportedGrantType, CodeTokenError, CodeTokenRequestFailed,
		CodeFlowExpired, CodeStateMismatch, CodeIssuerMismatch, CodeInvalidIDToken, CodeNonceMismatch,
		CodeAtHashMismatch, CodeUserinfoFailed, CodeSubMismatch, CodeNoEmail, CodeInvalidErrorCode,
	}
}
