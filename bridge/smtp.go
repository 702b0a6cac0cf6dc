package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/mail"
)

// ServeSubmissions serves SMTP submission with implicit TLS (port 465 style, RFC 8314 section 3.3) on l.
func (s *Server) ServeSubmissions(l net.Listener) error {
	return s.smtpServer().Serve(tls.NewListener(s.trackingListener(l), s.tls))
}

// ServeSubmission serves SMTP submission with STARTTLS (port 587 style, RFC 6409, RFC 3207) on l; AUTH is offered
// only under TLS (go-smtp's AllowInsecureAuth is off).
func (s *Server) ServeSubmission(l net.Listener) error {
	return s.smtpServer().Serve(s.trackingListener(l))
}

func (s *Server) smtpServer() *smtp.Server {
	srv := smtp.NewServer(&smtpBackend{s: s})
	srv.Domain = "postern"
	srv.TLSConfig = s.tls
	srv.ReadTimeout = s.opts.PreLoginTimeout
	srv.WriteTimeout = s.opts.PreLoginTimeout
	srv.MaxRecipients = 100
	srv.ErrorLog = discardLogger{}
	return srv
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// trackingListener counts SMTP connections against MaxConns and registers them for CloseDevice.
type trackingListener struct {
	net.Listener
	s *Server
}

func (s *Server) trackingListener(l net.Listener) net.Listener {
	s.mu.Lock()
	if s.closed {
		// Close ran before this listener was served: it would never be closed, and Serve would accept forever.
		l.Close()
	} else {
		s.listeners[l] = struct{}{}
	}
	s.mu.Unlock()
	return &trackingListener{Listener: l, s: s}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc, ok := l.s.track(c)
		if !ok {
			c.Close()
			continue
		}
		// lc.conn stays the raw connection: CloseDevice closes it under the server's lock, which
		// trackedConn.Close takes.
		return &trackedConn{Conn: c, lc: lc, s: l.s}, nil
	}
}

// trackedConn leaves the server's connection table when closed.
type trackedConn struct {
	net.Conn
	lc *liveConn
	s  *Server
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c.lc)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

type smtpBackend struct{ s *Server }

func (b *smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	tc, ok := nc.(*trackedConn)
	if !ok {
		return nil, errors.New("bridge: untracked smtp connection")
	}
	return &smtpSession{s: b.s, lc: tc.lc, from: remoteAddr(tc.Conn)}, nil
}

// smtpSession is one submission connection: the device's login, then each message's envelope.
type smtpSession struct {
	s        *Server
	lc       *liveConn
	from     netip.Addr
	login    *Login
	failures int
	// up is the upstream submission session, open from a successful AUTH to the end of the connection.
	up *smtp.Client
}

func (ss *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	if ss.failures >= maxFailures {
		// The third refusal was answered; a fourth attempt on the connection ends it.
		ss.lc.conn.Close()
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many failed logins"}
	}
	check := func(identity, username, password string) error {
		if identity != "" && !strings.EqualFold(identity, username) {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "a device acts only as its own user"}
		}
		return ss.verify(username, password)
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return &loginServer{check: func(u, p string) error { return check("", u, p) }}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// verify checks the device password and opens the upstream submission session with the device grant's token, so
// that a grant that needs a new sign-in is told at AUTH, where the client shows the server's text.
func (ss *smtpSession) verify(username, password string) error {
	s := ss.s
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.PreLoginTimeout)
	defer cancel()
	l, err := s.opts.Auth.Verify(ctx, username, password, ss.from)
	switch {
	case errors.Is(err, ErrBadCredentials):
		ss.failures++
		d := s.throttle.fail(ss.from, username)
		s.log.Info("bridge: smtp login refused", slog.String("client", ss.from.String()), slog.Int("failures", ss.failures))
		s.sleep(ctx, d)
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "wrong username or device password"}
	case errors.Is(err, ErrSignInAgain):
		return ss.signInAgain()
	case err != nil:
		s.log.Warn("bridge: smtp device check failed", slog.Any("err", err))
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "try again later"}
	}
	s.throttle.succeed(username)
	if !s.claim(ss.lc, l) {
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many connections for this device"}
	}
	ts := s.opts.Auth.Tokens(l.GrantID)
	if ts == nil {
		return ss.signInAgain()
	}
	var up *smtp.Client
	err = mail.WithToken(ctx, ts, func(c mail.Credentials) error {
		if c.Address == "" {
			c.Address = l.Address
		}
		var err error
		up, err = mail.DialSubmission(ctx, s.opts.Submission, c)
		return err
	})
	switch {
	case errors.Is(err, mail.ErrNoCredentials), errors.Is(err, mail.ErrAuthFailed):
		s.log.Info("bridge: smtp upstream refused the device grant", slog.String("device", l.DeviceID), slog.Any("err", err))
		return ss.signInAgain()
	case err != nil:
		s.log.Warn("bridge: smtp upstream unavailable", slog.String("device", l.DeviceID), slog.Any("err", err))
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "the mail server is unavailable, try again later"}
	}
	if !s.setUpstreamCloser(ss.lc, up) {
		up.Close()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "closing"}
	}
	if s.opts.Recorder != nil {
		s.opts.Recorder.Used(l.DeviceID, ss.from, "")
	}
	s.log.Info("bridge: smtp login", slog.String("device", l.DeviceID), slog.String("client", ss.from.String()))
	ss.login, ss.up = &l, up
	return nil
}

func (ss *smtpSession) signInAgain() error {
	return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: ss.s.signInAgain()}
}

// Mail checks the sender and relays MAIL FROM with the client's parameters (SIZE, BODY, SMTPUTF8, …).
func (ss *smtpSession) Mail(from string, opts *smtp.MailOptions) error {
	if ss.login == nil {
		return smtp.ErrAuthRequired
	}
	// The bridge submits as the device's user only, as Stalwart would refuse another sender (RFC 6409 section 6.1).
	if !strings.EqualFold(from, ss.login.Address) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "this device may send only as " + ss.login.Address}
	}
	return ss.relay(ss.up.Mail(from, opts))
}

// Rcpt relays RCPT TO: each recipient gets the upstream's own answer (RFC 5321 section 4.2).
func (ss *smtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if ss.login == nil {
		return smtp.ErrAuthRequired
	}
	return ss.relay(ss.up.Rcpt(to, opts))
}

// Data streams the message upstream as it arrives (nothing is held whole) and passes back the upstream's verdict.
func (ss *smtpSession) Data(r io.Reader) error {
	if ss.login == nil {
		return smtp.ErrAuthRequired
	}
	w, err := ss.up.Data()
	if err != nil {
		return ss.relay(err)
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return ss.relay(err)
	}
	if err := w.Close(); err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			// The final "." went out but no verdict came back: the upstream may have taken the message (RFC 5321
			// section 4.1.1.4), and a temporary failure would make the client send it twice.
			ss.s.log.Warn("bridge: smtp no reply after the end of data", slog.String("device", ss.login.DeviceID), slog.Any("err", err))
			ss.lc.conn.Close()
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 0}, Message: "the mail server did not confirm; check Sent before sending again"}
		}
		return se
	}
	return nil
}

// relay passes an upstream reply back as it was; a broken upstream connection ends the client's too, since the
// session cannot go on without it.
func (ss *smtpSession) relay(err error) error {
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	ss.s.log.Warn("bridge: smtp upstream failed", slog.String("device", ss.login.DeviceID), slog.Any("err", err))
	ss.lc.conn.Close()
	return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "the mail server is unavailable, try again later"}
}

func (ss *smtpSession) Reset() {
	if ss.up != nil {
		ss.up.Reset()
	}
}

func (ss *smtpSession) Logout() error {
	if ss.up != nil {
		ss.up.Quit()
		ss.up.Close()
	}
	return nil
}

// loginServer is the server side of the LOGIN mechanism (draft-murchison-sasl-login), which go-sasl dropped but
// Outlook and older iOS Mail still use: username and password, each asked for with a base64 prompt.
type loginServer struct {
	check    func(username, password string) error
	username string
	state    int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.state {
	case 0:
		l.state = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.username, l.state = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.state = 3
		if err := l.check(l.username, string(resp)); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	return nil, false, errors.New("bridge: unexpected LOGIN response")
}
