package mailserver

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// authReplies are a protocol's answers to the outcomes of authentication.
type authReplies struct {
	failed      error // token refused (IMAP NO [AUTHENTICATIONFAILED], SMTP 535)
	unavailable error // identity provider unavailable
	malformed   error // no bearer token in the payload
	badAck      error // anything but %x01 after an error challenge
}

// bearerServer is the server side of OAUTHBEARER (RFC 7628) and XOAUTH2,
// parsed the way Stalwart does: the payload is split at %x01 and the first
// field starting with "auth=Bearer " (case-insensitive) holds the token; the
// GS2 header, a=, user=, host= and port= are ignored.
type bearerServer struct {
	s       *Server
	mech    string
	conn    *trackedConn
	replies authReplies
	// failures is shared by the connection's exchanges.
	failures *int
	// onSuccess is called with the account address once the token is valid.
	onSuccess func(email string)

	started     bool
	awaitingAck bool
	pending     error
}

var _ sasl.Server = (*bearerServer)(nil)

// Next implements sasl.Server.
func (b *bearerServer) Next(resp []byte) ([]byte, bool, error) {
	if b.awaitingAck {
		b.awaitingAck = false
		// RFC 7628 section 3.2.3: the client answers an error challenge
		// with a single %x01.
		if !bytes.Equal(resp, []byte{0x01}) {
			return nil, false, b.replies.badAck
		}
		b.s.challengeAcks.Add(1)
		return nil, false, b.fail(b.pending)
	}
	if resp == nil && !b.started {
		// No initial response: ask for it with an empty challenge
		// (RFC 9051 section 6.2.2, RFC 4954 section 4).
		b.started = true
		return nil, false, nil
	}
	b.started = true
	b.s.authAttempts.Add(1)

	token, ok := bearerToken(resp)
	if !ok {
		b.s.authFailures.Add(1)
		return nil, false, b.fail(b.replies.malformed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	email, res := b.s.validateToken(ctx, token)
	if res == authOK && b.s.opts.ErrorChallenge && !strings.EqualFold(saslUser(resp), email) {
		// Dovecot's oauth2 passdb (username_attribute = email) requires the SASL user — OAUTHBEARER's a=, XOAUTH2's
		// user= — to equal the token's address after lower-casing; Stalwart ignores it. Postern must always send
		// the userinfo address there.
		res = authFailed
	}
	switch res {
	case authOK:
		b.s.authSuccesses.Add(1)
		b.onSuccess(email)
		return nil, true, nil
	case authUnavailable:
		// Stalwart does not count identity provider errors towards the
		// failure limit (AuthEvent::Error).
		b.s.authFailures.Add(1)
		b.s.log.Info("mailserver: authentication unavailable", "mech", b.mech)
		return nil, false, b.replies.unavailable
	}
	b.s.authFailures.Add(1)
	b.s.log.Info("mailserver: authentication failed", "mech", b.mech)
	if b.s.opts.ErrorChallenge {
		// Dovecot: RFC 7628 section 3.2.2 error challenge first.
		b.awaitingAck = true
		b.pending = b.replies.failed
		if b.mech == "XOAUTH2" {
			return []byte(`{"status":"401","schemes":"bearer","scope":"mail"}`), false, nil
		}
		return []byte(`{"status":"invalid_token","schemes":"bearer","scope":"mail"}`), false, nil
	}
	return nil, false, b.fail(b.replies.failed)
}

// fail counts a refused authentication and, at the limit, arranges for the
// connection to close right after the reply carrying err.
func (b *bearerServer) fail(err error) error {
	*b.failures++
	if *b.failures >= b.s.opts.MaxAuthFailures && b.conn != nil {
		b.conn.closeAfterWrite.Store(true)
	}
	return err
}

// bearerToken extracts the token from an OAUTHBEARER or XOAUTH2 payload.
func bearerToken(payload []byte) (string, bool) {
	const prefix = "auth=bearer "
	for _, field := range bytes.Split(payload, []byte{0x01}) {
		if len(field) > len(prefix) && bytes.EqualFold(field[:len(prefix)], []byte(prefix)) {
			return string(field[len(prefix):]), true
		}
	}
	return "", false
}

// saslUser returns the user named in an OAUTHBEARER (GS2 header "n,a=<user>,", RFC 7628 §3.1) or XOAUTH2
// ("user=<user>") payload, or "".
func saslUser(payload []byte) string {
	fields := bytes.Split(payload, []byte{0x01})
	first := string(fields[0])
	if u, ok := strings.CutPrefix(first, "user="); ok {
		return u
	}
	for _, p := range strings.Split(first, ",") {
		if u, ok := strings.CutPrefix(p, "a="); ok {
			return u
		}
	}
	return ""
}
