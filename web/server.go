// Package web is Postern's HTTP face: sign-in pages, the webmail, and the session that ties a browser to a grant.
//
// Data flows one way: a handler asks auth (through the Authenticator and Tokens interfaces) for identity and a
// current access token, and hands that token and the user's address to mail. auth and mail never see each other.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// Authenticator runs the browser sign-in; *auth.Provider implements it.
type Authenticator interface {
	Begin(returnTo string) (auth.Flow, string)
	// BeginDevice starts a device's own authorization flow (prompt=consent), completed by Finish.
	BeginDevice(returnTo string) (auth.Flow, string)
	Finish(ctx context.Context, f auth.Flow, q url.Values) (*auth.Login, error)
}

// Tokens owns grants and their tokens; *auth.Keeper implements it.
type Tokens interface {
	Start(ctx context.Context, l *auth.Login) (string, error)
	// StartDevice stores a device's sign-in as a device grant (not ended by the browser session's policy).
	StartDevice(ctx context.Context, l *auth.Login) (string, error)
	Token(ctx context.Context, grantID string) (auth.Token, error)
	Replace(ctx context.Context, grantID, rejected string) (auth.Token, error)
	Info(ctx context.Context, grantID string) (auth.GrantInfo, error)
	SignOut(ctx context.Context, grantID string) error
}

// Mailer runs IMAP work on a pooled, authenticated connection; *mail.Pool implements it. key is the grant id; ts
// gives the grant's credentials (grantTokens adapts Tokens), and the retry rule on a refused token is mail's.
type Mailer interface {
	Do(ctx context.Context, key string, ts mail.TokenSource, fn func(*mail.Session) error) error
	CloseKey(key string)
	// Watch reports changes to a mailbox (IMAP IDLE on a connection of its own) until ctx ends; the live-update
	// stream of the list page (events.go) uses it.
	Watch(ctx context.Context, key string, ts mail.TokenSource, box string) (<-chan struct{}, error)
}

// Config is what the web layer needs to know; cmd maps the YAML config onto it.
type Config struct {
	// PublicURL is where browsers reach Postern; https makes cookies Secure.
	PublicURL *url.URL
	// IssuerOrigin is the IdP's origin, allowed as a form-action target in the CSP.
	IssuerOrigin  string
	CookieName    string
	SessionSecret []byte
	IdleTimeout   time.Duration
	Lifetime      time.Duration
	PageSize      int
	// WarmOnSignIn opens the new grant's pooled IMAP connection in the background at sign-in (Mailer.Warm), while
	// the browser follows the redirect to its first page. cmd turns it on; tests leave it off, so that no background
	// login races with what a test does to a grant right after signing in.
	WarmOnSignIn bool
	Logger       *slog.Logger
	// Version is shown in the page footer.
	Version string
	// Banner, when set, is a line of plain text shown at the top of every page; the demo says there where its mail
	// goes (devstack.OutboundNote).
	Banner string
	// Sender submits composed mail over SMTP with the user's bearer token; cmd sets an SMTPSender. Without one the
	// compose page still saves drafts but refuses to send, with a message saying why.
	Sender Sender
	// StallTimeout is how long a streamed download (a message part) may wait for the client to take more bytes
	// before it is cut: the stream holds a pooled IMAP connection, which a client that never reads must not keep;
	// default DefaultStallTimeout.
	StallTimeout time.Duration
	// MaxUpload bounds the body of a compose form (text plus attachments) in bytes; default DefaultMaxUpload. Keep it
	// at or below the submission server's message size limit, so that a message too big to send is refused here,
	// before the upload, rather than after it.
	MaxUpload int64
	// Observer, when set, is told of every request, sign-in and submission (observe.go); cmd passes the metrics.
	Observer Observer
	// BrowserSessionCookie makes the session cookie a browser-session cookie (no Max-Age): it ends when the browser
	// does. The default is a cookie that lasts Lifetime, so that phones, whose browsers end sessions whenever the
	// system reclaims memory, do not sign their users out several times a day; the server-side idle timeout and
	// lifetime end the session either way, and signing out ends it at once.
	BrowserSessionCookie bool
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names the client in the access log (clientIP).
	TrustedProxies []netip.Prefix
	// Devices, when set together with Bridge.Host, enables the Devices page (devices.go); cmd passes a
	// *devices.Service.
	Devices Devices
	// Bridge is where mail clients reach the IMAP/SMTP bridge, for the set-up help and documents; an empty Host
	// means the bridge is not enabled and the Devices page says so.
	Bridge Bridge
	// DeviceCloser, when set, is told to close a revoked device's live bridge connections.
	DeviceCloser DeviceCloser
	// Settings keeps each person's settings (settings.go); cmd passes the store. Without it every user has the
	// defaults and the Settings page says it is not available.
	Settings SettingsStore
}

// DefaultStallTimeout is Config.StallTimeout's default: a minute without progress is a client gone, not a slow link
// (even 10 kB/s moves a 32 kB write in seconds).
const DefaultStallTimeout = time.Minute

// Server holds the web layer's dependencies. It is safe for concurrent use.
type Server struct {
	cfg      Config
	auth     Authenticator
	tokens   Tokens
	mail     Mailer
	sessions *serverStore
	logger   *slog.Logger
	secure   bool
	pages    *pages
	handler  http.Handler
	// ops holds the readiness checks and the route table for metrics (health.go).
	ops operations
	// uploads keeps a compose form's attachments across a re-shown form (compose.go).
	uploads *uploadStash
	// flows carries sign-in flows in sealed cookies (flowcookie.go); deviceFlows the device flows (devices.go).
	flows, deviceFlows *flowCookies
	// watchers bounds the live-update streams per user and in all (events.go).
	watchers *watchLimiter
	// obs is told what happened (observe.go); never nil.
	obs Observer
	// plainList turns conversations off in folder lists, noSnippets the preview snippets: both read only through
	// conversationsFor and listOptions (conversation.go); the zero value has both on.
	plainList, noSnippets bool
}

// New checks the configuration, parses every template (a broken template fails here, at start-up, not on a user's
// request) and wires the routes. It does no I/O.
func New(cfg Config, a Authenticator, t Tokens, m Mailer, ss SessionStore) (*Server, error) {
	if cfg.PublicURL == nil {
		return nil, errors.New("web: PublicURL is required")
	}
	if len(cfg.SessionSecret) < 32 {
		return nil, errors.New("web: SessionSecret must be at least 32 bytes")
	}
	if cfg.CookieName == "" {
		cfg.CookieName = "postern_session"
	}
	if cfg.PublicURL.Scheme == "https" && !strings.HasPrefix(cfg.CookieName, "__Host-") {
		// On https every name, the default or a custom one, takes the __Host- prefix (RFC 6265bis section 4.1.3.2):
		// browsers then accept the cookie only from this exact host, Secure, Path=/ and without Domain, so a sibling
		// subdomain cannot plant its own (signed-in) session cookie here (login CSRF through cookie tossing).
		cfg.CookieName = "__Host-" + cfg.CookieName
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 24 * time.Hour
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = 30 * 24 * time.Hour
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 50
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	p, err := loadPages()
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	s := &Server{
		cfg:    cfg,
		auth:   a,
		tokens: t,
		mail:   m,
		logger: cfg.Logger,
		secure: cfg.PublicURL.Scheme == "https",
		pages:  p,
	}
	s.observe(cfg.Observer)
	s.uploads = newUploadStash(cfg.MaxUpload)
	s.watchers = newWatchLimiter(maxWatchersPerUser, maxWatchersTotal)
	s.flows = newFlowCookies(cfg.SessionSecret, cfg.CookieName, s.secure)
	s.deviceFlows = newFlowCookies(cfg.SessionSecret, cfg.CookieName+"_device", s.secure)
	if cfg.Bridge.IMAPPort == 0 {
		s.cfg.Bridge.IMAPPort = 993
	}
	if cfg.Bridge.SMTPPort == 0 {
		s.cfg.Bridge.SMTPPort = 465
	}
	s.sessions = newServerStore(ss, cfg.SessionSecret, cfg.CookieName, s.secure, cfg.IdleTimeout, cfg.Lifetime, cfg.BrowserSessionCookie)
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP serves every route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// CallbackPath is the path of the redirect URI to register at the IdP, relative to the public URL.
const CallbackPath = "/callback"

// RedirectURL returns the redirect URI to register at the IdP.
func RedirectURL(public *url.URL) string {
	u := *public
	u.Path = CallbackPath
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
