package doctor

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/mail"
)

// identity is what userinfo says about the token's user (OIDC Core §5.3.2).
type identity struct {
	Subject           string `json:"sub"`
	PreferredUsername string `json:"preferred_username"`
	Email             string `json:"email"`
	Name              string `json:"name"`
}

// token uses Options.Token as Postern would: userinfo for the identity, then one AUTHENTICATE on IMAP and one AUTH
// on SMTP submission. Stalwart validates the token with the same userinfo call, so a token that userinfo accepts
// and Stalwart refuses means Stalwart asks a different URL (or another IdP).
func (d *run) token(ctx context.Context) {
	d.userinfo(ctx)
	d.tokenKind()
	if d.identity == nil || d.identity.Email == "" {
		d.skip("imap_login", "no identity from userinfo")
		d.skip("smtp_login", "no identity from userinfo")
		return
	}
	d.imapLogin(ctx)
	d.smtpLogin(ctx)
}

func (d *run) userinfo(ctx context.Context) {
	const name = "userinfo"
	if d.disc == nil || d.disc.UserinfoEndpoint == "" {
		d.skip(name, "no userinfo_endpoint")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.disc.UserinfoEndpoint, nil)
	if err != nil {
		d.fail(name, "userinfo_endpoint is not a URL", "Check that oidc.issuer points at Authelia.")
		return
	}
	req.Header.Set("Authorization", "Bearer "+d.opts.Token)
	req.Header.Set("Accept", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		detail, fix := explainConnErr(err, endpointKeys{host: "oidc.issuer", ca: "oidc.ca_file", what: "Authelia"}, req.URL.Hostname())
		d.fail(name, "GET userinfo_endpoint: "+detail, fix)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		d.fail(name, "userinfo refused the token (HTTP 401): it is expired, revoked or not an access token of this issuer",
			"Use a current access token (Authelia's live 1 h), issued by "+d.cfg.OIDC.Issuer+". A token issued under another "+
				"issuer URL (an internal one) is refused since Authelia 4.39.20.")
		return
	case resp.StatusCode == http.StatusForbidden:
		d.fail(name, "userinfo refused the token (HTTP 403 insufficient_scope): it was issued without the openid scope",
			"Sign in with the openid scope (oidc.scopes must contain openid); Stalwart's userinfo check needs it too.")
		return
	case resp.StatusCode != http.StatusOK:
		d.fail(name, fmt.Sprintf("userinfo answered HTTP %d", resp.StatusCode), "Check Authelia's log.")
		return
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/jwt" {
		d.fail(name, "userinfo answered a signed JWT (application/jwt)",
			fmt.Sprintf("In Authelia's client '%s':\n  userinfo_signed_response_alg: 'none'\nStalwart and Postern read userinfo as plain JSON.",
				d.cfg.OIDC.ClientID))
		return
	}
	var id identity
	if err := json.Unmarshal(body, &id); err != nil || id.Subject == "" {
		d.fail(name, "userinfo answered something that is not an OIDC userinfo document", "Check that oidc.issuer points at Authelia.")
		return
	}
	d.identity = &id
	if id.Email == "" {
		d.fail(name, fmt.Sprintf("sub %q, preferred_username %q, but no email", id.Subject, id.PreferredUsername),
			"Postern and Stalwart (fields.email) need the email claim: the token must be issued with the email scope "+
				"(oidc.scopes and the Authelia client's scopes include email) and the user needs an address in Authelia's user backend.")
		return
	}
	d.pass(name, "the token belongs to preferred_username %q, email %q", id.PreferredUsername, id.Email)
}

func (d *run) mailServer(e mailEndpoint) (mail.Server, error) {
	var seen *tls.ConnectionState
	tc, err := e.tlsConfig(&seen)
	if err != nil {
		return mail.Server{}, err
	}
	return mail.Server{Host: e.host, Port: e.port, TLS: mail.TLSMode(e.tls), TLSConfig: tc,
		Mechanism: mail.Mechanism(e.sasl), DialTimeout: d.opts.Timeout}, nil
}

// loginFix is the advice when Stalwart refuses a token that userinfo accepted.
func (d *run) loginFix() string {
	issuer := strings.TrimRight(d.cfg.OIDC.Issuer, "/")
	return "userinfo accepts this token, so Stalwart asks somewhere else. Its directory must call the same public issuer's userinfo:\n" +
		"Stalwart 0.11–0.15 (config.toml):\n" + indent(stalwartDirectory(issuer), 2) + "\n" +
		"Stalwart 0.16: the OIDC directory with issuerUrl = \"" + issuer + "\", claimUsername = \"preferred_username\".\n" +
		"It must also be the directory this listener authenticates against."
}

func (d *run) imapLogin(ctx context.Context) {
	const name = "imap_login"
	e := d.imapEndpoint()
	srv, err := d.mailServer(e)
	if err != nil {
		d.fail(name, err.Error(), "Point imap.ca_file at a readable PEM file.")
		return
	}
	s, err := mail.Dial(ctx, srv, mail.Credentials{Address: d.identity.Email, Token: d.opts.Token})
	switch {
	case err == nil:
		s.Close()
		d.pass(name, "AUTHENTICATE %s accepted for %s", e.mech(), d.identity.Email)
	case errors.Is(err, mail.ErrAuthFailed):
		d.fail(name, "Stalwart refused the token on IMAP: "+redact(err.Error(), d.opts.Token), d.loginFix())
	case errors.Is(err, mail.ErrAuthUnavailable):
		d.fail(name, "Stalwart could not check the token (temporary failure): "+redact(err.Error(), d.opts.Token),
			"Stalwart cannot reach Authelia's userinfo endpoint: check its directory's endpoint.url (or issuerUrl), and DNS and TLS trust from Stalwart's container.")
	default:
		d.fail(name, "IMAP login: "+redact(err.Error(), d.opts.Token), d.loginFix())
	}
}

func (d *run) smtpLogin(ctx context.Context) {
	const name = "smtp_login"
	e := d.smtpEndpoint()
	var seen *tls.ConnectionState
	conn, detail, fix := d.dial(ctx, e, &seen)
	if conn == nil {
		d.fail(name, detail, fix)
		return
	}
	var c *smtp.Client
	if e.tls == "starttls" {
		tc, err := e.tlsConfig(&seen)
		if err != nil {
			conn.Close()
			d.fail(name, err.Error(), "Point smtp.ca_file at a readable PEM file.")
			return
		}
		if c, err = smtp.NewClientStartTLS(conn, tc); err != nil {
			d.fail(name, "STARTTLS: "+err.Error(), "See the smtp check above.")
			return
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	sc, err := mail.NewSASLClient(mail.Mechanism(e.sasl), mail.Credentials{Address: d.identity.Email, Token: d.opts.Token})
	if err != nil {
		d.fail(name, err.Error(), "Use an access token as Authelia issues it.")
		return
	}
	err = c.Auth(sc)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		d.pass(name, "AUTH %s accepted for %s", e.mech(), d.identity.Email)
		_ = c.Quit()
	case errors.As(err, &se) && se.Code == 454:
		d.fail(name, fmt.Sprintf("Stalwart could not check the token (SMTP %d %s)", se.Code, redact(se.Message, d.opts.Token)),
			"Stalwart cannot reach Authelia's userinfo endpoint: check its directory's endpoint.url (or issuerUrl), and DNS and TLS trust from Stalwart's container.")
	case errors.As(err, &se):
		d.fail(name, fmt.Sprintf("Stalwart refused the token on SMTP (%d %s)", se.Code, redact(se.Message, d.opts.Token)), d.loginFix())
	default:
		d.fail(name, "SMTP AUTH: "+redact(err.Error(), d.opts.Token), d.loginFix())
	}
}

// redact removes the token from a server's message, should a server ever echo it.
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "[token]")
}
