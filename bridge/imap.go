package bridge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/postern/postern/mail"
)

// maxFailures wrong passwords end a connection (the rule, and Stalwart's own imap.auth.max-failures).
const maxFailures = 3

// ServeIMAPS serves IMAP with implicit TLS (port 993 style, RFC 8314) on l until l is closed.
func (s *Server) ServeIMAPS(l net.Listener) error {
	return s.serve(l, func(lc *liveConn) { s.imapSession(lc, true) })
}

// ServeIMAP serves IMAP on l in cleartext with STARTTLS (RFC 9051 section 6.2.1); no credentials are taken before
// TLS (LOGINDISABLED).
func (s *Server) ServeIMAP(l net.Listener) error {
	return s.serve(l, func(lc *liveConn) { s.imapSession(lc, false) })
}

// imapConn is one client connection before login.
type imapConn struct {
	s        *Server
	lc       *liveConn
	conn     net.Conn
	r        *bufio.Reader
	tls      bool
	from     netip.Addr
	clientID string
	failures int
	// batch is under the TLS connection, for splice to send a chunk's TLS records in one write.
	batch *recordBatcher
}

func (s *Server) imapSession(lc *liveConn, implicitTLS bool) {
	c := &imapConn{s: s, lc: lc, conn: lc.conn, from: remoteAddr(lc.conn)}
	// The pre-login deadline covers the TLS handshake and every command up to a successful login.
	c.conn.SetDeadline(time.Now().Add(s.opts.PreLoginTimeout))
	if implicitTLS {
		c.batch = &recordBatcher{Conn: c.conn}
		tc := tls.Server(c.batch, s.tls)
		if err := tc.Handshake(); err != nil {
			return
		}
		c.conn, c.tls = tc, true
	}
	c.r = bufio.NewReader(c.conn)
	if !c.write("* OK [CAPABILITY " + c.caps() + "] Postern bridge ready") {
		return
	}
	for {
		cmd, err := readCommand(c.r, c.conn)
		switch {
		case errors.Is(err, errSyntax):
			tag := cmd.tag
			if tag == "" {
				tag = "*"
			}
			if !c.write(tag + " BAD command not understood") {
				return
			}
			continue
		case errors.Is(err, errTooLong):
			c.write("* BYE command too long")
			return
		case err != nil:
			return
		}
		up, done := c.handle(cmd)
		if done {
			if up != nil {
				c.splice(up)
			}
			return
		}
	}
}

// caps are the capabilities before login (RFC 9051 section 6.1.1): credentials only over TLS (LOGINDISABLED and
// no AUTH= in cleartext, RFC 9051 section 6.2.3, RFC 3501 section 7.2.1).
func (c *imapConn) caps() string {
	if c.tls {
		return "IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN"
	}
	return "IMAP4rev1 STARTTLS LOGINDISABLED LITERAL+ ID"
}

func (c *imapConn) write(line string) bool {
	_, err := io.WriteString(c.conn, line+"\r\n")
	return err == nil
}

// handle answers one pre-login command. done says the connection's pre-login part is over: up is the
// authenticated upstream to splice with, or nil to close.
func (c *imapConn) handle(cmd command) (up net.Conn, done bool) {
	t := cmd.tag
	switch cmd.name {
	case "CAPABILITY":
		return nil, !(c.write("* CAPABILITY "+c.caps()) && c.write(t+" OK done"))
	case "NOOP":
		return nil, !c.write(t + " OK done")
	case "LOGOUT":
		c.write("* BYE logging out")
		c.write(t + " OK done")
		return nil, true
	case "ID":
		c.clientID = clientID(cmd.args)
		return nil, !(c.write(`* ID ("name" "Postern")`) && c.write(t+" OK done"))
	case "STARTTLS":
		if c.tls {
			return nil, !c.write(t + " BAD already under TLS")
		}
		if !c.write(t + " OK begin TLS") {
			return nil, true
		}
		// A client's bytes that came with STARTTLS would be commands injected in cleartext (the STARTTLS
		// command-injection flaw, CVE-2011-0411): refuse them rather than run them under TLS.
		if c.r.Buffered() > 0 {
			return nil, true
		}
		c.batch = &recordBatcher{Conn: c.conn}
		tc := tls.Server(c.batch, c.s.tls)
		if err := tc.Handshake(); err != nil {
			return nil, true
		}
		c.conn, c.tls = tc, true
		c.r = bufio.NewReader(tc)
		return nil, false
	case "LOGIN":
		if !c.tls {
			return nil, !c.write(t + " NO [PRIVACYREQUIRED] use STARTTLS first")
		}
		if len(cmd.args) != 2 || !isString(cmd.args[0]) || !isString(cmd.args[1]) {
			return nil, !c.write(t + " BAD LOGIN takes a username and a password")
		}
		return c.login(t, cmd.args[0].val, cmd.args[1].val)
	case "AUTHENTICATE":
		if !c.tls {
			return nil, !c.write(t + " NO [PRIVACYREQUIRED] use STARTTLS first")
		}
		return c.authenticate(t, cmd.args)
	}
	return nil, !c.write(t + " BAD not before login; log in first")
}

func isString(a arg) bool { return a.kind == argAtom || a.kind == argString }

// authenticate runs AUTHENTICATE PLAIN (RFC 4616), with the initial response on the command line (SASL-IR,
// RFC 4959) or after an empty continuation request (RFC 9051 section 6.2.2).
func (c *imapConn) authenticate(t string, args []arg) (net.Conn, bool) {
	if len(args) == 0 || len(args) > 2 {
		return nil, !c.write(t + " BAD AUTHENTICATE takes a mechanism")
	}
	if !strings.EqualFold(args[0].val, "PLAIN") {
		return nil, !c.write(t + " NO [CANNOT] only PLAIN is offered")
	}
	var resp string
	if len(args) == 2 {
		resp = args[1].val
	} else {
		if !c.write("+ ") {
			return nil, true
		}
		l, err := readLine(c.r)
		if err != nil {
			return nil, true
		}
		resp = l
	}
	if resp == "*" {
		return nil, !c.write(t + " BAD authentication cancelled")
	}
	if resp == "=" { // RFC 4959: "=" is an empty initial response
		resp = ""
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return nil, !c.write(t + " BAD undecodable response")
	}
	// RFC 4616 section 2: [authzid] NUL authcid NUL passwd.
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return nil, !c.write(t + " BAD malformed PLAIN response")
	}
	if len(parts[0]) > 0 && !bytes.EqualFold(parts[0], parts[1]) {
		return nil, !c.write(t + " NO [AUTHORIZATIONFAILED] a device acts only as its own user")
	}
	return c.login(t, string(parts[1]), string(parts[2]))
}

// login checks the device password, authenticates upstream with the device grant's token and answers the client
// with the upstream's capabilities.
func (c *imapConn) login(t, username, password string) (net.Conn, bool) {
	s := c.s
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.PreLoginTimeout)
	defer cancel()
	l, err := s.opts.Auth.Verify(ctx, username, password, c.from)
	switch {
	case errors.Is(err, ErrBadCredentials):
		c.failures++
		d := s.throttle.fail(c.from, username)
		s.log.Info("bridge: imap login refused", slog.String("client", c.from.String()), slog.Int("failures", c.failures))
		s.sleep(ctx, d)
		if !c.write(t + " NO [AUTHENTICATIONFAILED] wrong username or device password") {
			return nil, true
		}
		if c.failures >= maxFailures {
			c.write("* BYE too many failed logins")
			return nil, true
		}
		return nil, false
	case errors.Is(err, ErrSignInAgain):
		return nil, !c.write(t + " NO [AUTHENTICATIONFAILED] " + s.signInAgain())
	case err != nil:
		s.log.Warn("bridge: imap device check failed", slog.Any("err", err))
		return nil, !c.write(t + " NO [UNAVAILABLE] try again later")
	}
	s.throttle.succeed(username)
	if !s.claim(c.lc, l) {
		return nil, !c.write(t + " NO [LIMIT] too many connections for this device")
	}

	var (
		up   net.Conn
		caps []string
	)
	ts := s.opts.Auth.Tokens(l.GrantID)
	if ts == nil {
		return nil, !c.write(t + " NO [AUTHENTICATIONFAILED] " + s.signInAgain())
	}
	err = mail.WithToken(ctx, ts, func(cr mail.Credentials) error {
		if cr.Address == "" {
			cr.Address = l.Address
		}
		var err error
		up, caps, err = mail.DialIMAPConn(ctx, s.opts.IMAP, cr)
		return err
	})
	switch {
	case errors.Is(err, mail.ErrNoCredentials), errors.Is(err, mail.ErrAuthFailed):
		s.log.Info("bridge: imap upstream refused the device grant", slog.String("device", l.DeviceID), slog.Any("err", err))
		return nil, !c.write(t + " NO [AUTHENTICATIONFAILED] " + s.signInAgain())
	case err != nil:
		s.log.Warn("bridge: imap upstream unavailable", slog.String("device", l.DeviceID), slog.Any("err", err))
		return nil, !c.write(t + " NO [UNAVAILABLE] the mail server is unavailable, try again later")
	}
	if !s.setUpstream(c.lc, up) {
		up.Close()
		return nil, true
	}
	if s.opts.Recorder != nil {
		s.opts.Recorder.Used(l.DeviceID, c.from, c.clientID)
	}
	s.log.Info("bridge: imap login", slog.String("device", l.DeviceID), slog.String("client", c.from.String()))
	if !c.write(t + " OK [CAPABILITY " + strings.Join(caps, " ") + "] logged in") {
		return nil, true
	}
	return up, true
}

func (s *Server) signInAgain() string {
	return "sign in again at " + s.opts.PublicURL + "/devices"
}

// clientID renders an ID command's parameter list (RFC 2971 section 3.1) as "name version", for the Devices page.
// It is bounded and keeps printable characters only: it is what the client says, not what it is.
func clientID(args []arg) string {
	var name, version string
	if len(args) >= 2 && args[0].kind == argListStart {
		for i := 1; i+1 < len(args) && args[i].kind != argListEnd; i += 2 {
			switch strings.ToLower(args[i].val) {
			case "name":
				name = args[i+1].val
			case "version":
				version = args[i+1].val
			}
		}
	}
	id := strings.TrimSpace(name + " " + version)
	id = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, id)
	if len(id) > 100 {
		id = id[:100]
	}
	return strings.ToValidUTF8(id, "")
}
