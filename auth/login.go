package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Flow is one sign-in in progress: the secrets Begin made, which web keeps in
// the user's server-side session until the callback. It binds the callback to
// the browser that started it. web must remove it from the session as soon as
// the callback arrives, whatever the outcome of Finish, so that a replayed
// callback finds no flow.
type Flow struct {
	// State is the CSRF token of the authorization request (RFC 6749 §10.12).
	State string
	// Nonce binds the ID token to this flow (OIDC Core §3.1.2.1).
	Nonce string
	// Verifier is the PKCE code verifier (RFC 7636 §4.1).
	Verifier string
	// ReturnTo is where to send the user after signing in. auth only
	// carries it; web validates it as a same-origin path.
	ReturnTo string
	// Created is when Begin made the flow; Finish refuses older flows.
	Created time.Time
}

// Identity is who signed in, from the userinfo endpoint. Users are keyed on
// (Issuer, Subject) (OIDC Core §5.7); Email is kept as the provider sent it
// and should be compared case-insensitively.
type Identity struct {
	Issuer, Subject string
	// Email is the mail login and the SMTP sender.
	Email string
	// Username is preferred_username, Name is name; either may be empty.
	Username, Name string
}

// TokenSet is what the token endpoint returned. Expiry is when the access
// token expires, zero if the provider did not say (RFC 6749 §5.1 expires_in).
type TokenSet struct {
	AccessToken, RefreshToken, IDToken string
	Expiry                             time.Time
	// Kind says whether the access token is a JWT the mail server validates offline; for a JWT, Expiry is at the
	// latest its exp (see InspectAccessToken).
	Kind TokenKind
}

// Login is the result of a completed sign-in.
type Login struct {
	// Identity is who signed in, from userinfo.
	Identity Identity
	// Tokens are the grant's first tokens, for the keeper to store.
	Tokens TokenSet
}

// Offline reports whether the sign-in came with a refresh token. Without one
// (offline_access not granted, or no explicit consent at Authelia) the grant
// ends when the access token expires and the user must sign in again.
func (l *Login) Offline() bool { return l.Tokens.RefreshToken != "" }

// Begin starts a sign-in: it makes a flow with a 256-bit state and nonce and a
// PKCE verifier, and returns it with the authorization URL to send the user
// to. PKCE S256 is always used (RFC 7636 §4.2), even if the provider does not
// advertise it, so that a downgrade is not possible.
//
// prompt=consent is not sent although OIDC Core §11 asks for it with
// offline_access: Authelia forces explicit consent for offline_access itself,
// and sending it would defeat its "remember this consent" option.
func (p *Provider) Begin(returnTo string) (Flow, string) {
	f := Flow{
		State:    randomString(),
		Nonce:    randomString(),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnTo,
		Created:  p.now(),
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce)}
	if len(p.cfg.Audience) > 0 {
		// Authelia (and Hydra, both fosite) take the audiences a token should carry as the space-separated
		// `audience` authorization parameter; the client's audience list must allow them. A JWT access token then
		// has them in aud, which Stalwart 0.16 checks against requireAudience.
		opts = append(opts, oauth2.SetAuthURLParam("audience", strings.Join(p.cfg.Audience, " ")))
	}
	u := p.oauth.AuthCodeURL(f.State, opts...)
	return f, u
}

// BeginDevice starts a sign-in that connects a mail client: like Begin, but
// with prompt=consent (OIDC Core §3.1.2.1, and §11, which asks for it with
// offline_access), so the user explicitly grants this one device offline
// access and the code yields a new grant of its own — its own refresh-token
// family, revoked alone when the device is. Finish completes it; the caller
// stores it with Keeper.StartDevice.
func (p *Provider) BeginDevice(returnTo string) (Flow, string) {
	f := Flow{
		State:    randomString(),
		Nonce:    randomString(),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnTo,
		Created:  p.now(),
	}
	u := p.oauth.AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier), oidc.Nonce(f.Nonce),
		oauth2.SetAuthURLParam("prompt", "consent"))
	return f, u
}

// randomString returns 32 random bytes, base64url without padding.
func randomString() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Friendly reasons for the RFC 6749 §4.1.2.1 and OIDC Core §3.1.2.6 error codes
// a provider may put in the callback.
var errorReasons = map[string]string{
	"access_denied":              "You declined access, so Postern cannot sign you in.",
	"consent_required":           "Consent is needed: please sign in again and allow Postern access.",
	"login_required":             "You need to sign in at the identity provider first.",
	"interaction_required":       "The identity provider needs you to complete a step; please sign in again.",
	"account_selection_required": "Please choose an account at the identity provider and try again.",
	"invalid_scope":              "The identity provider refused the requested permissions; ask your administrator to check Postern's client settings.",
	"unauthorized_client":        "Postern is not allowed to sign you in this way; ask your administrator to check its client settings.",
	"invalid_request":            "The identity provider rejected the sign-in request; ask your administrator to check Postern's client settings.",
	"unsupported_response_type":  "The identity provider rejected the sign-in request; ask your administrator to check Postern's client settings.",
	"server_error":               "The identity provider had an internal error; please try again.",
	"temporarily_unavailable":    "The identity provider is temporarily unavailable; please try again in a moment.",
}

const (
	reasonRetry   = "Sign-in could not be completed; please try again."
	reasonSuspect = "The sign-in response could not be trusted; please sign in again."
)

// Finish completes a sign-in from the callback's query parameters. It owns
// every check, in this order, and each failure is a *CallbackError:
//
//  1. the flow exists and is younger than ten minutes;
//  2. state equals the flow's, compared in constant time (RFC 6749 §10.12);
//  3. iss equals the issuer (RFC 9207 §2.4): required when the provider
//     advertises it, checked whenever present, before the error parameter
//     is trusted;
//  4. an error parameter (RFC 6749 §4.1.2.1) becomes a friendly reason, with
//     the provider's code as Code;
//  5. the code is exchanged with the PKCE verifier (RFC 7636 §4.5) and the
//     redirect_uri, authenticating with client_secret_basic;
//  6. the ID token is verified: signature, issuer, audience, expiry, azp,
//     then nonce and at_hash (OIDC Core §3.1.3.7, §3.1.3.8);
//  7. userinfo is fetched with the access token; its sub must equal the ID
//     token's (OIDC Core §5.3.2) and it must carry an email.
//
// The identity comes from userinfo, not the ID token: Authelia 4.39 puts no
// email or profile claims in the ID token.
func (p *Provider) Finish(ctx context.Context, f Flow, q url.Values) (*Login, error) {
	// 1. The flow.
	if f.State == "" || f.Nonce == "" || f.Verifier == "" || f.Created.IsZero() ||
		p.now().Sub(f.Created) > flowLifetime || f.Created.Sub(p.now()) > time.Minute {
		return nil, &CallbackError{
			Reason: "Your sign-in expired or was already used; please sign in again.",
			Code:   string(CodeFlowExpired), Err: ErrFlowExpired,
		}
	}

	// RFC 6749 §3.1: response parameters must not be repeated; a second
	// state, iss or code would let a crafted URL pass one check and feed
	// another.
	for _, name := range []string{"state", "iss", "code", "error"} {
		if len(q[name]) > 1 {
			return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeInvalidRequest),
				Err: fmt.Errorf("auth: callback parameter %q repeated", name)}
		}
	}

	// 2. State, in constant time so that its value cannot be learnt by
	// timing (the lengths are public).
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeStateMismatch), Err: ErrStateMismatch}
	}

	// 3. RFC 9207: mix-up defence. The issuer is public, so a plain
	// comparison is enough; it is an exact string match (RFC 9207 §2.4).
	iss, hasIss := q["iss"]
	switch {
	case hasIss && iss[0] != p.Issuer():
		return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeIssuerMismatch),
			Err: fmt.Errorf("%w: callback names another issuer", ErrIssuerMismatch)}
	case !hasIss && p.meta.IssParameterSupported:
		return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeIssuerMismatch),
			Err: fmt.Errorf("%w: callback has no iss although the provider advertises it", ErrIssuerMismatch)}
	}

	// 4. An error from the authorization endpoint.
	if code := q.Get("error"); code != "" {
		code = safeCode(code)
		reason, ok := errorReasons[code]
		if !ok {
			reason = reasonRetry
		}
		return nil, &CallbackError{Reason: reason, Code: code,
			Err: fmt.Errorf("auth: authorization error %s: %s", code, safeText(q.Get("error_description")))}
	}

	// 5. Exchange the code.
	code := q.Get("code")
	if code == "" {
		return nil, &CallbackError{Reason: reasonRetry, Code: string(CodeInvalidRequest),
			Err: errors.New("auth: callback has neither code nor error")}
	}
	tok, err := p.oauth.Exchange(p.withTokenClient(ctx), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return nil, exchangeError(err)
	}

	// 6. The ID token (OIDC Core §3.1.3.7).
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, &CallbackError{Reason: reasonRetry, Code: string(CodeInvalidIDToken),
			Err: errors.New("auth: token response has no id_token")}
	}
	idt, err := p.verifier.Verify(p.withClient(ctx), rawID)
	if err != nil {
		return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeInvalidIDToken),
			Err: fmt.Errorf("auth: verify id token: %w", err)}
	}
	var extra struct {
		AuthorizedParty string `json:"azp"`
	}
	if err := idt.Claims(&extra); err != nil {
		return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeInvalidIDToken),
			Err: fmt.Errorf("auth: id token claims: %w", err)}
	}
	// OIDC Core §3.1.3.7 steps 4 and 5: with several audiences, azp must
	// name this client; if present, it must anyway.
	if (len(idt.Audience) > 1 || extra.AuthorizedParty != "") && extra.AuthorizedParty != p.cfg.ClientID {
		return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeInvalidIDToken),
			Err: errors.New("auth: id token azp is not this client")}
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeNonceMismatch), Err: ErrNonceMismatch}
	}
	// OIDC Core §3.1.3.8: at_hash is optional in the code flow, but when
	// present it must match the access token.
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeAtHashMismatch),
				Err: fmt.Errorf("auth: id token at_hash: %w", err)}
		}
	}

	// 7. Userinfo.
	id, err := p.UserInfo(ctx, tok.AccessToken)
	if err != nil {
		return nil, &CallbackError{Reason: reasonRetry, Code: string(CodeUserinfoFailed), Err: err}
	}
	if id.Subject != idt.Subject {
		return nil, &CallbackError{Reason: reasonSuspect, Code: string(CodeSubMismatch), Err: ErrSubjectMismatch}
	}
	if id.Email == "" {
		return nil, &CallbackError{
			Reason: "Your account has no email address; ask your administrator to add one, then sign in again.",
			Code:   string(CodeNoEmail), Err: ErrNoEmail,
		}
	}

	return &Login{
		Identity: id,
		Tokens: withTokenKind(TokenSet{
			AccessToken:  tok.AccessToken,
			RefreshToken: tok.RefreshToken,
			IDToken:      rawID,
			Expiry:       tok.Expiry,
		}, p.cfg.AccessTokenType),
	}, nil
}

// exchangeError turns a code exchange failure into a CallbackError without
// repeating the response body, which x/oauth2's RetrieveError would.
func exchangeError(err error) *CallbackError {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return &CallbackError{Reason: reasonRetry, Code: string(CodeTokenRequestFailed),
			Err: fmt.Errorf("auth: exchange code: %w", err)}
	}
	code := string(CodeTokenError)
	if re.ErrorCode != "" {
		code = safeCode(re.ErrorCode)
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	reason := reasonRetry
	switch {
	case code == string(CodeInvalidGrant):
		// RFC 6749 §4.1.2: a code is single-use and short-lived (Authelia:
		// one minute); a reused one also revokes what it issued.
		reason = "This sign-in link was already used or has expired; please sign in again."
	case code == string(CodeInvalidClient), code == string(CodeUnauthorizedClient), status == 401, status == 403:
		reason = "Postern could not authenticate to the identity provider; ask your administrator to check its client secret."
	}
	return &CallbackError{Reason: reason, Code: code,
		Err: fmt.Errorf("auth: exchange code: HTTP %d %s: %s", status, code, safeText(re.ErrorDescription))}
}
