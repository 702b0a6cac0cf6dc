// Package devstack runs Postern's dev peers together, on 127.0.0.1: the identity provider shaped like Authelia
// (package idp) with one OAuth client registered for Postern, and the IMAP and SMTP server that checks tokens like
// Stalwart (package mailserver) with a seeded mailbox for every user. The demo runs on it, and so do tests that need
// the whole setup; tests of one peer start that peer alone.
//
// Only cmd and tests import it (see architecture_test.go): it is no part of a production build (tag nodemo).
package devstack

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/devstack/mailserver"
)

// ClientID is the id of the OAuth client registered for Postern.
const ClientID = "postern"

// Audience is the audience the client may request and the JWT-mode mail server requires: Stalwart 0.16's default
// requireAudience.
const Audience = "stalwart"

// Options say what to start. The zero value starts both peers with no users and a client without redirect URIs.
type Options struct {
	// RedirectURIs are the client's registered redirect URIs: Postern's callback (web.RedirectURL).
	RedirectURIs []string
	// Users can sign in at the IdP; each has a seeded mailbox at its Email.
	Users []idp.User
	// Mail configures the mail server; Start sets its UserinfoURL to the IdP's.
	Mail mailserver.Options
	// AccessTokenLifespan is the IdP's access-token lifetime (default 1h); tests that need many rotations shorten it.
	AccessTokenLifespan time.Duration
	// JWT issues RFC 9068 JWT access tokens (the client may request Audience) and runs the mail server in its
	// "Stalwart 0.16 JWT" mode, validating them offline against the IdP's JWKS. Mail.JWT, if set, is kept (an empty
	// IssuerURL there becomes the IdP's).
	JWT bool
	// Outbound makes the mail server accept any recipient (mailserver.Options.Outbound): local users get the message,
	// mail to everyone else is kept in the sender's Outbound folder. The demo sets it, so that Reply works on the
	// seeded mail, which comes from people without an account here; tests that want Stalwart's refusals leave it off.
	Outbound bool
	// RememberConsent makes the IdP remember an accepted consent for the life of the process
	// (idp.Options.RememberConsent), so that only a user's first sign-in asks. The demo sets it; tests that want
	// Authelia's default explicit consent leave it off.
	RememberConsent bool
	// Logger receives both peers' logs, each with a component attribute; nil discards.
	Logger *slog.Logger
}

// OutboundNote says, for the demo's banner (web.Config.Banner), where mail sent with Options.Outbound goes.
const OutboundNote = "Demo: mail to the demo users is delivered; mail to anyone else is not sent but kept in your " +
	"Outbound folder (addresses ending in .invalid are refused, to show what a refusal looks like)."

// Stack is the running peers.
type Stack struct {
	IdP  *idp.IdP
	Mail *mailserver.Server
	// IMAP and SMTP are the mail server's listeners (plain TCP, no TLS).
	IMAP, SMTP net.Addr
	// ClientSecret is the client's secret, random per Stack.
	ClientSecret string
	// JWT reports whether the IdP issues JWT access tokens (Options.JWT).
	JWT bool
}

// Start starts the IdP and the mail server and seeds the users' mailboxes. Close stops them.
func Start(opts Options) (*Stack, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("devstack: client secret: %w", err)
	}
	s := &Stack{ClientSecret: base64.RawURLEncoding.EncodeToString(secret), JWT: opts.JWT}
	var err error
	s.IdP, err = idp.Start("127.0.0.1:0", idp.Options{
		Users: opts.Users,
		Clients: []idp.Client{{
			ID: ClientID, Secret: s.ClientSecret,
			RedirectURIs: opts.RedirectURIs,
			Scopes:       []string{"openid", "profile", "email", "offline_access"},
			Audience:     []string{Audience},
		}},
		AccessTokenLifespan: opts.AccessTokenLifespan,
		JWTAccessTokens:     opts.JWT,
		RememberConsent:     opts.RememberConsent,
		Logger:              logger.With(slog.String("component", "dev-idp")),
	})
	if err != nil {
		return nil, fmt.Errorf("devstack: idp: %w", err)
	}
	mo := opts.Mail
	mo.UserinfoURL = s.IdP.Issuer() + "/api/oidc/userinfo"
	mo.Outbound = mo.Outbound || opts.Outbound
	if opts.JWT && mo.JWT == nil {
		mo.JWT = &mailserver.JWTOptions{IssuerURL: s.IdP.Issuer(), RequireAudience: Audience}
	} else if mo.JWT != nil && mo.JWT.IssuerURL == "" {
		j := *mo.JWT
		j.IssuerURL = s.IdP.Issuer()
		mo.JWT = &j
	}
	if mo.Logger == nil {
		mo.Logger = logger.With(slog.String("component", "dev-mail"))
	}
	if s.Mail, err = mailserver.New(mo); err != nil {
		s.Close()
		return nil, fmt.Errorf("devstack: mail server: %w", err)
	}
	for _, u := range opts.Users {
		if u.Email == "" {
			continue
		}
		if err := s.Mail.Seed(u.Email); err != nil {
			s.Close()
			return nil, fmt.Errorf("devstack: seed %s: %w", u.Email, err)
		}
	}
	if s.IMAP, err = s.Mail.ListenIMAP("127.0.0.1:0"); err != nil {
		s.Close()
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if s.SMTP, err = s.Mail.ListenSMTP("127.0.0.1:0"); err != nil {
		s.Close()
		return nil, fmt.Errorf("devstack: %w", err)
	}
	return s, nil
}

// Close stops both peers.
func (s *Stack) Close() {
	if s.Mail != nil {
		s.Mail.Close()
	}
	if s.IdP != nil {
		s.IdP.Close()
	}
}
