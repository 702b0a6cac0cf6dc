package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// defaultScopes are requested when Config.Scopes is empty. offline_access is
// what makes Authelia issue a refresh token (OIDC Core §11); profile and email
// make userinfo return preferred_username, name and email.
var defaultScopes = []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}

// Config describes Postern's registration at the identity provider.
type Config struct {
	// Issuer is the provider's public issuer URL, exactly as it appears in its
	// discovery document (no trailing slash for Authelia).
	Issuer string
	// ClientID and ClientSecret authenticate Postern at the token and
	// revocation endpoints with client_secret_basic (RFC 6749 §2.3.1).
	ClientID, ClientSecret string
	// RedirectURL is the registered callback URL; it must match exactly.
	RedirectURL string
	// Scopes requested at sign-in; when empty, "openid profile email
	// offline_access". openid is added if missing. Without offline_access
	// there is no refresh token and a sign-in lasts one access token.
	Scopes []string

	// Timeout bounds each request that is safe to give up on early:
	// discovery, JWKS, userinfo, introspection and revocation. Zero keeps
	// the timeout of the client passed to New.
	Timeout time.Duration
	// TokenTimeout bounds each token endpoint request (code exchange,
	// refresh). It should be far longer than Timeout: a refresh request
	// that was sent may still be processed by a slow or stalled provider,
	// which then rotates the refresh token and answers to nobody (issue 17).
	// Zero keeps the timeout of the client passed to New.
	TokenTimeout time.Duration
	// IntrospectionURL overrides the discovery document's
	// introspection_endpoint (RFC 7662). Authelia advertises its endpoint;
	// Ory Hydra serves introspection only on its admin port and does not
	// advertise it, so there it must be configured.
	IntrospectionURL string
	// Audience is sent as the `audience` authorization parameter (space-separated), so that JWT access tokens carry
	// it in aud: Stalwart 0.16 requires its requireAudience there (default "stalwart"). Empty sends none.
	Audience []string
	// AccessTokenType is the JOSE typ an access token must have to count as a JWT (TokenJWT); empty means
	// DefaultAccessTokenType, "at+jwt" (RFC 9068 §2.1). Ory Hydra's JWT access tokens say "JWT".
	AccessTokenType string
}

// flowLifetime bounds how long a sign-in may take between Begin and Finish.
// Authelia's authorization code lives one minute, but the user may spend
// longer on the login and consent pages before the code is even issued.
const flowLifetime = 10 * time.Minute

// maxBody bounds how much of any identity provider response is read.
const maxBody = 1 << 20

// Provider is the OpenID Connect relying party for one issuer. It is safe for
// concurrent use.
type Provider struct {
	cfg Config
	// hc serves requests bounded by Config.Timeout, tokenHC token endpoint
	// requests bounded by Config.TokenTimeout; both share one transport.
	hc, tokenHC *http.Client
	oidc        *oidc.Provider
	verifier    *oidc.IDTokenVerifier
	oauth       oauth2.Config
	meta        metadata
	now         func() time.Time
}

// metadata holds the discovery fields go-oidc does not expose (OpenID
// Connect Discovery 1.0 §3, RFC 8414 §2, RFC 9207 §3).
type metadata struct {
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	IntrospectionEndpoint string   `json:"introspection_endpoint"`
	IssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
}

// New fetches the issuer's discovery document and returns a Provider for it.
// Every request the Provider makes, now and later, goes through hc's
// transport; when hc is nil a client with a 30-second timeout is used.
// Config.Timeout and Config.TokenTimeout, when set, replace hc's timeout for
// their kinds of request.
func New(ctx context.Context, cfg Config, hc *http.Client) (*Provider, error) {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"issuer", cfg.Issuer}, {"client id", cfg.ClientID},
		{"client secret", cfg.ClientSecret}, {"redirect url", cfg.RedirectURL},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("auth: config: missing %s", strings.Join(missing, ", "))
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = defaultScopes
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	cfg.Scopes = slices.Clone(cfg.Scopes)
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.IntrospectionURL != "" {
		if u, err := url.Parse(cfg.IntrospectionURL); err != nil || !u.IsAbs() || u.Host == "" {
			return nil, fmt.Errorf("auth: config: introspection url %q is not an absolute URL", cfg.IntrospectionURL)
		}
	}
	tokenHC := withTimeout(hc, cfg.TokenTimeout)
	hc = withTimeout(hc, cfg.Timeout)

	// go-oidc keeps the client from this context for the JWKS fetches later
	// on, and checks that the discovered issuer equals cfg.Issuer exactly
	// (OpenID Connect Discovery 1.0 §4.3).
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, hc), cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("auth: discovery: %w", err)
	}
	var meta metadata
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("auth: discovery: %w", err)
	}
	if meta.UserinfoEndpoint == "" {
		// Authelia 4.39 puts no email in the ID token: without userinfo
		// there is no identity to sign in with.
		return nil, errors.New("auth: discovery: no userinfo_endpoint")
	}

	ep := op.Endpoint()
	// Explicit, never auto-detect: after a failure x/oauth2's auto-detection
	// re-sends the request with the credentials, and the refresh token, in
	// the body, and reports the second error instead of the first.
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if cfg.IntrospectionURL != "" {
		meta.IntrospectionEndpoint = cfg.IntrospectionURL
	}
	p := &Provider{
		cfg:      cfg,
		hc:       hc,
		tokenHC:  tokenHC,
		oidc:     op,
		verifier: op.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     ep,
			RedirectURL:  cfg.RedirectURL,
			Scopes:       cfg.Scopes,
		},
		meta: meta,
		now:  time.Now,
	}
	return p, nil
}

// withTimeout returns a copy of hc with timeout d, or hc itself when d is 0.
func withTimeout(hc *http.Client, d time.Duration) *http.Client {
	if d <= 0 {
		return hc
	}
	c := *hc
	c.Timeout = d
	return &c
}

// Issuer returns the issuer identifier, as configured and as discovered.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// SupportsIssParameter reports whether the provider advertises
// authorization_response_iss_parameter_supported (RFC 9207 §3). When it does,
// Finish requires iss on every callback.
func (p *Provider) SupportsIssParameter() bool { return p.meta.IssParameterSupported }

// Warnings lists discovery findings an operator should see at start-up but
// that do not stop Postern from working. Begin uses PKCE S256 whatever the
// provider advertises (RFC 7636 §4.2: S256 is mandatory to implement).
func (p *Provider) Warnings() []string {
	var w []string
	if !slices.Contains(p.meta.CodeChallengeMethods, "S256") {
		w = append(w, "code_challenge_methods_supported does not list S256; sign-in uses it anyway")
	}
	if !p.meta.IssParameterSupported {
		w = append(w, "authorization_response_iss_parameter_supported is not set; callbacks cannot be checked for mix-up attacks (RFC 9207)")
	}
	if p.meta.RevocationEndpoint == "" {
		w = append(w, "no revocation_endpoint; sign-out cannot end grants at the identity provider")
	}
	if p.meta.IntrospectionEndpoint == "" {
		w = append(w, "no introspection_endpoint (RFC 7662) and no oidc.introspection_url; after a lost refresh answer "+
			"only the userinfo probe is left, which cannot tell once the old access token has expired")
	}
	return w
}

// withClient returns ctx carrying the Provider's HTTP client, which is how
// go-oidc is told which client to use.
func (p *Provider) withClient(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.hc)
}

// withTokenClient returns ctx carrying the Provider's token endpoint client,
// which is how x/oauth2 is told which client to use for the code exchange.
func (p *Provider) withTokenClient(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.tokenHC)
}

// tokenResponse is a successful token endpoint response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string      `json:"access_token"`
	TokenType    string      `json:"token_type"`
	RefreshToken string      `json:"refresh_token"`
	ExpiresIn    json.Number `json:"expires_in"`
	IDToken      string      `json:"id_token"`
}

// errorResponse is an error response from the token or revocation endpoint
// (RFC 6749 §5.2, RFC 7009 §2.2.1).
type errorResponse struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

// Refresh redeems refreshToken at the token endpoint (RFC 6749 §6) and
// returns the new token set. Authelia rotates the refresh token on every use;
// when a provider sends none back, the old one is kept. The caller must
// persist the result before using the new access token, and must never call
// Refresh twice concurrently with the same refresh token.
//
// Every error wraps exactly one of ErrInvalidGrant, ErrTransient,
// ErrOutcomeUnknown or ErrRejected, plus the provider's error code when there
// is one. The request is written by hand rather than through x/oauth2's
// TokenSource so that the outcome can be classified this precisely.
func (p *Provider) Refresh(ctx context.Context, refreshToken string) (TokenSet, error) {
	if refreshToken == "" {
		return TokenSet{}, fmt.Errorf("auth: refresh: no refresh token (offline access not granted): %w", ErrInvalidGrant)
	}
	// The request time, not the response time, anchors the expiry: the
	// token cannot have been issued before the request was sent.
	start := p.now()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	resp, body, err := p.post(ctx, p.tokenHC, p.oauth.Endpoint.TokenURL, form)
	if err != nil {
		return TokenSet{}, fmt.Errorf("auth: refresh: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusTooManyRequests:
		return TokenSet{}, fmt.Errorf("auth: refresh: %w (HTTP %d)", ErrTransient, resp.StatusCode)
	case resp.StatusCode >= 500:
		return TokenSet{}, fmt.Errorf("auth: refresh: %w (HTTP %d)", ErrOutcomeUnknown, resp.StatusCode)
	default:
		e := parseError(body)
		class := ErrRejected
		if e.Code == "invalid_grant" {
			class = ErrInvalidGrant
		}
		return TokenSet{}, fmt.Errorf("auth: refresh: %w (HTTP %d, %s)", class, resp.StatusCode, e)
	}

	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		// A 200 means the provider may well have rotated the grant; without
		// the new tokens the old ones may be dead too.
		return TokenSet{}, fmt.Errorf("auth: refresh: %w: 200 response without a usable access token", ErrOutcomeUnknown)
	}
	ts := withTokenKind(TokenSet{
		AccessToken:  tr.AccessToken,
		RefreshToken: tr.RefreshToken,
		IDToken:      tr.IDToken,
		Expiry:       expiry(start, tr.ExpiresIn),
	}, p.cfg.AccessTokenType)
	if ts.RefreshToken == "" {
		// RFC 6749 §6: the provider MAY issue a new refresh token; if it
		// does not, the old one stays valid.
		ts.RefreshToken = refreshToken
	}
	return ts, nil
}

// expiry turns expires_in (RFC 6749 §5.1, seconds) into a time. It is zero
// when the provider sent none: the lifetime is then unknown.
func expiry(start time.Time, expiresIn json.Number) time.Time {
	n, err := strconv.ParseInt(expiresIn.String(), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return start.Add(time.Duration(n) * time.Second)
}

func parseError(body []byte) errorResponse {
	var e errorResponse
	if json.Unmarshal(body, &e) != nil || e.Code == "" {
		return errorResponse{Code: "no_error_code"}
	}
	e.Code = safeCode(e.Code)
	e.Description = safeText(e.Description)
	return e
}

// String formats the error for logs: code and description, which Authelia
// fills with fixed text and never with a token.
func (e errorResponse) String() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// post sends an RFC 6749 §2.3.1 client_secret_basic authenticated form POST
// and reads the response. Transport errors are classified as ErrTransient
// when the request was certainly not delivered, ErrOutcomeUnknown otherwise.
func (p *Provider) post(ctx context.Context, hc *http.Client, endpoint string, form url.Values) (*http.Response, []byte, error) {
	var tr sendTrace
	ctx = httptrace.WithClientTrace(ctx, tr.clientTrace())
	req, err := p.formRequest(ctx, endpoint, form)
	if err != nil {
		return nil, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", tr.classify(err), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		// The provider answered, so it processed the request.
		return nil, nil, fmt.Errorf("%w: reading response: %w", ErrOutcomeUnknown, err)
	}
	return resp, body, nil
}

// formRequest builds an RFC 6749 §2.3.1 client_secret_basic authenticated
// form POST.
func (p *Provider) formRequest(ctx context.Context, endpoint string, form url.Values) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// Authelia (like RFC 6749 §2.3.1 requires) form-urldecodes both halves
	// of the header, so an unescaped "+" in a secret would become a space.
	req.SetBasicAuth(url.QueryEscape(p.cfg.ClientID), url.QueryEscape(p.cfg.ClientSecret))
	return req, nil
}

// sendTrace records how far a request got, to tell "never delivered" from
// "delivered, answer lost". With the standard transport GetConn always fires
// first and WroteRequest once the request is on the wire.
// The hooks run on the transport's goroutines, hence the atomics.
type sendTrace struct {
	started, wrote atomic.Bool
}

func (t *sendTrace) clientTrace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn:      func(string) { t.started.Store(true) },
		WroteRequest: func(httptrace.WroteRequestInfo) { t.wrote.Store(true) },
	}
}

// classify maps a transport error to ErrTransient or ErrOutcomeUnknown.
func (t *sendTrace) classify(err error) error {
	if t.started.Load() {
		// The standard transport traced the request: it either reached the
		// wire (a write error may still have delivered every byte) or not.
		if t.wrote.Load() {
			return ErrOutcomeUnknown
		}
		return ErrTransient
	}
	// A custom transport that does not report tracing: judge by the error.
	if notSent(err) {
		return ErrTransient
	}
	return ErrOutcomeUnknown
}

// notSent reports whether err can only happen before a request is sent:
// dialing, DNS, TLS handshake failures.
func notSent(err error) bool {
	var (
		opErr    *net.OpError
		dnsErr   *net.DNSError
		certErr  *tls.CertificateVerificationError
		recErr   tls.RecordHeaderError
		authErr  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		alertErr tls.AlertError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &dnsErr),
		errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &authErr),
		errors.As(err, &hostErr), errors.As(err, &alertErr):
		return true
	case errors.As(err, &opErr):
		return opErr.Op == "dial"
	}
	return false
}

// userinfoClaims are the standard claims Postern uses (OIDC Core §5.1).
type userinfoClaims struct {
	Subject           string `json:"sub"`
	Email             string `json:"email"`
	PreferredUsername string `json:"preferred_username"`
	Name              string `json:"name"`
}

// UserInfo calls the userinfo endpoint (OIDC Core §5.3) with accessToken as a
// bearer token and returns the identity it describes. It answers
// ErrTokenRejected on 401 or 403 (RFC 6750 §3.1), so it doubles as a probe of
// whether an access token is still alive. 5xx, 429 and network errors wrap
// ErrTransient: a GET changes nothing, so it is always safe to repeat.
func (p *Provider) UserInfo(ctx context.Context, accessToken string) (Identity, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.meta.UserinfoEndpoint, nil)
	if err != nil {
		return Identity{}, fmt.Errorf("auth: userinfo: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return Identity{}, fmt.Errorf("auth: userinfo: %w: %w", ErrTransient, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	switch {
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return Identity{}, fmt.Errorf("auth: userinfo: %w (HTTP %d)", ErrTokenRejected, resp.StatusCode)
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests:
		return Identity{}, fmt.Errorf("auth: userinfo: %w (HTTP %d)", ErrTransient, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return Identity{}, fmt.Errorf("auth: userinfo: unexpected HTTP %d", resp.StatusCode)
	case err != nil:
		return Identity{}, fmt.Errorf("auth: userinfo: %w: reading response: %w", ErrTransient, err)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/jwt" {
		return Identity{}, errors.New("auth: userinfo: response is a signed JWT; " +
			"set userinfo_signed_response_alg: none for this client (Stalwart needs plain JSON too)")
	}
	var c userinfoClaims
	if err := json.Unmarshal(body, &c); err != nil {
		return Identity{}, fmt.Errorf("auth: userinfo: decode: %w", err)
	}
	if c.Subject == "" {
		return Identity{}, errors.New("auth: userinfo: response has no sub claim")
	}
	return Identity{
		Issuer:   p.Issuer(),
		Subject:  c.Subject,
		Email:    c.Email,
		Username: c.PreferredUsername,
		Name:     c.Name,
	}, nil
}

// Revoke asks the provider to revoke token (RFC 7009 §2.1), authenticating
// with client_secret_basic. hint is "refresh_token", "access_token" or empty.
// Revoking a refresh token at Authelia ends the whole grant, access tokens
// included. A 200 is success, including for a token the provider no longer
// knows (RFC 7009 §2.2). 503 and errors before sending wrap ErrTransient;
// revocation is idempotent, so it is safe to retry.
func (p *Provider) Revoke(ctx context.Context, token, hint string) error {
	if p.meta.RevocationEndpoint == "" {
		return ErrRevocationUnsupported
	}
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	resp, body, err := p.post(ctx, p.hc, p.meta.RevocationEndpoint, form)
	if err != nil {
		return fmt.Errorf("auth: revoke: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("auth: revoke: %w (HTTP %d)", ErrTransient, resp.StatusCode)
	case resp.StatusCode >= 500:
		return fmt.Errorf("auth: revoke: %w (HTTP %d)", ErrOutcomeUnknown, resp.StatusCode)
	default:
		return fmt.Errorf("auth: revoke: %w (HTTP %d, %s)", ErrRejected, resp.StatusCode, parseError(body))
	}
}
