package config

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strconv"
	"strings"
	"time"
)

// validateBridge checks the bridge block. Limits and timeouts are checked even with the bridge off, so that a
// mistake does not wait for the day the bridge is turned on; host, certificate and key are required only with a
// listener.
func (c *Config) validateBridge(ps *Problems) {
	b := c.Bridge
	listeners := []struct{ key, addr string }{
		{"bridge.imaps_listen", b.IMAPSListen},
		{"bridge.imap_listen", b.IMAPListen},
		{"bridge.submissions_listen", b.SubmissionsListen},
		{"bridge.submission_listen", b.SubmissionListen},
	}
	seen := map[string]string{}
	for _, l := range listeners {
		if l.addr == "" {
			continue
		}
		checkListen(ps, l.key, l.addr)
		if strings.HasSuffix(l.addr, ":0") {
			continue // a port the system picks (tests, the demo) collides with nothing
		}
		if other, dup := seen[l.addr]; dup {
			ps.add(l.key, "must differ from %s (%s)", other, l.addr)
		}
		seen[l.addr] = l.key
		if l.addr == c.Server.Listen || (c.Server.MetricsListen != "" && l.addr == c.Server.MetricsListen) {
			ps.add(l.key, "must differ from the web server's listeners (server.listen, server.metrics_listen)")
		}
	}
	if b.Enabled() {
		hostOK := required(ps, "bridge.host", b.Host)
		if hostOK && strings.ContainsAny(b.Host, "/ :") && net.ParseIP(b.Host) == nil {
			ps.add("bridge.host", "must be a host name or IP address only (the ports come from the listeners), got %q", b.Host)
			hostOK = false
		}
		c.checkBridgeCert(ps, hostOK)
		if b.IMAPSListen == "" && b.IMAPListen == "" {
			ps.add("bridge.imaps_listen", "required when bridge.submissions_listen or bridge.submission_listen is set: "+
				"mail clients need IMAP to read mail (set bridge.imaps_listen, e.g. :993)")
		}
		if b.SubmissionsListen == "" && b.SubmissionListen == "" {
			ps.add("bridge.submissions_listen", "required when an IMAP listener is set: mail clients need "+
				"submission to send (set bridge.submissions_listen, e.g. :465)")
		}
	} else if b.CertFile != "" || b.KeyFile != "" {
		ps.add("bridge.imaps_listen", "bridge.cert_file is set but no bridge listener is: set bridge.imaps_listen "+
			"and bridge.submissions_listen to enable the bridge, or remove the bridge block")
	}
	for _, p := range []struct {
		key string
		n   int
	}{{"bridge.public_imap_port", b.PublicIMAPPort}, {"bridge.public_smtp_port", b.PublicSMTPPort}} {
		if p.n < 0 || p.n > 65535 {
			ps.add(p.key, "must be between 1 and 65535, or 0 for the listener's port, got %d", p.n)
		}
	}
	if b.MaxConnections < 1 {
		ps.add("bridge.max_connections", "must be at least 1, got %d", b.MaxConnections)
	}
	if b.MaxConnectionsPerDevice < 1 {
		ps.add("bridge.max_connections_per_device", "must be at least 1, got %d", b.MaxConnectionsPerDevice)
	} else if b.MaxConnections >= 1 && b.MaxConnectionsPerDevice > b.MaxConnections {
		ps.add("bridge.max_connections_per_device", "must be at most bridge.max_connections (%d), got %d", b.MaxConnections, b.MaxConnectionsPerDevice)
	}
	if n := b.MaxDevicesPerUser; n < 1 || n > 1000 {
		ps.add("bridge.max_devices_per_user", "must be between 1 and 1000, got %d", n)
	}
	if d := b.PreloginTimeout; d < time.Second || d > 10*time.Minute {
		ps.add("bridge.prelogin_timeout", "must be between 1s and 10m (it bounds what an unauthenticated client may hold), got %s", d)
	}
	if d := b.FailureDelay; d <= 0 || d > time.Minute {
		ps.add("bridge.failure_delay", "must be > 0 and at most 1m (it doubles per failure up to 32×), got %s", d)
	}
}

// checkBridgeCert reads the certificate and key as the bridge will, so that `postern config check` catches a
// missing file, a key that does not match the certificate, or a certificate that does not name bridge.host.
func (c *Config) checkBridgeCert(ps *Problems, hostOK bool) {
	b := c.Bridge
	okCert := required(ps, "bridge.cert_file", b.CertFile)
	okKey := required(ps, "bridge.key_file", b.KeyFile)
	if !okCert || !okKey {
		return
	}
	pair, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
	if err != nil {
		// tls names the key in its messages about the key ("key input", "private key"); a read error names the file.
		key := "bridge.cert_file"
		if msg := err.Error(); strings.Contains(msg, b.KeyFile) || strings.Contains(msg, "key input") || strings.Contains(msg, "private key") {
			key = "bridge.key_file"
		}
		ps.add(key, "%s", strings.TrimPrefix(unwrapPath(err).Error(), "tls: "))
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		ps.add("bridge.cert_file", "cannot parse the certificate: %v", err)
		return
	}
	if hostOK {
		if err := leaf.VerifyHostname(b.Host); err != nil {
			ps.add("bridge.cert_file", "does not name bridge.host %q (mail clients would refuse it): %v", b.Host, err)
		}
	}
}

// BridgePorts returns the ports mail clients type for IMAP and SMTP, and whether each is STARTTLS: the public
// override if set, else the implicit-TLS listener's port, else the STARTTLS listener's. imapAddr and smtpAddr are
// the listeners' bound addresses ("" for none), so that a :0 listener reports the port it got.
func (b BridgeConfig) BridgePorts(imapsAddr, imapAddr, submissionsAddr, submissionAddr string) (imapPort int, imapStartTLS bool, smtpPort int, smtpStartTLS bool) {
	imapPort, imapStartTLS = pick(imapsAddr, imapAddr)
	smtpPort, smtpStartTLS = pick(submissionsAddr, submissionAddr)
	if b.PublicIMAPPort != 0 {
		imapPort = b.PublicIMAPPort
	}
	if b.PublicSMTPPort != 0 {
		smtpPort = b.PublicSMTPPort
	}
	return
}

// pick prefers the implicit-TLS address (RFC 8314 §3: the better choice for clients) over the STARTTLS one.
func pick(implicit, starttls string) (int, bool) {
	if p := portOf(implicit); p != 0 {
		return p, false
	}
	return portOf(starttls), starttls != ""
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
