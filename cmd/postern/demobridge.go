//go:build !nodemo

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"time"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/devices"
	"github.com/postern/postern/internal/devstack/idp"
)

// demoBridgePorts are the demo's fixed bridge ports: the standard ones plus 1000, so that no root is needed and a
// mail client's settings are easy to guess (993 → 1993).
var demoBridgePorts = map[string]string{"imaps": "1993", "imap": "1143", "submissions": "1465", "submission": "1587"}

// demoBridge enables the bridge in cfg on 127.0.0.1 with a self-signed certificate for 127.0.0.1 and localhost
// written to dir. mode is the -bridge flag: fixed (demoBridgePorts), free (ports the system picks) or off.
func demoBridge(cfg *config.Config, dir, mode string) error {
	port := func(name string) string {
		if mode == "free" {
			return "127.0.0.1:0"
		}
		return "127.0.0.1:" + demoBridgePorts[name]
	}
	switch mode {
	case "off":
		return nil
	case "fixed", "free":
	default:
		return fmt.Errorf("demo: -bridge must be fixed, free or off, got %q", mode)
	}
	certFile, keyFile := filepath.Join(dir, "bridge-cert.pem"), filepath.Join(dir, "bridge-key.pem")
	if err := writeSelfSigned(certFile, keyFile); err != nil {
		return fmt.Errorf("demo: bridge certificate: %w", err)
	}
	cfg.Bridge.Host = "127.0.0.1"
	cfg.Bridge.CertFile, cfg.Bridge.KeyFile = certFile, keyFile
	cfg.Bridge.IMAPSListen, cfg.Bridge.IMAPListen = port("imaps"), port("imap")
	cfg.Bridge.SubmissionsListen, cfg.Bridge.SubmissionListen = port("submissions"), port("submission")
	return cfg.Validate()
}

// writeSelfSigned writes a P-256 certificate for 127.0.0.1, ::1 and localhost, valid for a week, and its key.
func writeSelfSigned(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Postern demo bridge", Organization: []string{"Postern demo"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		// Self-signed: it is its own issuer, so a client may trust the file itself (curl --cacert, Go RootCAs).
		IsCA: true, BasicConstraintsValid: true,
	}
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// connectDemoDevice connects a device for a demo user the way the Devices page does, without a browser: its own
// authorization flow at the demo IdP (BeginDevice: prompt=consent, offline_access), driven by idp.SignIn as the
// tests drive it, the code exchanged by the Provider, the grant stored by the keeper as a device grant (kept alive
// by the refresher like any other), and a device created on it. It returns the device password.
func connectDemoDevice(ctx context.Context, a *app, u demoUser) (string, error) {
	flow, authURL := a.auth.BeginDevice("/devices")
	jar, _ := cookiejar.New(nil)
	cb, err := idp.SignIn(ctx, &http.Client{Jar: jar, Timeout: 10 * time.Second}, authURL, u.username, u.password, true)
	if err != nil {
		return "", fmt.Errorf("sign in %s at the demo IdP: %w", u.username, err)
	}
	login, err := a.auth.Finish(ctx, flow, cb.Query())
	if err != nil {
		return "", err
	}
	if !login.Offline() {
		return "", errors.New("the demo IdP granted no refresh token")
	}
	gid, err := a.keeper.StartDevice(ctx, login)
	if err != nil {
		return "", err
	}
	o := devices.Owner{Issuer: login.Identity.Issuer, Subject: login.Identity.Subject, Address: login.Identity.Email}
	_, pw, err := a.devices.Create(ctx, o, "Demo mail app", gid)
	return pw, err
}

// printBridge connects a device for each demo user and prints the bridge's addresses and the device passwords.
func printBridge(ctx context.Context, w io.Writer, a *app) error {
	bl := a.bridgeLn
	fmt.Fprintf(w, "\nbridge: IMAP %s (TLS), SMTP %s (TLS)\n", addrOf(bl.imaps), addrOf(bl.submissions))
	fmt.Fprintf(w, "bridge: IMAP %s (STARTTLS), SMTP %s (STARTTLS)\n", addrOf(bl.imap), addrOf(bl.submission))
	fmt.Fprintf(w, "bridge: self-signed certificate %s (accept it in the mail client, or trust this file)\n", a.cfg.Bridge.CertFile)
	for _, u := range demoUsers {
		pw, err := connectDemoDevice(ctx, a, u)
		if err != nil {
			return fmt.Errorf("demo: device for %s: %w", u.email, err)
		}
		fmt.Fprintf(w, "bridge: %s  device password %s\n", u.email, pw)
	}
	fmt.Fprintln(w, "Mail clients sign in with the address as username and the device password; more devices on the Devices page.")
	return nil
}
