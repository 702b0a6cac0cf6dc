package doctor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/mail"
)

// mailEndpoint is the IMAP or SMTP block of the configuration, as the checks need it.
type mailEndpoint struct {
	proto           string // "imap" or "smtp"
	host            string
	port            int
	tls, ca, sasl   string
	implicit, plain int
}

func (d *run) imapEndpoint() mailEndpoint {
	c := d.cfg.IMAP
	return mailEndpoint{proto: "imap", host: c.Host, port: c.Port, tls: c.TLS, ca: c.CAFile, sasl: c.SASL, implicit: 993, plain: 143}
}

func (d *run) smtpEndpoint() mailEndpoint {
	c := d.cfg.SMTP
	return mailEndpoint{proto: "smtp", host: c.Host, port: c.Port, tls: c.TLS, ca: c.CAFile, sasl: c.SASL, implicit: 465, plain: 587}
}

func (e mailEndpoint) addr() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

func (e mailEndpoint) keys() endpointKeys {
	return endpointKeys{host: e.proto + ".host", port: e.proto + ".port", tls: e.proto + ".tls", ca: e.proto + ".ca_file",
		what: "Stalwart", implicitPort: e.implicit, plainPort: e.plain}
}

// mech is the SASL mechanism name on the wire.
func (e mailEndpoint) mech() string { return strings.ToUpper(e.sasl) }

// tlsConfig is the TLS configuration Postern uses for e; the handshake's state is recorded in *seen once the
// certificate has been verified, for the detail of a passing result.
func (e mailEndpoint) tlsConfig(seen **tls.ConnectionState) (*tls.Config, error) {
	c, err := config.ClientTLS(e.ca, e.host)
	if err != nil {
		return nil, err
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		*seen = &cs
		return nil
	}
	return c, nil
}

// mail checks that IMAP and SMTP submission are reachable, that TLS verifies against the configured CA with the
// configured host name, and that the configured SASL mechanism is offered.
func (d *run) mail(ctx context.Context) {
	d.checkIMAP(ctx)
	d.checkSMTP(ctx)
}

// dial connects and, for implicit TLS, completes the handshake. It returns a detail and fix on failure.
func (d *run) dial(ctx context.Context, e mailEndpoint, seen **tls.ConnectionState) (net.Conn, string, string) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", e.addr())
	if err != nil {
		detail, fix := explainConnErr(err, e.keys(), e.host)
		return nil, e.addr() + ": " + detail, fix
	}
	// One deadline for the whole exchange: the doctor must not hang on a server that never answers.
	_ = conn.SetDeadline(time.Now().Add(d.opts.Timeout))
	if e.tls != "tls" {
		return conn, "", ""
	}
	tc, err := e.tlsConfig(seen)
	if err != nil {
		conn.Close()
		return nil, e.proto + ".ca_file: " + err.Error(), "Point " + e.proto + ".ca_file at a readable PEM file."
	}
	c := tls.Client(conn, tc)
	if err := c.HandshakeContext(ctx); err != nil {
		conn.Close()
		detail, fix := explainConnErr(err, e.keys(), e.host)
		return nil, e.addr() + ": " + detail, fix
	}
	return c, "", ""
}

// tlsNote describes the TLS of a connection for a passing result.
func tlsNote(mode string, cs *tls.ConnectionState) string {
	switch {
	case mode == "none":
		return "no TLS (loopback)"
	case cs == nil || len(cs.PeerCertificates) == 0:
		return mode
	}
	leaf := cs.PeerCertificates[0]
	kind := "implicit TLS"
	if mode == "starttls" {
		kind = "STARTTLS"
	}
	return fmt.Sprintf("%s, certificate for %s valid until %s", kind, strings.Join(certNames(leaf), ", "), leaf.NotAfter.Format("2006-01-02"))
}

// checkIMAP probes the IMAP server with mail.Probe, the probe /readyz uses too, and explains a failure by its step.
func (d *run) checkIMAP(ctx context.Context) {
	const name = "imap"
	e := d.imapEndpoint()
	tc, err := config.ClientTLS(e.ca, e.host)
	if err != nil {
		d.fail(name, "imap.ca_file: "+err.Error(), "Point imap.ca_file at a readable PEM file.")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	res, err := mail.Probe(ctx, mail.Server{Host: e.host, Port: e.port, TLS: mail.TLSMode(e.tls), TLSConfig: tc,
		DialTimeout: d.opts.Timeout, CommandTimeout: d.opts.Timeout})
	var pe *mail.ProbeError
	switch {
	case err == nil:
	case errors.As(err, &pe):
		detail, fix := explainConnErr(pe.Err, e.keys(), e.host)
		switch pe.Step {
		case "dial", "tls":
			d.fail(name, e.addr()+": "+detail, fix)
		case "starttls":
			if strings.Contains(pe.Err.Error(), "STARTTLS") && !strings.Contains(detail, "TLS certificate") {
				fix = "The server does not offer STARTTLS here: set imap.tls: tls with port 993, or enable STARTTLS on this listener."
			}
			d.fail(name, e.addr()+": STARTTLS: "+detail, fix)
		case "greeting":
			d.fail(name, e.addr()+": no IMAP greeting: "+detail, fix)
		default:
			d.fail(name, e.addr()+": CAPABILITY got no answer", "Check that "+e.addr()+" is Stalwart's IMAP listener.")
		}
		return
	default:
		d.fail(name, e.addr()+": "+err.Error(), "Check imap.tls (tls, starttls or none).")
		return
	}
	d.checkMechanism(name, e, res.Mechanisms, tlsNote(e.tls, res.TLS))
}

func (d *run) checkSMTP(ctx context.Context) {
	const name = "smtp"
	e := d.smtpEndpoint()
	var cs *tls.ConnectionState
	conn, detail, fix := d.dial(ctx, e, &cs)
	if conn == nil {
		d.fail(name, detail, fix)
		return
	}
	var c *smtp.Client
	if e.tls == "starttls" {
		tc, err := e.tlsConfig(&cs)
		if err != nil {
			conn.Close()
			d.fail(name, "smtp.ca_file: "+err.Error(), "Point smtp.ca_file at a readable PEM file.")
			return
		}
		c, err = smtp.NewClientStartTLS(conn, tc)
		if err != nil {
			detail, fix := explainConnErr(err, e.keys(), e.host)
			if strings.Contains(err.Error(), "STARTTLS") {
				fix = "The server does not offer STARTTLS here: set smtp.tls: tls with port 465, or enable STARTTLS on this listener."
			}
			d.fail(name, e.addr()+": STARTTLS: "+detail, fix)
			return
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	// Hello runs the (post-STARTTLS) EHLO, where a TLS handshake error after STARTTLS surfaces.
	if err := c.Hello("localhost"); err != nil {
		detail, fix := explainConnErr(err, e.keys(), e.host)
		step := "EHLO"
		if e.tls == "starttls" {
			step = "STARTTLS"
		}
		d.fail(name, e.addr()+": "+step+": "+detail, fix)
		return
	}
	var mechs []string
	if ok, params := c.Extension("AUTH"); ok {
		for _, m := range strings.Fields(params) {
			mechs = append(mechs, strings.ToUpper(m))
		}
	}
	slices.Sort(mechs)
	d.checkMechanism(name, e, mechs, tlsNote(e.tls, cs))
	_ = c.Quit()
}

// checkMechanism reports whether the configured SASL mechanism is offered. Offering it is not enough for Stalwart
// to accept a token (its directory must be the oidc one), but not offering it means no login can work, and a
// refused AUTHENTICATE would look like a bad token.
func (d *run) checkMechanism(name string, e mailEndpoint, mechs []string, tlsDetail string) {
	offered := "no AUTH mechanisms"
	if len(mechs) > 0 {
		offered = "AUTH " + strings.Join(mechs, " ")
	}
	if slices.Contains(mechs, e.mech()) {
		d.pass(name, "%s: %s; offers %s", e.addr(), tlsDetail, offered)
		return
	}
	detail := fmt.Sprintf("%s: %s; offers %s, not %s (%s.sasl)", e.addr(), tlsDetail, offered, e.mech(), e.proto)
	if e.mech() == "XOAUTH2" && slices.Contains(mechs, "OAUTHBEARER") {
		d.fail(name, detail+". Stalwart 0.11 has no XOAUTH2 (0.12 added it)",
			fmt.Sprintf("In Postern's config:\n  %s:\n    sasl: oauthbearer\nOAUTHBEARER (RFC 7628) works with every Stalwart version; "+
				"XOAUTH2 is accepted only from 0.12 on, and 0.11 rejects it with its OIDC directory.", e.proto))
		return
	}
	var fix string
	if e.proto == "imap" {
		fix = "Stalwart offers AUTH=OAUTHBEARER on IMAP when it authenticates against its oidc directory. In config.toml " +
			"(0.11–0.15):\n" + indent(stalwartDirectory(d.cfg.OIDC.Issuer), 2) + "\n" +
			"and make it the directory IMAP uses (storage.directory = \"authelia\"). In 0.16 create the OIDC directory " +
			"(issuerUrl = \"" + strings.TrimRight(d.cfg.OIDC.Issuer, "/") + "\", claimUsername = \"preferred_username\") and make it the default. " +
			"If the list above looks like another server's, imap.host/imap.port do not reach Stalwart (a mail proxy in between?)."
	} else {
		fix = "Stalwart's submission listener must offer OAUTHBEARER. In config.toml:\n" +
			"  [session.auth]\n" +
			"  mechanisms = [ { if = \"local_port != 25 && is_tls\", then = \"[plain, login, oauthbearer]\" },\n" +
			"                 { if = \"local_port != 25\", then = \"[oauthbearer]\" },\n" +
			"                 { else = false } ]\n" +
			"  directory = [ { if = \"local_port != 25\", then = \"'authelia'\" }, { else = false } ]\n" +
			"(these are Stalwart's defaults with the directory named; a custom session.auth.mechanisms may have dropped it)."
	}
	if len(mechs) == 0 && e.tls == "none" {
		fix += "\nSome servers offer AUTH only after TLS: use " + e.proto + ".tls: starttls or tls."
	}
	d.fail(name, detail, fix)
}

// stalwartDirectory is the 0.11–0.15 oidc directory block for issuer.
func stalwartDirectory(issuer string) string {
	return fmt.Sprintf(`[directory."authelia"]
type = "oidc"
timeout = "15s"
endpoint.url = "%s/api/oidc/userinfo"
endpoint.method = "userinfo"
fields.email = "email"
fields.username = "preferred_username"
fields.full-name = "name"`, strings.TrimRight(issuer, "/"))
}
