package doctor

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// endpointKeys name the configuration keys an explanation points at: where the host is set, which key holds the CA
// bundle, which the TLS mode (empty for the IdP), and who the peer is.
type endpointKeys struct {
	host, port, tls, ca string
	what                string
	// implicitPort and plainPort are the peer's usual ports with implicit TLS and with STARTTLS.
	implicitPort, plainPort int
}

// explainConnErr turns a connection or TLS error into one line saying what happened and the fix, naming the keys
// to change. host is the name Postern connected to.
func explainConnErr(err error, k endpointKeys, host string) (detail, fix string) {
	var (
		hostErr x509.HostnameError
		caErr   x509.UnknownAuthorityError
		invErr  x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		dnsErr  *net.DNSError
		netErr  net.Error
	)
	switch {
	case errors.As(err, &hostErr):
		names := certNames(hostErr.Certificate)
		detail = fmt.Sprintf("TLS certificate name mismatch: %s's certificate is valid for %s, not %s",
			k.what, strings.Join(names, ", "), hostErr.Host)
		first := "one of its names"
		if len(names) > 0 {
			first = names[0]
		}
		fix = fmt.Sprintf("Set %s to a name on the certificate (%s), which must resolve to %s from where Postern runs; "+
			"or give %s a certificate that includes %s.", k.host, first, k.what, k.what, host)
	case errors.As(err, &caErr):
		issuer := "an unknown issuer"
		if caErr.Cert != nil {
			issuer = fmt.Sprintf("%q", caErr.Cert.Issuer.String())
		}
		detail = fmt.Sprintf("TLS certificate signed by an authority Postern does not trust (%s)", issuer)
		fix = fmt.Sprintf("Set %s to a PEM file with the CA certificate that signed %s's certificate (a private CA, or the "+
			"certificate itself if it is self-signed); or use a publicly trusted certificate.", k.ca, k.what)
	case errors.As(err, &invErr):
		detail = "invalid TLS certificate: " + invErr.Error()
		fix = fmt.Sprintf("Renew %s's certificate (or fix the clock of the machine Postern runs on).", k.what)
	case errors.As(err, &recErr):
		detail = "the server did not answer with TLS"
		if k.tls != "" {
			fix = fmt.Sprintf("This port speaks plain text: set %s: starttls for port %d, or set %s to %s's implicit-TLS port (%d).",
				k.tls, k.plainPort, k.port, k.what, k.implicitPort)
		} else {
			fix = "Use http:// only for a loopback issuer; otherwise point oidc.issuer at the https URL of the reverse proxy."
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		detail = "connection refused"
		fix = fmt.Sprintf("Nothing listens there: check %s%s and that %s runs and publishes that port to Postern.",
			k.host, portKey(k), k.what)
	case errors.As(err, &dnsErr):
		detail = fmt.Sprintf("cannot resolve %q", dnsErr.Name)
		fix = fmt.Sprintf("Check %s; Postern must be able to resolve it (DNS, or extra_hosts in compose).", k.host)
	case errors.As(err, &netErr) && netErr.Timeout():
		detail = "timed out"
		fix = fmt.Sprintf("A firewall drops the connection, or %s waits for something else", k.what)
		if k.tls != "" {
			fix += fmt.Sprintf(" (a starttls client on an implicit-TLS port waits for a greeting that never comes: set %s: tls for port %d)",
				k.tls, k.implicitPort)
		}
		fix += "."
	default:
		detail = err.Error()
		fix = fmt.Sprintf("Check %s%s and that %s is reachable from Postern.", k.host, portKey(k), k.what)
	}
	return detail, fix
}

func portKey(k endpointKeys) string {
	if k.port == "" {
		return ""
	}
	return " and " + k.port
}

// certNames lists the DNS names and IP addresses a certificate is valid for.
func certNames(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName+" (common name only, which Go ignores)")
	}
	return names
}
