// Package bridge lets ordinary mail clients (Thunderbird, iOS Mail, K-9, mbsync) reach a mail server that accepts
// only OAuth bearer tokens. A client signs in with a device password; the bridge checks it (Authenticator), takes the
// device grant's current access token (mail.TokenSource), authenticates upstream with SASL OAUTHBEARER (RFC 7628)
// and from then on splices bytes both ways, the way Dovecot's and Stalwart's own proxies do, so that every server
// extension (IDLE, CONDSTORE, QRESYNC, MOVE, literals, pipelining) passes through untouched. For SMTP submission it
// speaks SMTP itself with go-smtp's server and relays MAIL FROM, RCPT TO and the streamed DATA to an upstream session
// opened at AUTH (mail.DialSubmission), passing each upstream reply back.
//
// The bridge knows device passwords and grants only through the small interfaces below; it does not import web,
// and nothing of OAuth beyond a token source.
package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/mail"
)

// Login is a device that proved its password.
type Login struct {
	// DeviceID identifies the device (for Recorder, CloseDevice and the per-device connection cap).
	DeviceID string
	// GrantID identifies the device's own grant at the identity provider (for Tokens and CloseGrant).
	GrantID string
	// Address is the user's mail address: the account upstream and the only MAIL FROM the SMTP bridge accepts.
	Address string
}

var (
	// ErrBadCredentials: no such user or a wrong device password. The bridge answers after a delay and never goes
	// upstream.
	ErrBadCredentials = errors.New("bridge: wrong username or device password")
	// ErrSignInAgain: the password is right but the device's grant is gone (revoked, or needs a browser sign-in).
	ErrSignInAgain = errors.New("bridge: the device must be connected again in the browser")
)

// Authenticator checks device passwords and gives the device grants' tokens. Implementations must be safe for
// concurrent use.
type Authenticator interface {
	// Verify checks a device password. username is what the client typed (the user's address). The error is
	// ErrBadCredentials (wrapped or not) for a wrong user or password, ErrSignInAgain for a device whose grant
	// cannot be used; any other error is a temporary failure (the client is told to try later).
	Verify(ctx context.Context, username, password string, from netip.Addr) (Login, error)
	// Tokens returns the token source of a device grant. Its errors wrapping mail.ErrNoCredentials mean the
	// grant has ended (the client is told to sign in again); Replace renews a token the mail server refused.
	Tokens(grantID string) mail.TokenSource
}

// Recorder notes that a device was used, for the Devices page's "last used".
type Recorder interface {
	// Used is called after each successful login; clientID is the client's IMAP ID (RFC 2971) "name version",
	// "" if it sent none. It must not block for long.
	Used(deviceID string, from netip.Addr, clientID string)
}

// Options configure a Server.
type Options struct {
	// IMAP is the upstream IMAP server, Submission the upstream SMTP submission server.
	IMAP, Submission mail.Server
	// Auth checks device passwords and gives tokens. Required.
	Auth Authenticator
	// Recorder, if set, is told of each login.
	Recorder Recorder
	// PublicURL is Postern's public URL; a device whose grant ended is told to sign in again at PublicURL/devices.
	PublicURL string
	// CertFile and KeyFile are the PEM certificate chain and key the bridge presents. Required.
	CertFile, KeyFile string
	// MaxConns bounds the bridge's client connections in all (default 1000); MaxConnsPerDevice those of one
	// logged-in device (default 20: Thunderbird opens up to 5 per account, and Stalwart allows 16 IMAP sessions).
	MaxConns, MaxConnsPerDevice int
	// PreLoginTimeout bounds the time from connecting to a successful login (default 60s).
	PreLoginTimeout time.Duration
	// FailureDelay is the base delay before answering a wrong password (default 1s); it doubles with the failures
	// of the client's address or the account, up to 32×.
	FailureDelay time.Duration
	// Logger receives connection events; never a password, token or SASL payload. Default discards.
	Logger *slog.Logger
}

// Server is the IMAP and SMTP bridge. Make one with New; it serves the listeners it is given.
type Server struct {
	opts     Options
	log      *slog.Logger
	cert     atomic.Pointer[tls.Certificate]
	tls      *tls.Config
	throttle *throttle
	// sleep waits out a failure delay; tests count the delays instead of waiting.
	sleep func(ctx context.Context, d time.Duration)

	mu        sync.Mutex
	conns     map[*liveConn]struct{}
	listeners map[net.Listener]struct{}
	closed    bool
}

// liveConn is a client connection, with the device it logged in as (empty before login).
type liveConn struct {
	conn              net.Conn
	deviceID, grantID string
	// upstream is closed with the client.
	upstream io.Closer
}

// New returns a server with the certificate loaded. It does not listen.
func New(opts Options) (*Server, error) {
	if opts.Auth == nil {
		return nil, errors.New("bridge: Auth is required")
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 1000
	}
	if opts.MaxConnsPerDevice <= 0 {
		opts.MaxConnsPerDevice = 20
	}
	if opts.PreLoginTimeout <= 0 {
		opts.PreLoginTimeout = 60 * time.Second
	}
	if opts.FailureDelay <= 0 {
		opts.FailureDelay = time.Second
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		throttle:  newThrottle(opts.FailureDelay),
		conns:     map[*liveConn]struct{}{},
		listeners: map[net.Listener]struct{}{},
		sleep: func(ctx context.Context, d time.Duration) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.ReloadCertificate(); err != nil {
		return nil, err
	}
	s.tls = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
	}
	return s, nil
}

// ReloadCertificate reads CertFile and KeyFile again; connections made afterwards present the new pair. cmd calls
// it on SIGHUP. On error the old pair stays in use.
func (s *Server) ReloadCertificate() error {
	c, err := tls.LoadX509KeyPair(s.opts.CertFile, s.opts.KeyFile)
	if err != nil {
		return fmt.Errorf("bridge: certificate: %w", err)
	}
	s.cert.Store(&c)
	return nil
}

// serve accepts connections on l until it is closed, handling each with handle.
func (s *Server) serve(l net.Listener, handle func(*liveConn)) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return net.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		lc, ok := s.track(c)
		if !ok {
			// Over the cap: say so and close (RFC 9051 section 7.1.5, BYE at greeting; RFC 5530 UNAVAILABLE).
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write([]byte("* BYE [UNAVAILABLE] too many connections, try again later\r\n"))
			c.Close()
			continue
		}
		go func() {
			defer s.untrack(lc)
			handle(lc)
		}()
	}
}

func (s *Server) track(c net.Conn) (*liveConn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= s.opts.MaxConns {
		return nil, false
	}
	lc := &liveConn{conn: c}
	s.conns[lc] = struct{}{}
	return lc, true
}

func (s *Server) untrack(lc *liveConn) {
	s.mu.Lock()
	delete(s.conns, lc)
	up := lc.upstream
	s.mu.Unlock()
	lc.conn.Close()
	if up != nil {
		up.Close()
	}
}

// claim binds a connection to a logged-in device unless the device has MaxConnsPerDevice connections already.
func (s *Server) claim(lc *liveConn, l Login) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		// lc itself may carry the device already, from a login whose upstream half failed.
		if c != lc && c.deviceID == l.DeviceID {
			n++
		}
	}
	if n >= s.opts.MaxConnsPerDevice {
		return false
	}
	lc.deviceID, lc.grantID = l.DeviceID, l.GrantID
	return true
}

// setUpstream records the upstream connection so that closing the client closes it too; false if the client
// connection was closed meanwhile (CloseDevice during login).
func (s *Server) setUpstream(lc *liveConn, up net.Conn) bool { return s.setUpstreamCloser(lc, up) }

func (s *Server) setUpstreamCloser(lc *liveConn, up io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[lc]; !ok || s.closed {
		return false
	}
	lc.upstream = up
	return true
}

// CloseDevice closes every live connection of the device at once, client and upstream side. Revoking a device calls
// it so that a revoked phone stops reading mail now, not at its next login.
func (s *Server) CloseDevice(deviceID string) {
	s.closeWhere(func(c *liveConn) bool { return c.deviceID == deviceID })
}

// CloseGrant closes every spliced connection made with the grant. A connection still logging in is left alone: its
// upstream login is what found the grant ended (the refresh after a refused token gets invalid_grant and the keeper
// calls OnEnded → CloseGrant), and it must still tell the client to sign in again rather than be cut without a word.
func (s *Server) CloseGrant(grantID string) {
	s.closeWhere(func(c *liveConn) bool { return c.grantID == grantID && c.upstream != nil })
}

func (s *Server) closeWhere(match func(*liveConn) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.deviceID != "" && match(c) {
			s.closeLocked(c)
		}
	}
}

func (s *Server) closeLocked(c *liveConn) {
	delete(s.conns, c)
	c.conn.Close()
	if c.upstream != nil {
		c.upstream.Close()
	}
}

// Close stops the listeners and closes every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		s.closeLocked(c)
	}
	return nil
}

// Conns returns the number of client connections open now.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// remoteAddr is the client's IP address, or the zero Addr for a non-IP connection.
func remoteAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
