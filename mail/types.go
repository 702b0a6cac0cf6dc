// Package mail talks to the user's mail server on their behalf: IMAP (RFC 9051,
// RFC 3501) for reading and SMTP submission (RFC 6409) for sending, both
// authenticated with an OAuth 2.0 bearer token over SASL OAUTHBEARER (RFC 7628)
// or XOAUTH2.
//
// The package knows a bearer string and an address, nothing about OAuth: the
// caller obtains and refreshes tokens. It returns its own value types
// (Mailbox, Summary, Address) so that templates never import go-imap.
package mail

import (
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"
)

// Mechanism names the SASL mechanism used to present the bearer token.
type Mechanism string

const (
	// MechOAuthBearer is SASL OAUTHBEARER (RFC 7628), the default. Stalwart
	// 0.11 supports only this one with its OIDC directory.
	MechOAuthBearer Mechanism = "oauthbearer"
	// MechXOAuth2 is Google's XOAUTH2, accepted by Dovecot and Stalwart 0.12+.
	MechXOAuth2 Mechanism = "xoauth2"
)

// saslName returns the mechanism name as it appears on the wire. Case does
// not matter, so configuration may say "OAUTHBEARER".
func (m Mechanism) saslName() (string, error) {
	switch Mechanism(strings.ToLower(string(m))) {
	case MechOAuthBearer, "":
		return "OAUTHBEARER", nil
	case MechXOAuth2:
		return "XOAUTH2", nil
	}
	return "", errors.New("mail: unknown SASL mechanism " + strconv.Quote(string(m)))
}

// TLSMode says how a connection is protected.
type TLSMode string

const (
	// TLSImplicit starts TLS right after connecting (IMAPS 993, submissions
	// 465; RFC 8314).
	TLSImplicit TLSMode = "tls"
	// TLSStartTLS connects in cleartext and upgrades with STARTTLS (RFC 9051
	// section 6.2.1, RFC 3207) before authenticating.
	TLSStartTLS TLSMode = "starttls"
	// TLSNone sends the bearer token in cleartext. Use it only on loopback.
	TLSNone TLSMode = "none"
)

// Server says where and how to reach an IMAP or SMTP submission server.
type Server struct {
	Host string
	Port int
	// TLS defaults to TLSImplicit.
	TLS TLSMode
	// TLSConfig is cloned for each connection; ServerName defaults to Host.
	TLSConfig *tls.Config
	// Mechanism defaults to MechOAuthBearer.
	Mechanism Mechanism
	// DialTimeout bounds the TCP connect and TLS handshake; default 15s.
	DialTimeout time.Duration
	// CommandTimeout bounds the silence within one command: an IMAP command
	// (or SMTP command) during which the server neither answers nor takes
	// what we send for this long fails, and its connection is closed, so
	// that a server that stops answering cannot hold a pooled connection
	// (or a request) for ever. It is renewed by every read and write, so a
	// long download that makes progress is not cut. Default 60s.
	CommandTimeout time.Duration
}

func (srv Server) addr() string {
	return net.JoinHostPort(srv.Host, strconv.Itoa(srv.Port))
}

func (srv Server) commandTimeout() time.Duration {
	if srv.CommandTimeout > 0 {
		return srv.CommandTimeout
	}
	return 60 * time.Second
}

func (srv Server) dialTimeout() time.Duration {
	if srv.DialTimeout > 0 {
		return srv.DialTimeout
	}
	return 15 * time.Second
}

// tlsConfig returns a per-connection copy of the TLS configuration with the
// server name filled in, so that certificate verification is never skipped
// by accident.
func (srv Server) tlsConfig(nextProto string) *tls.Config {
	var cfg *tls.Config
	if srv.TLSConfig != nil {
		cfg = srv.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = srv.Host
	}
	if cfg.NextProtos == nil && nextProto != "" {
		cfg.NextProtos = []string{nextProto}
	}
	return cfg
}

// Credentials are what the mail server needs to authenticate a user: the
// address (sent as the OAUTHBEARER authzid a= or the XOAUTH2 user=) and the
// current access token. Stalwart ignores the address and derives the account
// from the token alone; Dovecot requires it to match the token's email claim.
type Credentials struct {
	Address string
	Token   string
}

var (
	// ErrAuthFailed means the server refused the token: IMAP NO
	// [AUTHENTICATIONFAILED] or any other NO to AUTHENTICATE except
	// [UNAVAILABLE] (RFC 5530), or SMTP 535 (RFC 4954 section 6). The caller
	// should get a fresh token and retry (WithToken), then ask the user to sign in.
	ErrAuthFailed = errors.New("mail: authentication failed")
	// ErrAuthUnavailable is a temporary failure: IMAP NO [UNAVAILABLE] or
	// SMTP 454 (RFC 4954 section 6), e.g. the mail server cannot reach the
	// identity provider. Retrying later may succeed with the same token.
	ErrAuthUnavailable = errors.New("mail: authentication temporarily unavailable")
)

// Special-use roles of a mailbox (RFC 6154 attributes, plus INBOX).
const (
	SpecialInbox   = "inbox"
	SpecialDrafts  = "drafts"
	SpecialSent    = "sent"
	SpecialArchive = "archive"
	SpecialJunk    = "junk"
	SpecialTrash   = "trash"
)

// Mailbox is one folder as listed by Session.Mailboxes.
type Mailbox struct {
	Name      string
	Delimiter string
	// Special is one of the Special* constants, or "" for an ordinary folder.
	Special string
	// Messages and Unseen are zero for a NoSelect mailbox.
	Messages, Unseen uint32
	// NoSelect is set for containers that hold no messages (\Noselect,
	// \NonExistent).
	NoSelect bool
}

// Address is a decoded mailbox address.
type Address struct {
	Name, Email string
}

// String formats the address for display: "Name <email>" or just the email.
func (a Address) String() string {
	if a.Name == "" {
		return a.Email
	}
	return a.Name + " <" + a.Email + ">"
}

// Summary is what a message list shows for one message.
type Summary struct {
	UID  uint32
	From []Address
	To   []Address
	// Subject is decoded from RFC 2047 encoded words.
	Subject string
	// Date is the Date header, or the INTERNALDATE when the header is
	// missing or unparsable.
	Date                    time.Time
	Seen, Flagged, Answered bool
	HasAttachment           bool
	// Size is RFC822.SIZE in bytes.
	Size int64
	// MessageID and InReplyTo (the first id) come from the envelope, without angle brackets; References only when
	// the row was fetched for grouping here (ListOptions.Threads on a server without THREAD). See thread.go.
	MessageID, InReplyTo string
	References           []string
	// Snippet is the start of the text as one line (ListOptions.Snippets), "" when not asked for or not readable.
	Snippet string
}
