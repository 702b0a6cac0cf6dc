package idp

import (
	"context"
	"crypto/subtle"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

const (
	sessionCookie   = "authelia_session"
	sessionLifespan = time.Hour        // Authelia's default session expiration
	flowLifespan    = 10 * time.Minute // time a user has to log in and consent
)

// flow is an authorization request waiting for the user. The fosite request is kept as parsed, so its RequestedAt is
// the time of the authorization request, which prompt=login and max_age are checked against.
type flow struct {
	id       string
	ar       fosite.AuthorizeRequester
	sid      string    // the login session that may consent; empty until the user logged in
	authTime time.Time // when that session authenticated
	expires  time.Time
}

// loginSession is the IdP's own browser session, so a second authorization skips the password but, in Authelia's
// explicit consent mode, not the consent page.
type loginSession struct {
	id       string
	username string
	authTime time.Time
	expires  time.Time
}

// handleAuthorize is the authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2).
func (p *IdP) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	p.stats.authorize.Add(1)
	ctx := r.Context()
	ar, err := p.oauth.NewAuthorizeRequest(ctx, r)
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, err)
		return
	}
	// fosite checks PKCE only when it issues the code, after login and consent; Authelia rejects the request up
	// front (RFC 7636 §4.4.1), which is what a relying party sees.
	form := ar.GetRequestForm()
	switch challenge, method := form.Get("code_challenge"), form.Get("code_challenge_method"); {
	case challenge == "":
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint(
			"Clients must include a code_challenge when performing the authorize code flow, but it is missing."))
		return
	case method != "S256":
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint(
			"Clients must use code_challenge_method=S256, plain is not allowed."))
		return
	}

	prompt := strings.Fields(form.Get("prompt"))
	sess := p.loginSessionLocked(r)
	if slices.Contains(prompt, "none") {
		// No page may be shown (OIDC Core §3.1.2.6): without a session that is login_required; with one, the code is
		// issued only on a remembered consent (explicit consent mode never remembers one).
		switch {
		case sess == nil:
			p.writeAuthorizeError(ctx, w, ar, fosite.ErrLoginRequired)
		case p.consentRememberedLocked(sess.username, ar):
			p.issueLocked(w, r, ar, sess.username, sess.authTime)
		default:
			p.writeAuthorizeError(ctx, w, ar, fosite.ErrConsentRequired)
		}
		return
	}

	if sess != nil && !slices.Contains(prompt, "login") && p.consentRememberedLocked(sess.username, ar) {
		p.issueLocked(w, r, ar, sess.username, sess.authTime)
		return
	}
	f := &flow{id: newRandomID(), ar: ar, expires: time.Now().Add(flowLifespan)}
	p.flows[f.id] = f
	if sess != nil && !slices.Contains(prompt, "login") {
		f.sid, f.authTime = sess.id, sess.authTime
		http.Redirect(w, r, pathConsent+"?flow_id="+f.id, http.StatusFound)
		return
	}
	http.Redirect(w, r, pathLogin+"?flow_id="+f.id, http.StatusFound)
}

// writeAuthorizeError sends an error to the client's redirect_uri when it is known and valid (else a JSON error
// page), with the RFC 9207 iss parameter Authelia adds to every authorization response.
func (p *IdP) writeAuthorizeError(ctx context.Context, w http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	p.log.Info("idp: authorization error", "error", rfc.ErrorField, "client_id", clientIDOf(ar))
	p.oauth.WriteAuthorizeError(ctx, &issWriter{ResponseWriter: w, iss: p.issuer}, ar, err)
}

func clientIDOf(ar fosite.Requester) string {
	if ar == nil || ar.GetClient() == nil {
		return ""
	}
	return ar.GetClient().GetID()
}

// issWriter adds iss to the query of a redirect, for the error responses fosite builds itself.
type issWriter struct {
	http.ResponseWriter
	iss   string
	wrote bool
}

func (w *issWriter) WriteHeader(code int) {
	if !w.wrote && code >= 300 && code < 400 {
		if loc := w.Header().Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err == nil {
				q := u.Query()
				q.Set("iss", w.iss)
				u.RawQuery = q.Encode()
				w.Header().Set("Location", u.String())
			}
		}
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *issWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (p *IdP) flowLocked(id string) *flow {
	f := p.flows[id]
	if f == nil || time.Now().After(f.expires) {
		delete(p.flows, id)
		return nil
	}
	return f
}

func (p *IdP) loginSessionLocked(r *http.Request) *loginSession {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	s := p.sessions[c.Value]
	if s == nil || time.Now().After(s.expires) {
		delete(p.sessions, c.Value)
		return nil
	}
	if _, ok := p.users[s.username]; !ok {
		return nil
	}
	return s
}

func (p *IdP) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	f := p.flowLocked(r.URL.Query().Get("flow_id"))
	if f == nil {
		p.renderMessage(w, http.StatusBadRequest, "This sign-in request is unknown or has expired. Start again from the application.")
		return
	}
	p.render(w, http.StatusOK, loginTmpl, loginPage{FlowID: f.id, ClientID: clientIDOf(f.ar)})
}

func (p *IdP) handleLogin(w http.ResponseWriter, r *http.Request) {
	f := p.flowLocked(r.PostFormValue("flow_id"))
	if f == nil {
		p.renderMessage(w, http.StatusBadRequest, "This sign-in request is unknown or has expired. Start again from the application.")
		return
	}
	username := r.PostFormValue("username")
	u, ok := p.users[username]
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(r.PostFormValue("password"))) != 1 || u.Password == "" {
		p.log.Info("idp: login failed", "username", username)
		p.render(w, http.StatusUnauthorized, loginTmpl, loginPage{
			FlowID: f.id, ClientID: clientIDOf(f.ar), Username: username, Error: "Incorrect username or password.",
		})
		return
	}
	now := time.Now()
	s := &loginSession{id: newRandomID(), username: u.Username, authTime: now, expires: now.Add(sessionLifespan)}
	if old, err := r.Cookie(sessionCookie); err == nil {
		delete(p.sessions, old.Value) // a new id at login: no session fixation
	}
	p.sessions[s.id] = s
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: s.id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: strings.HasPrefix(p.issuer, "https://"),
	})
	f.sid, f.authTime = s.id, now
	p.log.Info("idp: login", "username", u.Username)
	if p.consentRememberedLocked(u.Username, f.ar) {
		delete(p.flows, f.id)
		p.issueLocked(w, r, f.ar, u.Username, now)
		return
	}
	http.Redirect(w, r, pathConsent+"?flow_id="+f.id, http.StatusSeeOther)
}

// consentFlowLocked returns the flow if the browser's session is the one that logged in for it; consent must come
// from that user.
func (p *IdP) consentFlowLocked(w http.ResponseWriter, r *http.Request, id string) (*flow, *loginSession) {
	f := p.flowLocked(id)
	if f == nil {
		p.renderMessage(w, http.StatusBadRequest, "This sign-in request is unknown or has expired. Start again from the application.")
		return nil, nil
	}
	s := p.loginSessionLocked(r)
	if s == nil || f.sid == "" || subtle.ConstantTimeCompare([]byte(s.id), []byte(f.sid)) != 1 {
		http.Redirect(w, r, pathLogin+"?flow_id="+f.id, http.StatusSeeOther)
		return nil, nil
	}
	return f, s
}

func (p *IdP) handleConsentPage(w http.ResponseWriter, r *http.Request) {
	f, s := p.consentFlowLocked(w, r, r.URL.Query().Get("flow_id"))
	if f == nil {
		return
	}
	page := consentPage{FlowID: f.id, ClientID: clientIDOf(f.ar), Username: s.username, Remember: p.consents != nil}
	for _, sc := range f.ar.GetRequestedScopes() {
		page.Scopes = append(page.Scopes, scopeLine{Name: sc, Description: scopeDescriptions[sc]})
	}
	p.render(w, http.StatusOK, consentTmpl, page)
}

func (p *IdP) handleConsent(w http.ResponseWriter, r *http.Request) {
	f, s := p.consentFlowLocked(w, r, r.PostFormValue("flow_id"))
	if f == nil {
		return
	}
	delete(p.flows, f.id) // one decision per flow
	ctx := r.Context()
	ar := f.ar
	if r.PostFormValue("consent") != "accept" {
		p.log.Info("idp: consent denied", "username", s.username, "client_id", clientIDOf(ar))
		p.writeAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The resource owner denied the request."))
		return
	}
	p.log.Info("idp: consent granted", "username", s.username, "client_id", clientIDOf(ar))
	p.rememberConsentLocked(s.username, ar)
	p.issueLocked(w, r, ar, s.username, f.authTime)
}

// issueLocked grants what ar asks for (the user consented, now or before) and sends the authorization response.
func (p *IdP) issueLocked(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, username string, authTime time.Time) {
	ctx := r.Context()
	for _, sc := range ar.GetRequestedScopes() {
		ar.GrantScope(sc)
	}
	for _, aud := range ar.GetRequestedAudience() {
		ar.GrantAudience(aud)
	}
	resp, err := p.oauth.NewAuthorizeResponse(ctx, ar, p.newSession(username, authTime, ar.GetRequestedAt()))
	if err != nil {
		p.writeAuthorizeError(ctx, w, ar, err)
		return
	}
	resp.AddParameter("iss", p.issuer) // RFC 9207, also for form_post and fragment
	p.oauth.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// newSession is the grant's session. The ID token gets only the standard claims, as Authelia 4.39's default claims
// policy does (no email, no profile claims; protocol-notes B.2).
func (p *IdP) newSession(username string, authTime, requestedAt time.Time) *openid.DefaultSession {
	sub := Subject(username)
	return &openid.DefaultSession{
		Claims: &jwt.IDTokenClaims{
			Issuer:   p.issuer,
			Subject:  sub,
			AuthTime: authTime.UTC().Truncate(time.Second),
			// Both in whole seconds, as in the ID token, so a login in the same second as the request still counts
			// as "after" it for prompt=login (fosite compares them).
			RequestedAt: requestedAt.UTC().Truncate(time.Second),
		},
		Headers:  &jwt.Headers{Extra: map[string]interface{}{"kid": p.kid}},
		Subject:  sub,
		Username: username,
	}
}

func newEmptySession() *openid.DefaultSession { return openid.NewDefaultSession() }

func (p *IdP) handleHome(w http.ResponseWriter, _ *http.Request) {
	p.renderMessage(w, http.StatusOK, "Postern development identity provider (shaped like Authelia 4.39). Sign in from the application.")
}

var scopeDescriptions = map[string]string{
	"openid":         "Use OpenID to verify your identity",
	"offline_access": "Automatically refresh these permissions without user interaction",
	"profile":        "Access your profile information",
	"email":          "Access your email addresses",
	"address":        "Access your address",
	"phone":          "Access your phone number",
	"groups":         "Access your group membership",
}
