//go:build !nodemo

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/devstack"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/web"
)

// demoUser is a user of the demo identity provider; the passwords are printed at start-up and are only good on
// 127.0.0.1.
type demoUser struct{ username, password, email, name string }

var demoUsers = []demoUser{
	{"alice", "alice-password", "alice@example.test", "Alice Liddell"},
	{"bob", "bob-password", "bob@example.test", "Bob Marley"},
}

// startDevstack starts the dev IdP and mail server on 127.0.0.1 with the demo users and their seeded mailboxes,
// registering a client whose redirect URI is Postern's callback at publicURL. Access tokens are opaque, Authelia's
// default.
func startDevstack(publicURL string, logger *slog.Logger) (*devstack.Stack, error) {
	return startDevstackMode(publicURL, logger, false)
}

// jwtAccessLifetime is the access-token lifetime of the demo in JWT mode, the one docs/deploy.md recommends: a
// revoked JWT stays valid at the mail server until it expires.
const jwtAccessLifetime = 5 * time.Minute

// startDevstackMode is startDevstack with JWT access tokens if jwt is set: the IdP issues RFC 9068 tokens with
// aud "stalwart" and the mail server validates them offline like Stalwart 0.16.
func startDevstackMode(publicURL string, logger *slog.Logger, jwt bool) (*devstack.Stack, error) {
	pu, err := url.Parse(publicURL)
	if err != nil {
		return nil, err
	}
	var users []idp.User
	for _, u := range demoUsers {
		users = append(users, idp.User{Username: u.username, Password: u.password, Email: u.email, Name: u.name})
	}
	// Consent is asked at a user's first sign-in only: the demo is signed into again and again.
	opts := devstack.Options{RedirectURIs: []string{web.RedirectURL(pu)}, Users: users, Logger: logger, JWT: jwt, Outbound: true,
		RememberConsent: true}
	if jwt {
		opts.AccessTokenLifespan = jwtAccessLifetime
	}
	return devstack.Start(opts)
}

// demoConfig is the configuration a self-hoster would write for these peers, built from the same defaults and
// validated by the same rules as a file.
func demoConfig(d *devstack.Stack, publicURL, dataDir string) (*config.Config, error) {
	cfg := config.Default()
	cfg.Server.PublicURL = publicURL
	cfg.OIDC.Issuer = d.IdP.Issuer()
	cfg.OIDC.ClientID = devstack.ClientID
	cfg.OIDC.ClientSecret = d.ClientSecret
	if d.JWT {
		// Stalwart 0.16 requires its requireAudience in a JWT's aud; refresh 1 min before the 5 min lifetime ends.
		cfg.OIDC.Audience = []string{devstack.Audience}
		cfg.Tokens.RefreshBeforeExpiry = time.Minute
	}
	imapHost, imapPort := splitAddr(d.IMAP)
	smtpHost, smtpPort := splitAddr(d.SMTP)
	cfg.IMAP.Host, cfg.IMAP.Port, cfg.IMAP.TLS = imapHost, imapPort, "none"
	cfg.SMTP.Host, cfg.SMTP.Port, cfg.SMTP.TLS = smtpHost, smtpPort, "none"
	cfg.Session.Secret = randomString(48)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg.Storage.EncryptionKey = base64.StdEncoding.EncodeToString(key)
	cfg.Storage.Path = filepath.Join(dataDir, "postern.db")
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address for Postern (loopback only)")
	dataDir := fs.String("data", "", "directory for the demo's working files (database, bridge certificate); nothing in it is "+
		"usable by a later run, whose identity provider, keys and mail are new (default: a temporary directory, removed at exit)")
	bridgeMode := fs.String("bridge", "fixed", "the IMAP/SMTP bridge for mail clients: fixed (127.0.0.1 ports 1993, 1143, 1465, 1587), "+
		"free (ports the system picks) or off")
	verbose := fs.Bool("v", false, "log every request")
	jwt := fs.Bool("jwt", false, "issue JWT access tokens (RFC 9068) that the mail server validates offline, like Stalwart 0.16")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !isLoopbackHost(host) {
		return fmt.Errorf("demo: -listen must be a loopback address such as 127.0.0.1:8080, got %q", *listen)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("demo: %w (is another demo running? try -listen 127.0.0.1:0)", err)
	}
	publicURL := "http://" + ln.Addr().String()
	if *dataDir == "" {
		dir, err := os.MkdirTemp("", "postern-demo-")
		if err != nil {
			ln.Close()
			return err
		}
		defer os.RemoveAll(dir)
		*dataDir = dir
	}
	d, err := startDevstackMode(publicURL, logger, *jwt)
	if err != nil {
		ln.Close()
		return err
	}
	defer d.Close()
	cfg, err := demoConfig(d, publicURL, *dataDir)
	if err == nil {
		err = demoBridge(cfg, *dataDir, *bridgeMode)
	}
	if err != nil {
		ln.Close()
		return err
	}
	err = listenAndServe(ctx, ln, cfg, logger, &http.Client{}, devstack.OutboundNote, func(a *app) error {
		fmt.Fprintf(stdout, "Postern demo is running at %s\n\n", publicURL)
		fmt.Fprintf(stdout, "Sign in as one of these users of the demo identity provider (%s):\n", d.IdP.Issuer())
		for _, u := range demoUsers {
			fmt.Fprintf(stdout, "  user %-6s password %s\n", u.username, u.password)
		}
		fmt.Fprintf(stdout, "\nDemo mail server: IMAP %s, SMTP submission %s.\n", d.IMAP, d.SMTP)
		fmt.Fprintln(stdout, tokenModeLine(d.JWT))
		if a.bridge != nil {
			if err := printBridge(ctx, stdout, a); err != nil {
				return err
			}
		}
		fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
		return nil
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (is another demo running? try -bridge free, or -bridge off)", err)
	}
	return err
}

// tokenModeLine says which access tokens the demo runs with and what a mail login costs the IdP in that mode.
func tokenModeLine(jwt bool) string {
	if jwt {
		return fmt.Sprintf("Access tokens: JWT (RFC 9068, aud %q, %s), validated offline like Stalwart 0.16: "+
			"a mail login costs the IdP nothing; a revoked token works until it expires.", devstack.Audience, jwtAccessLifetime)
	}
	return "Access tokens: opaque (Authelia's default): every mail login costs the IdP one userinfo call. " +
		"Run with -jwt for JWT access tokens (Stalwart 0.16)."
}

func splitAddr(a net.Addr) (string, int) {
	host, port, _ := net.SplitHostPort(a.String())
	p, _ := strconv.Atoi(port)
	return host, p
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
