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
	s.listeners[l] = struct{}{}
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
	mailFrom string
	rcpts    []string
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

// verify checks the device password; the upstream submission happens per message, at DATA.
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
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: s.signInAgain()}
	case err != nil:
		s.log.Warn("bridge: smtp device check failed", slog.Any("err", err))
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "try again later"}
	}
	s.throttle.succeed(username)
	if !s.claim(ss.lc, l) {
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many connections for this device"}
	}
	if s.opts.Recorder != nil {
		s.opts.Recorder.Used(l.DeviceID, ss.from, "")
	}
	ss.login = &l
	return nil
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if ss.login == nil {
		return smtp.ErrAuthRequired
	}
	// The bridge submits as the device's user only, as Stalwart would refuse another sender (RFC 6409 section 6.1).
	if !strings.EqualFold(from, ss.login.Address) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "this device may send only as " + ss.login.Address}
	}
	ss.mailFrom = from
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.login == nil || ss.mailFrom == "" {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL FROM first"}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

// Data submits the message upstream as it arrives: mail.Send copies r to the upstream DATA, so nothing is held
// whole. The token is presented before the first byte is read, so WithToken's one retry with a replaced token
// never loses data.
func (ss *smtpSession) Data(r io.Reader) error {
	if ss.login == nil || len(ss.rcpts) == 0 {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "RCPT TO first"}
	}
	s := ss.s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := ss.login
	ts := s.opts.Auth.Tokens(l.GrantID)
	if ts == nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: s.signInAgain()}
	}
	err := mail.WithToken(ctx, ts, func(c mail.Credentials) error {
		if c.Address == "" {
			c.Address = l.Address
		}
		return mail.Send(ctx, s.opts.Submission, c, ss.mailFrom, ss.rcpts, r)
	})
	if err == nil {
		return nil
	}
	s.log.Info("bridge: smtp submission failed", slog.String("device", l.DeviceID), slog.Any("err", err))
	var se *mail.SendError
	switch {
	case errors.As(err, &se) && se.Code != 0:
		// The upstream's reply, passed back as it was.
		return &smtp.SMTPError{Code: se.Code, EnhancedCode: smtp.EnhancedCode(se.Enhanced), Message: se.Reply}
	case errors.Is(err, mail.ErrNoCredentials), errors.Is(err, mail.ErrAuthFailed):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: s.signInAgain()}
	case errors.Is(err, mail.ErrMaybeSent):
		// The upstream may have taken it: a temporary failure would make the client send it twice.
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 0}, Message: "the mail server did not confirm; check Sent before sending again"}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "the mail server is unavailable, try again later"}
}

func (ss *smtpSession) Reset() { ss.mailFrom, ss.rcpts = "", nil }

func (ss *smtpSession) Logout() error { return nil }

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
