package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/emersion/go-smtp"
)

// Send submits one message (RFC 6409) with the bearer token in c: connect,
// TLS per srv.TLS, EHLO, AUTH with the initial response (RFC 4954), MAIL
// FROM, RCPT TO each of to, DATA, QUIT. from must be the account's own
// address: Stalwart refuses any other with 501 5.5.4.
//
// A refused token (535) gives an error wrapping ErrAuthFailed, a temporary
// failure (454, e.g. the mail server cannot reach the identity provider) one
// wrapping ErrAuthUnavailable; nothing was submitted then, so the caller may
// retry with a replaced token (see WithToken). Every other failure is a
// *SendError wrapping one of the submission outcomes (ErrRecipientRefused,
// ErrRecipientFull, ErrSenderRefused, ErrMessageTooBig, ErrSubmitBusy,
// ErrMessageRefused, ErrServerUnavailable), or ErrMaybeSent.
func Send(ctx context.Context, srv Server, c Credentials, from string, to []string, msg io.Reader) error {
	if len(to) == 0 {
		return errors.New("mail: smtp send: no recipients")
	}
	client, conn, err := dialSubmission(ctx, srv, c)
	if err != nil {
		return err
	}
	defer client.Close()
	// go-smtp has no context support: a cancelled ctx closes the connection,
	// which fails whatever command is in flight.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := client.Mail(from, nil); err != nil {
		return sendError("mail from", "", ctxErr(ctx, err))
	}
	for _, rcpt := range to {
		if err := client.Rcpt(rcpt, nil); err != nil {
			return sendError("rcpt to", rcpt, ctxErr(ctx, err))
		}
	}
	w, err := client.Data()
	if err != nil {
		return sendError("data", "", ctxErr(ctx, err))
	}
	if _, err := io.Copy(w, msg); err != nil {
		w.Close()
		return sendError("data", "", ctxErr(ctx, err))
	}
	if err := w.Close(); err != nil {
		// The final "." went out. A reply refusing the message means it was not taken; no reply at all (a reset,
		// a timeout) means it may well have been (RFC 5321 §4.1.1.4: acceptance is the reply to the end of data).
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			return fmt.Errorf("%w: %w", ErrMaybeSent, ctxErr(ctx, err))
		}
		return sendError("end of data", "", err)
	}
	// The message was accepted at the end of DATA (RFC 5321 section 4.1.1.4);
	// a failed QUIT does not undo that.
	_ = client.Quit()
	return nil
}

// DialSubmission connects to the submission server, sets up TLS as srv.TLS says and authenticates with the bearer
// token in c (EHLO, AUTH with the initial response, RFC 4954), then hands over the session for the caller's own
// MAIL FROM, RCPT TO and DATA: the bridge relays each command so that the server's replies reach its client one by
// one. ctx bounds the connection and authentication only; the caller closes the client. Errors are Send's: a
// refused token wraps ErrAuthFailed (so WithToken retries), a temporary failure ErrAuthUnavailable.
func DialSubmission(ctx context.Context, srv Server, c Credentials) (*smtp.Client, error) {
	client, _, err := dialSubmission(ctx, srv, c)
	return client, err
}

// dialSubmission is DialSubmission, also returning the network connection so that Send can close it when its
// context ends.
func dialSubmission(ctx context.Context, srv Server, c Credentials) (*smtp.Client, net.Conn, error) {
	sc, err := NewSASLClient(srv.Mechanism, c)
	if err != nil {
		return nil, nil, err
	}
	mechName, _ := srv.Mechanism.saslName()

	dctx, cancel := context.WithTimeout(ctx, srv.dialTimeout())
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(dctx, "tcp", srv.addr())
	if err != nil {
		return nil, nil, sendError("dial "+srv.addr(), "", err)
	}
	// go-smtp has no context support: until dialSubmission returns, a
	// cancelled ctx closes the connection, which fails the command in flight.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var client *smtp.Client
	switch srv.TLS {
	case TLSImplicit, "":
		tc := tls.Client(conn, srv.tlsConfig(""))
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return nil, nil, sendError("tls handshake with "+srv.addr(), "", err)
		}
		client = smtp.NewClient(tc)
	case TLSStartTLS:
		client, err = smtp.NewClientStartTLS(conn, srv.tlsConfig(""))
		if err != nil {
			conn.Close()
			return nil, nil, sendError("starttls with "+srv.addr(), "", ctxErr(ctx, err))
		}
	case TLSNone:
		client = smtp.NewClient(conn)
	default:
		conn.Close()
		return nil, nil, fmt.Errorf("mail: unknown tls mode %q", srv.TLS)
	}
	// A server that stops answering fails the command instead of holding the request (go-smtp sets the deadline
	// per command; the end of data has its own, longer SubmissionTimeout).
	client.CommandTimeout = srv.commandTimeout()

	if err := client.Hello("localhost"); err != nil {
		client.Close()
		return nil, nil, sendError("ehlo", "", ctxErr(ctx, err))
	}
	if ok, _ := client.Extension("AUTH"); !ok || !client.SupportsAuth(mechName) {
		client.Close()
		return nil, nil, fmt.Errorf("mail: smtp server %s does not offer AUTH %s", srv.addr(), mechName)
	}
	if err := client.Auth(sc); err != nil {
		client.Close()
		return nil, nil, ctxErr(ctx, smtpAuthError(err, sc, c.Token))
	}
	return client, conn, nil
}

// ErrMaybeSent means the message was transmitted but the server's verdict was lost (the connection failed after
// the end of data): it may have been accepted, so sending it again may deliver it twice.
var ErrMaybeSent = errors.New("mail: smtp: no reply after the end of data; the message may have been sent")

// smtpAuthError maps the reply to AUTH (RFC 4954 section 6): 535 means the
// token was refused, 454 a temporary failure.
func smtpAuthError(err error, sc *SASLClient, token string) error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return fmt.Errorf("mail: smtp auth: %w", err)
	}
	detail := fmt.Sprintf("%d", se.Code)
	if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
		detail += fmt.Sprintf(" %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if se.Message != "" {
		detail += " " + strings.ReplaceAll(se.Message, token, "[redacted]")
	}
	if st := sc.ErrorStatus(); st != "" {
		detail += " (error challenge status " + st + ")"
	}
	switch se.Code {
	case 535:
		return fmt.Errorf("%w: smtp %s", ErrAuthFailed, detail)
	case 454:
		return fmt.Errorf("%w: smtp %s", ErrAuthUnavailable, detail)
	}
	return fmt.Errorf("mail: smtp auth: %s", detail)
}
