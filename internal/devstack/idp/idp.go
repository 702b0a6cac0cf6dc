// Package idp is an in-process OpenID Connect provider shaped like Authelia 4.39, built on github.com/ory/fosite (the
// library Authelia's provider is a fork of). It serves `postern demo` and the Go tests of the auth and web packages,
// so it copies the Authelia behaviour Postern has to survive: opaque HMAC tokens (or, with Options.JWTAccessTokens,
// RFC 9068 JWT access tokens as Authelia issues them per client), PKCE S256 for every client,
// client_secret_basic only at the token endpoint, explicit consent, refresh-token rotation without grace period and
// revocation of the whole grant when a rotated refresh token is presented again (docs/protocol-notes.md, section B).
//
// It also counts its calls (Stats) and can inject the faults a token broker must handle: an outage (SetDown), a token
// response lost after the refresh was committed (LoseNextTokenResponse), and a hang (Freeze): requests read but
// processed only later, when the client may have given up.
package idp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/hmac"
	"github.com/ory/fosite/token/jwt"
)

// User is a demo account of the IdP's file-like user backend. Its details are read again on every userinfo call,
// as Authelia reloads them from its backend.
type User struct{ Username, Password, Email, Name string }

// Client is a registered OIDC client. A client with an empty Secret is public (token_endpoint_auth_method none);
// otherwise it must authenticate with client_secret_basic at the token endpoint, like Postern's Authelia client.
type Client struct {
	ID, Secret   string
	RedirectURIs []string
	Scopes       []string // allowed scopes; default openid profile email offline_access
	// Audience is the whitelist of audiences a token may carry, as Authelia's client `audience` list: a request's
	// `audience` parameter must name only these (e.g. "stalwart", Stalwart 0.16's requireAudience).
	Audience []string
}

// Options configures New and Start. Zero lifespans take Authelia 4.39's defaults.
type Options struct {
	Issuer  string // e.g. "http://127.0.0.1:34567" (no trailing slash); required by New, filled in by Start
	Users   []User
	Clients []Client

	AccessTokenLifespan  time.Duration // default 1h
	RefreshTokenLifespan time.Duration // default 90m, sliding: every refresh issues a new RT valid for this long
	AuthCodeLifespan     time.Duration // default 1m
	IDTokenLifespan      time.Duration // default 1h

	// SigningKey signs ID tokens (RS256). Nil uses one RSA-2048 key generated for the whole process (devKey).
	SigningKey *rsa.PrivateKey
	Logger     *slog.Logger // nil discards

	// JWTAccessTokens issues RFC 9068 JWT access tokens (typ at+jwt, signed with SigningKey, aud = the granted
	// audience) instead of Authelia's opaque ones, as Authelia does for a client with
	// access_token_signed_response_alg: RS256. Refresh tokens and codes stay opaque.
	JWTAccessTokens bool

	// RememberConsent remembers an accepted consent for the life of the process, per user, client, scopes and
	// audience, as Authelia's pre-configured consent mode does for its configured duration: the next authorization
	// with the same four skips the consent page (and prompt=none succeeds), unless it asks for prompt=consent. The
	// default is Authelia's explicit mode, which asks every time. The demo sets it.
	RememberConsent bool
}

// devKey is the signing key of every IdP built without one. It is generated once per process: an RSA-2048 key costs
// tens of milliseconds, much more on a busy machine, and the tests build dozens of IdPs. Sharing it is safe because
// a dev IdP protects nothing: it serves 127.0.0.1 for the life of the process, and its tokens name their own issuer.
var devKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// Stats counts the IdP's calls, so tests can assert how often a client refreshed or hit userinfo.
type Stats struct {
	AuthorizeRequests, TokenRequests, CodeExchanges, Refreshes, RefreshFailures int64
	RefreshReuses                                                               int64 // an already-used (rotated) refresh token was presented
	FamilyRevocations                                                           int64 // a whole grant was revoked because of that reuse
	UserinfoRequests, Revocations, Introspections                               int64
	RefusedWhileDown                                                            int64 // requests answered 503 by SetDown(true), whatever the endpoint
	HeldWhileFrozen                                                             int64 // requests received during a Freeze, processed after it
	DroppedWhileFrozen                                                          int64 // held requests dropped unprocessed (FreezeOptions.DropIfClientGone)
}

type counters struct {
	authorize, token, codeExchanges, refreshes, refreshFailures atomic.Int64
	reuses, familyRevocations                                   atomic.Int64
	userinfo, revocations, introspections                       atomic.Int64
	refusedDown, heldWhileFrozen, droppedWhileFrozen            atomic.Int64
}

// IdP is the provider. It is an http.Handler; Start also runs it on a listener.
type IdP struct {
	issuer string
	log    *slog.Logger
	oauth  fosite.OAuth2Provider
	store  *store
	users  map[string]User
	key    *rsa.PrivateKey
	kid    string

	accessLifespan time.Duration
	mux            *http.ServeMux

	// mu serialises every request that touches grants. Authelia runs a refresh in one database transaction; here one
	// lock gives the same all-or-nothing rotation, and makes concurrent refreshes of one token race-free: the second
	// sees the first one's rotation and is treated as reuse.
	mu       sync.Mutex
	flows    map[string]*flow         // pending authorizations waiting for login/consent
	sessions map[string]*loginSession // the IdP's own browser sessions
	// consents are the remembered consents (Options.RememberConsent), nil when consent is never remembered.
	consents  map[consentKey]bool
	lastSweep time.Time

	down     atomic.Bool
	loseNext atomic.Bool
	freeze   freezer
	stats    counters

	srv *http.Server

	// redirectOrigins lists the origins of every registered redirect URI, for the pages' CSP form-action: Chromium
	// applies form-action to the redirect that follows a form POST, so the consent form's redirect back to the client
	// must be allowed there (as Authelia's own portal allows it).
	redirectOrigins []string
}

// Endpoint paths, as Authelia 4.39 serves them (protocol-notes B.5).
const (
	pathDiscovery     = "/.well-known/openid-configuration"
	pathASMetadata    = "/.well-known/oauth-authorization-server"
	pathJWKS          = "/jwks.json"
	pathAuthorization = "/api/oidc/authorization"
	pathToken         = "/api/oidc/token"
	pathUserinfo      = "/api/oidc/userinfo"
	pathRevocation    = "/api/oidc/revocation"
	pathIntrospection = "/api/oidc/introspection"
	pathLogin         = "/login"
	pathConsent       = "/consent"
)

var defaultScopes = []string{"openid", "profile", "email", "offline_access"}

// Subject returns the stable opaque `sub` the IdP uses for username: a name-based UUID, like the opaque identifiers
// Authelia stores per user, so it survives restarts and tests can predict it.
func Subject(username string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("postern-devstack-idp:"+username)).String()
}

// New builds the provider. It starts no goroutine and does no I/O.
func New(opts Options) (*IdP, error) {
	issuer := strings.TrimRight(opts.Issuer, "/")
	if issuer == "" {
		return nil, errors.New("idp: issuer is required")
	}
	if opts.AccessTokenLifespan <= 0 {
		opts.AccessTokenLifespan = time.Hour
	}
	if opts.RefreshTokenLifespan <= 0 {
		opts.RefreshTokenLifespan = 90 * time.Minute
	}
	if opts.AuthCodeLifespan <= 0 {
		opts.AuthCodeLifespan = time.Minute
	}
	if opts.IDTokenLifespan <= 0 {
		opts.IDTokenLifespan = time.Hour
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := opts.SigningKey
	if key == nil {
		var err error
		if key, err = devKey(); err != nil {
			return nil, fmt.Errorf("idp: generate signing key: %w", err)
		}
	}
	kid, err := keyID(key)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("idp: hmac secret: %w", err)
	}

	p := &IdP{
		issuer: issuer,
		log:    log,
		store:  newStore(),
		users:  map[string]User{},
		key:    key,
		kid:    kid,

		accessLifespan: opts.AccessTokenLifespan,
		flows:          map[string]*flow{},
		sessions:       map[string]*loginSession{},
	}
	if opts.RememberConsent {
		p.consents = map[consentKey]bool{}
	}
	for _, u := range opts.Users {
		if u.Username == "" {
			return nil, errors.New("idp: user without username")
		}
		p.users[u.Username] = u
	}
	hasher := sha256Hasher{}
	for _, c := range opts.Clients {
		fc, err := fositeClient(c, hasher)
		if err != nil {
			return nil, err
		}
		p.store.clients[c.ID] = fc
		for _, ru := range c.RedirectURIs {
			if u, err := url.Parse(ru); err == nil && u.Host != "" && !slices.Contains(p.redirectOrigins, u.Scheme+"://"+u.Host) {
				p.redirectOrigins = append(p.redirectOrigins, u.Scheme+"://"+u.Host)
			}
		}
	}

	cfg := &fosite.Config{
		AccessTokenLifespan:            opts.AccessTokenLifespan,
		RefreshTokenLifespan:           opts.RefreshTokenLifespan,
		AuthorizeCodeLifespan:          opts.AuthCodeLifespan,
		IDTokenLifespan:                opts.IDTokenLifespan,
		IDTokenIssuer:                  issuer,
		AccessTokenIssuer:              issuer,
		TokenURL:                       issuer + pathToken,
		GlobalSecret:                   secret,
		EnforcePKCE:                    true, // Authelia client with require_pkce: true
		EnablePKCEPlainChallengeMethod: false,
		MinParameterEntropy:            fosite.MinParameterEntropy, // 8, Authelia's minimum_parameter_entropy
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		RefreshTokenScopes:             []string{"offline", "offline_access"},
		ClientSecretsHasher:            hasher,
		SendDebugMessagesToClients:     false,
	}
	getKey := func(context.Context) (interface{}, error) { return key, nil }
	signer := &jwt.DefaultSigner{GetPrivateKey: getKey}
	var core oauth2.CoreStrategy = autheliaStrategy{oauth2.NewHMACSHAStrategyUnPrefixed(&hmac.HMACStrategy{Config: cfg}, cfg)}
	if opts.JWTAccessTokens {
		core = jwtAccessStrategy{autheliaStrategy: core.(autheliaStrategy), p: p, signer: signer}
	}
	strategy := &compose.CommonStrategy{
		CoreStrategy:               core,
		OpenIDConnectTokenStrategy: compose.NewOpenIDConnectStrategy(getKey, cfg),
		Signer:                     signer,
	}
	p.oauth = compose.Compose(cfg, p.store, strategy,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		compose.OAuth2TokenIntrospectionFactory,
		func(fosite.Configurator, interface{}, interface{}) interface{} {
			return &revocationHandler{store: p.store, strategy: strategy}
		},
		compose.OAuth2PKCEFactory,
	)
	p.routes()
	return p, nil
}

func fositeClient(c Client, hasher fosite.Hasher) (fosite.Client, error) {
	if c.ID == "" {
		return nil, errors.New("idp: client without id")
	}
	if len(c.RedirectURIs) == 0 {
		return nil, fmt.Errorf("idp: client %q has no redirect uri", c.ID)
	}
	scopes := c.Scopes
	if len(scopes) == 0 {
		scopes = defaultScopes
	}
	dc := &fosite.DefaultClient{
		ID:            c.ID,
		RedirectURIs:  append([]string(nil), c.RedirectURIs...),
		GrantTypes:    []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"},
		Scopes:        append([]string(nil), scopes...),
		Audience:      append([]string(nil), c.Audience...),
		Public:        c.Secret == "",
	}
	method := "none"
	if c.Secret != "" {
		h, err := hasher.Hash(context.Background(), []byte(c.Secret))
		if err != nil {
			return nil, err
		}
		dc.Secret = h
		method = "client_secret_basic"
	}
	return &fosite.DefaultOpenIDConnectClient{DefaultClient: dc, TokenEndpointAuthMethod: method}, nil
}

// keyID names the signing key by its RFC 7638 thumbprint, so the kid is stable for a given key.
func keyID(key *rsa.PrivateKey) (string, error) {
	jwk := jose.JSONWebKey{Key: &key.PublicKey}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("idp: key thumbprint: %w", err)
	}
	return hex.EncodeToString(tp[:8]), nil
}

// Issuer returns the issuer identifier, without trailing slash.
func (p *IdP) Issuer() string { return p.issuer }

// Start listens on addr (e.g. "127.0.0.1:0"), sets opts.Issuer to "http://<listener address>" if it is empty, and
// serves in the background until Close.
func Start(addr string, opts Options) (*IdP, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("idp: listen: %w", err)
	}
	if opts.Issuer == "" {
		opts.Issuer = "http://" + ln.Addr().String()
	}
	p, err := New(opts)
	if err != nil {
		ln.Close()
		return nil, err
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("idp: serve", "err", err)
		}
	}()
	return p, nil
}

// Close stops the server started by Start and ends any freeze, so no handler stays blocked. It is otherwise a no-op
// for an IdP made by New.
func (p *IdP) Close() error {
	p.Thaw()
	if p.srv == nil {
		return nil
	}
	return p.srv.Close()
}

// Stats returns a snapshot of the call counters.
func (p *IdP) Stats() Stats {
	c := &p.stats
	return Stats{
		AuthorizeRequests:  c.authorize.Load(),
		TokenRequests:      c.token.Load(),
		CodeExchanges:      c.codeExchanges.Load(),
		Refreshes:          c.refreshes.Load(),
		RefreshFailures:    c.refreshFailures.Load(),
		RefreshReuses:      c.reuses.Load(),
		FamilyRevocations:  c.familyRevocations.Load(),
		UserinfoRequests:   c.userinfo.Load(),
		Revocations:        c.revocations.Load(),
		Introspections:     c.introspections.Load(),
		RefusedWhileDown:   c.refusedDown.Load(),
		HeldWhileFrozen:    c.heldWhileFrozen.Load(),
		DroppedWhileFrozen: c.droppedWhileFrozen.Load(),
	}
}

// SetDown simulates an outage: while down, every endpoint answers 503, as a reverse proxy in front of a stopped
// Authelia would.
func (p *IdP) SetDown(down bool) { p.down.Store(down) }

// LoseNextTokenResponse makes the next token request commit fully (for a refresh: the rotation, so the old tokens
// are dead) and then answer 504 with an empty body, as if a proxy timed out after the IdP committed. The client cannot
// know its new tokens; this is the case a broker must not blindly retry.
func (p *IdP) LoseNextTokenResponse() { p.loseNext.Store(true) }

// Active reports whether token is a currently active access or refresh token, by introspecting it internally. It is
// a test helper and is not counted in Stats.
func (p *IdP) Active(token string) bool {
	if token == "" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _, err := p.oauth.IntrospectToken(context.Background(), token, fosite.AccessToken, newEmptySession())
	return err == nil
}

// ServeHTTP serves every endpoint of the provider.
func (p *IdP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r = p.hold(r); r == nil {
		return // dropped while frozen; its client is gone
	}
	if p.down.Load() {
		p.stats.refusedDown.Add(1)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "503 Service Unavailable\n")
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	p.mux.ServeHTTP(w, r)
}

// routes registers every endpoint, under the paths Authelia 4.39 uses.
func (p *IdP) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET "+pathDiscovery, p.handleDiscovery)
	m.HandleFunc("GET "+pathASMetadata, p.handleDiscovery)
	m.HandleFunc("GET "+pathJWKS, p.handleJWKS)
	m.HandleFunc("GET "+pathAuthorization, p.locked(p.handleAuthorize))
	m.HandleFunc("POST "+pathAuthorization, p.locked(p.handleAuthorize))
	m.HandleFunc("POST "+pathToken, p.locked(p.handleToken))
	m.HandleFunc("GET "+pathUserinfo, p.locked(p.handleUserinfo))
	m.HandleFunc("POST "+pathUserinfo, p.locked(p.handleUserinfo))
	m.HandleFunc("POST "+pathRevocation, p.locked(p.handleRevocation))
	m.HandleFunc("POST "+pathIntrospection, p.locked(p.handleIntrospection))
	m.HandleFunc("GET "+pathLogin, p.locked(p.handleLoginPage))
	m.HandleFunc("POST "+pathLogin, p.locked(p.handleLogin))
	m.HandleFunc("GET "+pathConsent, p.locked(p.handleConsentPage))
	m.HandleFunc("POST "+pathConsent, p.locked(p.handleConsent))
	m.HandleFunc("GET /{$}", p.handleHome)
	m.HandleFunc("GET "+pathStylesheet, handleStylesheet)
	p.mux = m
}

func (p *IdP) locked(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.sweepLocked()
		h(w, r)
	}
}

// sweepLocked forgets expired flows, sessions and tokens now and then, so a long-running demo stays small.
func (p *IdP) sweepLocked() {
	now := time.Now()
	if now.Sub(p.lastSweep) < 5*time.Minute {
		return
	}
	p.lastSweep = now
	for id, f := range p.flows {
		if now.After(f.expires) {
			delete(p.flows, id)
		}
	}
	for id, s := range p.sessions {
		if now.After(s.expires) {
			delete(p.sessions, id)
		}
	}
	p.store.sweep(now)
}

// Transport returns a RoundTripper that serves requests in-process through ServeHTTP, with no sockets. Inside a
// testing/synctest bubble the fake clock then drives fosite's time.Now as well, so token expiry can be tested
// without waiting. Like a network client, RoundTrip returns the context's error as soon as the request's context is
// done (a client timeout), while ServeHTTP goes on: a frozen IdP still processes the request later.
func (p *IdP) Transport() http.RoundTripper { return inProcess{h: p} }

type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RequestURI = req.URL.RequestURI()
	r.RemoteAddr = "127.0.0.1:1"
	if r.Host == "" {
		r.Host = req.URL.Host
	}
	if r.Proto == "" {
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	}
	rec := &recorder{header: http.Header{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.h.ServeHTTP(rec, r)
		if req.Body != nil {
			req.Body.Close() // RoundTrip must close it, and may do so after returning
		}
	}()
	select {
	case <-done:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	body := rec.body.Bytes()
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", rec.code, http.StatusText(rec.code)),
		StatusCode:    rec.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.sent,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// recorder is a minimal http.ResponseWriter for inProcess; net/http/httptest is kept out of non-test code.
type recorder struct {
	header, sent http.Header
	code         int
	wrote        bool
	body         bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.wrote {
		return
	}
	r.code, r.wrote, r.sent = code, true, r.header.Clone()
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	return r.body.Write(b)
}

func newRandomID() string { return rand.Text() }

// formTargets is the CSP form-action source list beyond 'self'.
func (p *IdP) formTargets() string { return strings.Join(p.redirectOrigins, " ") }
