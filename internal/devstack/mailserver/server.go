// Package mailserver is the demo and test mail server: IMAP (go-imap v2
// imapserver over imapmemserver) and SMTP submission (go-smtp) that
// authenticate like Stalwart with its "oidc" directory.
//
// Every AUTHENTICATE (OAUTHBEARER, RFC 7628, or XOAUTH2) is validated by a
// GET of the identity provider's userinfo endpoint with the presented bearer
// token, with no cache. The authzid (a=) and XOAUTH2 user= are ignored: the
// account is the lower-cased "email" claim. Accounts are created on first
// successful login and can be pre-seeded with realistic mail (Seed).
// With Options.JWT it is Stalwart 0.16 instead: JWT access tokens are
// validated offline against the issuer's JWKS, opaque ones still by userinfo.
//
// Stalwart's replies are mirrored (see docs/protocol-notes.md A.1, A.2):
// userinfo 401/403 gives IMAP NO [AUTHENTICATIONFAILED] and SMTP 535 5.7.8;
// an unreachable identity provider or a 5xx gives IMAP NO
// [AUTHENTICATIONFAILED] too but SMTP 454 4.7.0. A connection is dropped
// after MaxAuthFailures refused tokens. Unlike Stalwart, failures are
// answered at once (Stalwart's SMTP waits 5 s first), which keeps tests fast.
// Options.ErrorChallenge switches to Dovecot's behaviour instead (JSON error
// challenge, then NO).
package mailserver

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"
)

// Options configure a Server.
type Options struct {
	// UserinfoURL is the identity provider's OIDC userinfo endpoint
	// (OpenID Connect Core 1.0 section 5.3). Required.
	UserinfoURL string
	// HTTPClient calls UserinfoURL; default a client with a 10s timeout.
	HTTPClient *http.Client
	// TLSConfig, when set, makes IMAP and SMTP offer STARTTLS and lets
	// ListenIMAPS and ListenSMTPS serve implicit TLS.
	TLSConfig *tls.Config
	// Mechanisms are the advertised SASL mechanisms, default
	// ["OAUTHBEARER", "XOAUTH2"] (Stalwart 0.12+).
	Mechanisms []string
	// MaxAuthFailures refused tokens end a connection; default 3
	// (Stalwart's imap.auth.max-failures and session.auth.errors.total).
	MaxAuthFailures int
	// ErrorChallenge makes the server behave like Dovecot instead of
	// Stalwart when a token is refused: it first sends an RFC 7628 section
	// 3.2.2 JSON error challenge and requires the %x01 dummy response
	// (anything else is BAD, as Dovecot answers go-imap's "="), and an
	// identity-provider outage is IMAP NO [UNAVAILABLE].
	ErrorChallenge bool
	// NoListStatus leaves LIST-STATUS (RFC 5819) out of the IMAP
	// capabilities, so clients must fall back to STATUS per mailbox.
	NoListStatus bool
	// DisableCaps are IMAP capabilities left out, e.g. "MOVE", "UIDPLUS"
	// or "ESEARCH", so that tests can exercise a client's fallbacks.
	// (imapserver always offers IDLE to IMAP4rev1 clients.)
	DisableCaps []string
	// QuotaBytes, when positive, is every account's storage quota: an
	// APPEND that would take an account's total message size over it fails
	// with NO [OVERQUOTA] (RFC 9208 section 4.3), as on Stalwart. Delivery
	// by SMTP is not limited.
	QuotaBytes int64
	// JWT, when set, is the "Stalwart 0.16 JWT" mode: JWT access tokens are
	// validated offline against the issuer's JWKS (issuer, audience, expiry,
	// username claim) with no userinfo call; opaque tokens still cost one.
	JWT *JWTOptions
	// Outbound makes SMTP accept any recipient, as the demo needs for Reply to work on seeded mail from strangers:
	// local accounts still get the message in their INBOX, and one copy for all the others lands in the sender's
	// "Outbound" folder (created on first use) instead of leaving the machine. Addresses in the reserved .invalid
	// top-level domain (RFC 2606 section 2) are still refused, so that the refusal path can be tried in the demo.
	// Off, only local accounts receive mail and anything else is 550 5.1.1, as on Stalwart.
	Outbound bool
	// Logger receives connection-level events; default discards. Tokens,
	// SASL payloads and message bodies are never logged.
	Logger *slog.Logger
}

// Stats are counters for tests and the demo.
type Stats struct {
	// AuthAttempts counts SASL exchanges that presented a token.
	AuthAttempts int64
	// AuthSuccesses and AuthFailures split AuthAttempts (an identity
	// provider outage is a failure).
	AuthSuccesses, AuthFailures int64
	// UserinfoCalls counts requests to the userinfo endpoint.
	UserinfoCalls int64
	// ChallengeAcks counts correct %x01 answers to an error challenge.
	ChallengeAcks int64
	// Delivered counts SMTP deliveries, one per recipient.
	Delivered int64
	// Outbound counts messages kept in a sender's Outbound folder (Options.Outbound), one per message.
	Outbound int64
	// Sessions counts IMAP network connections open now (the in-process
	// connections of Messages are not counted).
	Sessions int64
	// IMAPConnections counts IMAP connections accepted in total.
	IMAPConnections int64
	// IdleCommands counts IDLE commands (RFC 2177) received, so a test can see a client end IDLE and start it again.
	IdleCommands int64
	// JWTValidations counts JWT access tokens accepted offline (JWT mode), JWKSFetches the key-set downloads.
	JWTValidations, JWKSFetches int64
	// RoundTrips counts IMAP round trips on the connections accepted while CountRoundTrips was on.
	RoundTrips int64
}

// Server is the IMAP and SMTP server. Its zero value is not usable; call New.
type Server struct {
	opts  Options
	log   *slog.Logger
	http  *http.Client
	mechs []string

	imap *imapserver.Server
	smtp *smtp.Server

	mu       sync.Mutex
	accounts map[string]*account

	pipeOnce sync.Once
	// live holds the network IMAP sessions (*imapSession → net.Conn), for DropConnections.
	live sync.Map
	pipe *pipeListener

	closeOnce sync.Once
	// stall holds every network connection's writes while set (Stall).
	stall gate

	authAttempts, authSuccesses, authFailures, userinfoCalls atomic.Int64
	challengeAcks, delivered, sessions, imapConns            atomic.Int64
	outbound                                                 atomic.Int64
	idles                                                    atomic.Int64
	jwtValidations, jwksFetches                              atomic.Int64
	// rtHold is CountRoundTrips' hold in nanoseconds (0: off); roundTrips the count.
	rtHold, roundTrips atomic.Int64

	jwt *jwtValidator // nil unless Options.JWT
}

// New returns a server. It does not listen yet.
func New(opts Options) (*Server, error) {
	if opts.UserinfoURL == "" {
		return nil, errors.New("mailserver: UserinfoURL is required")
	}
	if opts.MaxAuthFailures <= 0 {
		opts.MaxAuthFailures = 3
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		http:     opts.HTTPClient,
		accounts: map[string]*account{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.http == nil {
		s.http = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.JWT != nil {
		v, err := newJWTValidator(*opts.JWT, s.http)
		if err != nil {
			return nil, err
		}
		s.jwt = v
	}
	if len(opts.Mechanisms) == 0 {
		s.mechs = []string{"OAUTHBEARER", "XOAUTH2"}
	} else {
		for _, m := range opts.Mechanisms {
			s.mechs = append(s.mechs, strings.ToUpper(m))
		}
	}

	caps := imap.CapSet{
		imap.CapIMAP4rev1:    {},
		imap.CapNamespace:    {},
		imap.CapUIDPlus:      {},
		imap.CapMove:         {},
		imap.CapListExtended: {},
		imap.CapSpecialUse:   {},
		imap.CapStatusSize:   {},
		imap.CapListStatus:   {},
		imap.CapESearch:      {},
	}
	if opts.NoListStatus {
		delete(caps, imap.CapListStatus)
	}
	for _, c := range opts.DisableCaps {
		delete(caps, imap.Cap(strings.ToUpper(c)))
	}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newIMAPSession,
		Caps:         caps,
		Logger:       printfLogger{s.log.With("proto", "imap")},
		TLSConfig:    opts.TLSConfig,
		InsecureAuth: true, // Stalwart allows AUTHENTICATE in cleartext
	})

	ss := smtp.NewServer(smtp.BackendFunc(s.newSMTPSession))
	ss.Domain = "mail.devstack.test"
	ss.TLSConfig = opts.TLSConfig
	ss.AllowInsecureAuth = true // Stalwart offers OAUTHBEARER without TLS on submission
	ss.MaxMessageBytes = 25 << 20
	ss.MaxRecipients = 100
	ss.ReadTimeout = 2 * time.Minute
	ss.WriteTimeout = 2 * time.Minute
	ss.ErrorLog = printfLogger{s.log.With("proto", "smtp")}
	s.smtp = ss
	return s, nil
}

// printfLogger adapts slog to the Printf loggers of go-imap and go-smtp. The
// libraries log I/O errors, never payloads.
type printfLogger struct{ l *slog.Logger }

// Printf logs at debug level.
func (p printfLogger) Printf(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }

// Println logs at debug level.
func (p printfLogger) Println(args ...any) { p.l.Debug(fmt.Sprint(args...)) }

// ListenIMAP listens on addr (e.g. "127.0.0.1:0") and serves IMAP with
// optional STARTTLS in the background. It returns the bound address.
func (s *Server) ListenIMAP(addr string) (net.Addr, error) {
	return s.listen(addr, false, true, func(ln net.Listener) error { return s.imap.Serve(ln) })
}

// ListenIMAPS serves IMAP over implicit TLS (RFC 8314); it needs
// Options.TLSConfig.
func (s *Server) ListenIMAPS(addr string) (net.Addr, error) {
	return s.listen(addr, true, true, func(ln net.Listener) error { return s.imap.Serve(ln) })
}

// ListenSMTP listens on addr and serves SMTP submission (RFC 6409) with
// optional STARTTLS in the background.
func (s *Server) ListenSMTP(addr string) (net.Addr, error) {
	return s.listen(addr, false, false, s.smtp.Serve)
}

// ListenSMTPS serves SMTP submission over implicit TLS (RFC 8314); it
// needs Options.TLSConfig.
func (s *Server) ListenSMTPS(addr string) (net.Addr, error) {
	return s.listen(addr, true, false, s.smtp.Serve)
}

func (s *Server) listen(addr string, implicitTLS, imap bool, serve func(net.Listener) error) (net.Addr, error) {
	if implicitTLS && s.opts.TLSConfig == nil {
		return nil, errors.New("mailserver: implicit TLS needs Options.TLSConfig")
	}
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mailserver: listen %s: %w", addr, err)
	}
	var counter *Server // round trips are counted on IMAP connections only
	if imap {
		counter = s
	}
	var ln net.Listener = trackedListener{raw, &s.stall, counter}
	if implicitTLS {
		ln = tls.NewListener(ln, s.opts.TLSConfig)
	}
	go func() {
		if err := serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("mailserver: serve ended", "addr", raw.Addr().String(), "err", err)
		}
	}()
	return raw.Addr(), nil
}

// Close stops all listeners and connections.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.stall.set(false) // a held write must not hold the shutdown
		err = errors.Join(s.imap.Close(), s.smtp.Close())
		// Settle pipeOnce so that no inspection listener appears later.
		s.pipeOnce.Do(func() {})
		if s.pipe != nil {
			s.pipe.Close()
		}
	})
	return err
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	return Stats{
		AuthAttempts:    s.authAttempts.Load(),
		AuthSuccesses:   s.authSuccesses.Load(),
		AuthFailures:    s.authFailures.Load(),
		UserinfoCalls:   s.userinfoCalls.Load(),
		ChallengeAcks:   s.challengeAcks.Load(),
		Delivered:       s.delivered.Load(),
		Outbound:        s.outbound.Load(),
		Sessions:        s.sessions.Load(),
		IMAPConnections: s.imapConns.Load(),
		IdleCommands:    s.idles.Load(),
		JWTValidations:  s.jwtValidations.Load(),
		JWKSFetches:     s.jwksFetches.Load(),
		RoundTrips:      s.roundTrips.Load(),
	}
}

// authResult is the outcome of validating a token, in Stalwart's terms.
type authResult int

const (
	authOK authResult = iota
	// authFailed is AuthEvent::Failed: userinfo said 401 (or 403), or the
	// SASL payload carried no bearer token.
	authFailed
	// authUnavailable is AuthEvent::Error: the identity provider could not
	// be asked or answered something unexpected.
	authUnavailable
)

// userinfo validates token the way Stalwart's oidc directory does with
// endpoint.method = "userinfo": GET with the token as Bearer, no caching;
// the account is the lower-cased "email" claim of the flat JSON reply.
func (s *Server) userinfo(ctx context.Context, token string) (string, authResult) {
	s.userinfoCalls.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.opts.UserinfoURL, nil)
	if err != nil {
		return "", authUnavailable
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		s.log.Debug("mailserver: userinfo request failed", "err", err)
		return "", authUnavailable
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", authFailed
	case resp.StatusCode != http.StatusOK:
		s.log.Debug("mailserver: userinfo unexpected status", "status", resp.StatusCode)
		return "", authUnavailable
	}
	var claims map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&claims); err != nil {
		return "", authUnavailable
	}
	email, _ := claims["email"].(string)
	email = strings.ToLower(strings.TrimSpace(email))
	if email == "" || !strings.Contains(email, "@") {
		return "", authUnavailable
	}
	return email, authOK
}

// account is one mailbox owner. imapmemserver keeps the messages; the
// account keeps what imapmemserver cannot: special-use attributes (RFC 6154)
// and subscriptions, which our LIST reports.
type account struct {
	email string
	user  *imapmemserver.User

	mu     sync.Mutex
	boxes  map[string]*boxInfo
	seeded bool
}

type boxInfo struct {
	special    imap.MailboxAttr
	subscribed bool
}

// standardBoxes are created for every account, like Stalwart does.
var standardBoxes = []struct {
	name    string
	special imap.MailboxAttr
}{
	{"INBOX", ""},
	{"Drafts", imap.MailboxAttrDrafts},
	{"Sent", imap.MailboxAttrSent},
	{"Archive", imap.MailboxAttrArchive},
	{"Junk", imap.MailboxAttrJunk},
	{"Trash", imap.MailboxAttrTrash},
}

func newAccount(email string) *account {
	a := &account{
		email: email,
		user:  imapmemserver.NewUser(email, ""),
		boxes: map[string]*boxInfo{},
	}
	for _, b := range standardBoxes {
		a.create(b.name, b.special)
	}
	return a
}

// create makes a mailbox if it does not exist yet.
func (a *account) create(name string, special imap.MailboxAttr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.boxes[name]; ok {
		return
	}
	if err := a.user.Create(name, nil); err != nil {
		return
	}
	a.boxes[name] = &boxInfo{special: special, subscribed: true}
}

// append stores a message in a mailbox.
func (a *account) append(box string, raw []byte, flags []imap.Flag, t time.Time) error {
	_, err := a.user.Append(box, literal{strings.NewReader(string(raw)), int64(len(raw))}, &imap.AppendOptions{Flags: flags, Time: t})
	return err
}

type literal struct {
	*strings.Reader
	n int64
}

// Size implements imap.LiteralReader.
func (l literal) Size() int64 { return l.n }

// account returns the account for email, creating it when create is set
// (Stalwart provisions OIDC accounts on first login).
func (s *Server) account(email string, create bool) *account {
	email = strings.ToLower(email)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[email]
	if a == nil && create {
		a = newAccount(email)
		s.accounts[email] = a
	}
	return a
}

// recipient returns the local account for an address: an existing one, or a
// new one if the domain is that of an existing account; nil otherwise.
func (s *Server) recipient(addr string) *account {
	addr = strings.ToLower(strings.TrimSpace(addr))
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return nil
	}
	if a := s.account(addr, false); a != nil {
		return a
	}
	domain := addr[at+1:]
	s.mu.Lock()
	local := false
	for e := range s.accounts {
		if strings.HasSuffix(e, "@"+domain) {
			local = true
			break
		}
	}
	s.mu.Unlock()
	if !local {
		return nil
	}
	return s.account(addr, true)
}

// MailboxCount returns the number of messages in a mailbox of an account.
func (s *Server) MailboxCount(email, mailbox string) (int, error) {
	a := s.account(email, false)
	if a == nil {
		return 0, fmt.Errorf("mailserver: no account %q", email)
	}
	st, err := a.user.Status(mailbox, &imap.StatusOptions{NumMessages: true})
	if err != nil {
		return 0, fmt.Errorf("mailserver: status %q: %w", mailbox, err)
	}
	return int(*st.NumMessages), nil
}

// Accounts returns the addresses of all accounts, sorted.
func (s *Server) Accounts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.accounts))
	for e := range s.accounts {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}

// trackedListener wraps accepted connections in trackedConn, so that a
// session can ask for its connection to be closed right after the reply
// that refuses the last allowed authentication.
type trackedListener struct {
	net.Listener
	stall *gate
	rt    *Server // counts the round trips of accepted connections (CountRoundTrips); nil: never
}

// Accept wraps the accepted connection.
func (l trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.rt != nil {
		c = l.rt.countRoundTrips(c)
	}
	return &trackedConn{Conn: c, stall: l.stall, done: make(chan struct{})}, nil
}

type trackedConn struct {
	net.Conn
	closeAfterWrite atomic.Bool
	stall           *gate
	done            chan struct{}
	closeOnce       sync.Once
}

// Close closes the connection and releases a write held by Stall.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// Write writes b, once Stall lets it, and then closes the connection if a session asked for it.
func (c *trackedConn) Write(b []byte) (int, error) {
	if !c.stall.wait(c.done) {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Write(b)
	if c.closeAfterWrite.Load() {
		c.Conn.Close()
	}
	return n, err
}

// tracked finds our trackedConn under an optional TLS layer.
func tracked(c net.Conn) *trackedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	t, _ := c.(*trackedConn)
	return t
}

// Stall makes the server stop answering on every network connection, new or open, as a server that hangs does:
// it still accepts connections and reads what clients send, but writes nothing (not even a greeting) until
// Stall(false). Clients' timeouts are tested with it.
func (s *Server) Stall(on bool) { s.stall.set(on) }

// gate holds writers while closed.
type gate struct {
	mu sync.Mutex
	ch chan struct{} // nil while open; closed to let the waiters go
}

func (g *gate) set(closed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case closed && g.ch == nil:
		g.ch = make(chan struct{})
	case !closed && g.ch != nil:
		close(g.ch)
		g.ch = nil
	}
}

// wait returns true once the gate is open, false if done is closed first.
func (g *gate) wait(done <-chan struct{}) bool {
	g.mu.Lock()
	ch := g.ch
	g.mu.Unlock()
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-done:
		return false
	}
}
