package mailserver

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smtpSession is one SMTP submission connection (RFC 6409).
type smtpSession struct {
	s        *Server
	conn     *trackedConn
	helo     string
	email    string // authenticated account, "" before AUTH
	failures int

	from  string
	rcpts []*account
	// remote are the recipients with no local account, accepted with Options.Outbound.
	remote []string
}

var _ smtp.AuthSession = (*smtpSession)(nil)

// newSMTPSession is called at EHLO, again after STARTTLS.
func (s *Server) newSMTPSession(c *smtp.Conn) (smtp.Session, error) {
	return &smtpSession{s: s, conn: tracked(c.Conn()), helo: c.Hostname()}, nil
}

// Stalwart's replies (crates/smtp/src/inbound/auth.rs, mail.rs).
var (
	errSMTPAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid."}
	errSMTPAuthTemp   = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	errSMTPMalformed  = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 6}, Message: "Invalid challenge."}
	errSMTPMech       = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication mechanism not supported."}
	errSMTPAuthFirst  = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required."}
	errSMTPSender     = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "You are not allowed to send from this address."}
	errSMTPNoMailbox  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Mailbox does not exist."}
)

// AuthMechanisms implements smtp.AuthSession (RFC 4954 section 3).
func (ss *smtpSession) AuthMechanisms() []string { return ss.s.mechs }

// Auth implements smtp.AuthSession.
func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	mech = strings.ToUpper(mech)
	if !slices.Contains(ss.s.mechs, mech) {
		return nil, errSMTPMech
	}
	return &bearerServer{
		s:        ss.s,
		mech:     mech,
		conn:     ss.conn,
		failures: &ss.failures,
		replies: authReplies{
			failed:      errSMTPAuthFailed,
			unavailable: errSMTPAuthTemp,
			malformed:   errSMTPMalformed,
			badAck:      errSMTPMalformed,
		},
		onSuccess: func(email string) {
			ss.email = email
			ss.s.account(email, true)
		},
	}, nil
}

// Mail implements MAIL FROM. Like Stalwart's session.auth.must-match-sender
// (default true), the sender must be the authenticated account.
func (ss *smtpSession) Mail(from string, opts *smtp.MailOptions) error {
	if ss.email == "" {
		return errSMTPAuthFirst
	}
	if !strings.EqualFold(strings.TrimSpace(from), ss.email) {
		return errSMTPSender
	}
	ss.from = from
	return nil
}

// Rcpt implements RCPT TO: local accounts (existing, or new in a domain
// that has accounts) receive mail; with Options.Outbound any other address
// is accepted too, except in the reserved .invalid domain.
func (ss *smtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if ss.email == "" {
		return errSMTPAuthFirst
	}
	a := ss.s.recipient(to)
	if a == nil {
		if !ss.s.opts.Outbound || !deliverable(to) {
			return errSMTPNoMailbox
		}
		ss.remote = append(ss.remote, to)
		return nil
	}
	ss.rcpts = append(ss.rcpts, a)
	return nil
}

// deliverable reports whether an address could exist outside: it has a
// local part and a domain, and the domain is not under .invalid (RFC 2606).
func deliverable(addr string) bool {
	addr = strings.ToLower(strings.TrimSpace(addr))
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return false
	}
	d := strings.TrimSuffix(addr[at+1:], ".")
	return d != "invalid" && !strings.HasSuffix(d, ".invalid")
}

// OutboundFolder is where a sender's mail to addresses outside the server is
// kept with Options.Outbound.
const OutboundFolder = "Outbound"

// Data implements DATA: the message, with a Received trace field (RFC 5321
// section 4.4), goes to each recipient's INBOX, unseen.
func (ss *smtpSession) Data(r io.Reader) error {
	if ss.email == "" {
		return errSMTPAuthFirst
	}
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "Return-Path: <%s>\r\n", ss.from)
	fmt.Fprintf(&msg, "Received: from %s by mail.devstack.test with ESMTPSA; %s\r\n", ss.helo, now.Format(time.RFC1123Z))
	msg.Write(body)
	for _, a := range ss.rcpts {
		if err := a.append("INBOX", msg.Bytes(), nil, now); err != nil {
			return fmt.Errorf("deliver: %w", err)
		}
		ss.s.delivered.Add(1)
	}
	if len(ss.remote) > 0 {
		// One copy for all outside recipients, in the sender's own account,
		// unseen so that the folder shows what "went out".
		sender := ss.s.account(ss.email, true)
		sender.create(OutboundFolder, "")
		if err := sender.append(OutboundFolder, msg.Bytes(), nil, now); err != nil {
			return fmt.Errorf("keep outbound: %w", err)
		}
		ss.s.outbound.Add(1)
	}
	return nil
}

// Reset implements RSET.
func (ss *smtpSession) Reset() {
	ss.from = ""
	ss.rcpts = nil
	ss.remote = nil
}

// Logout implements smtp.Session.
func (ss *smtpSession) Logout() error { return nil }
