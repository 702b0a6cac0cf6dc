// Package config loads Postern's YAML configuration: one schema struct,
// defaults, POSTERN_* environment overrides, *_file secrets, and a validation
// pass that reports every problem at once with its YAML key path.
//
// The order is fixed: defaults, then the YAML file (decoded strictly: an
// unknown key is a problem), then the environment, then *_file secrets, then
// validation. See config.example.yml at the repository root for every key.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is the whole configuration. Field comments give the YAML key; the
// example file explains each one and what it must agree with in Authelia and
// Stalwart.
type Config struct {
	Server  ServerConfig  `yaml:"server"`
	Log     LogConfig     `yaml:"log"`
	OIDC    OIDCConfig    `yaml:"oidc"`
	Tokens  TokensConfig  `yaml:"tokens"`
	IMAP    IMAPConfig    `yaml:"imap"`
	SMTP    SMTPConfig    `yaml:"smtp"`
	Session SessionConfig `yaml:"session"`
	Storage StorageConfig `yaml:"storage"`
	Web     WebConfig     `yaml:"web"`
	Bridge  BridgeConfig  `yaml:"bridge"`
}

// ServerConfig is the HTTP listener and the URL users reach Postern at.
type ServerConfig struct {
	// PublicURL is the origin users type (https://mail.example.com); the
	// OIDC redirect URI is derived from it. Trailing "/" is removed on load.
	PublicURL string `yaml:"public_url"`
	// Listen is the host:port the web server binds.
	Listen string `yaml:"listen"`
	// MetricsListen is an optional separate host:port for metrics.
	MetricsListen string `yaml:"metrics_listen"`
	// TrustedProxies are the IP addresses or CIDR ranges of reverse proxies whose X-Forwarded-For header names the
	// client; empty trusts none, and the access log shows the connection's peer.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// LogConfig selects the slog level and handler.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// OIDCConfig is Postern's client registration at the identity provider.
type OIDCConfig struct {
	// Issuer must equal the provider's issuer byte for byte.
	Issuer string `yaml:"issuer"`
	// ClientID is the registered client_id.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the plaintext client secret (sent with client_secret_basic).
	ClientSecret string `yaml:"client_secret"`
	// ClientSecretFile names a file holding ClientSecret; made absolute on load.
	ClientSecretFile string `yaml:"client_secret_file"`
	// Scopes are requested at authorization; must include openid and offline_access.
	Scopes []string `yaml:"scopes"`
	// CAFile is an optional PEM bundle to trust for the provider's TLS; made absolute on load.
	CAFile string `yaml:"ca_file"`
	// HTTPTimeout bounds each request that is safe to abandon: discovery, userinfo, introspection, revocation.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// TokenTimeout bounds each token endpoint request (refresh, code exchange). It is long because a refresh
	// abandoned early may still commit at the provider, which then rotates the refresh token for nobody.
	TokenTimeout time.Duration `yaml:"token_timeout"`
	// IntrospectionURL overrides the discovery document's introspection_endpoint (RFC 7662); Ory Hydra serves it
	// only on its admin port and does not advertise it.
	IntrospectionURL string `yaml:"introspection_url"`
	// Audience is requested with the `audience` authorization parameter, so JWT access tokens carry it in aud
	// (Stalwart 0.16's requireAudience, default "stalwart"); the Authelia client's audience list must allow it.
	Audience []string `yaml:"audience"`
	// AccessTokenType is the JOSE typ that marks a JWT access token; "" means "at+jwt" (RFC 9068 §2.1). Ory Hydra
	// writes "JWT".
	AccessTokenType string `yaml:"access_token_type"`
}

// TokensConfig tunes the background token refresher.
type TokensConfig struct {
	// RefreshBeforeExpiry is how long before an access token expires it is refreshed.
	RefreshBeforeExpiry time.Duration `yaml:"refresh_before_expiry"`
	// RefreshTokenLifetime mirrors Authelia's lifespans.refresh_token (sliding).
	RefreshTokenLifetime time.Duration `yaml:"refresh_token_lifetime"`
	// RefreshConcurrency is the number of refresher workers (1..64).
	RefreshConcurrency int `yaml:"refresh_concurrency"`
	// MaxRefreshesPerSecond caps calls to the token endpoint.
	MaxRefreshesPerSecond float64 `yaml:"max_refreshes_per_second"`
}

// IMAPConfig is the IMAP server (Stalwart) and the connection pool.
type IMAPConfig struct {
	// Host is the server's DNS name or IP, without a port.
	Host string `yaml:"host"`
	// Port defaults by TLS mode: 993 for tls, 143 otherwise.
	Port int `yaml:"port"`
	// TLS is tls (implicit), starttls or none (loopback only).
	TLS string `yaml:"tls"`
	// CAFile is an optional PEM bundle to trust for the server; made absolute on load.
	CAFile string `yaml:"ca_file"`
	// SASL is oauthbearer or xoauth2.
	SASL string `yaml:"sasl"`
	// Pool limits pooled, authenticated IMAP connections.
	Pool PoolConfig `yaml:"pool"`
}

// PoolConfig limits the IMAP connection pool.
type PoolConfig struct {
	// MaxPerUser caps connections per signed-in user.
	MaxPerUser int `yaml:"max_per_user"`
	// MaxTotal caps connections across all users.
	MaxTotal int `yaml:"max_total"`
	// IdleTimeout closes an idle connection; below the 30 min IMAP autologout.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// SMTPConfig is the submission server (Stalwart).
type SMTPConfig struct {
	// Host is the server's DNS name or IP, without a port.
	Host string `yaml:"host"`
	// Port defaults by TLS mode: 465 for tls, 587 otherwise.
	Port int `yaml:"port"`
	// TLS is tls (implicit), starttls or none (loopback only).
	TLS string `yaml:"tls"`
	// CAFile is an optional PEM bundle to trust for the server; made absolute on load.
	CAFile string `yaml:"ca_file"`
	// SASL is oauthbearer or xoauth2.
	SASL string `yaml:"sasl"`
}

// SessionConfig is the browser session cookie.
type SessionConfig struct {
	// Secret signs the session cookie; at least 32 bytes.
	Secret string `yaml:"secret"`
	// SecretFile names a file holding Secret; made absolute on load.
	SecretFile string `yaml:"secret_file"`
	// CookieName is the cookie's name.
	CookieName string `yaml:"cookie_name"`
	// IdleTimeout ends a session after this long without a request.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Lifetime ends a session this long after sign-in, active or not.
	Lifetime time.Duration `yaml:"lifetime"`
	// BrowserSessionCookie makes the cookie end with the browser session (no Max-Age) instead of at Lifetime.
	BrowserSessionCookie bool `yaml:"browser_session_cookie"`
}

// StorageConfig is the database and the keys that seal tokens at rest.
type StorageConfig struct {
	// Driver is the database driver: sqlite (one instance, the default) or postgres (several instances).
	Driver string `yaml:"driver"`
	// Path is the SQLite file; made absolute on load. Only with driver sqlite.
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (postgres://… or key=value), a secret since it may hold a password.
	// Only with driver postgres.
	DSN string `yaml:"dsn"`
	// DSNFile names a file holding DSN; made absolute on load.
	DSNFile string `yaml:"dsn_file"`
	// EncryptionKey is 32 bytes as base64 or hex (see DecodeKey).
	EncryptionKey string `yaml:"encryption_key"`
	// EncryptionKeyFile names a file holding EncryptionKey; made absolute on load.
	EncryptionKeyFile string `yaml:"encryption_key_file"`
	// EncryptionKeyID is stored with each sealed value so keys can rotate.
	EncryptionKeyID string `yaml:"encryption_key_id"`
	// PreviousKeys still open values sealed under older keys.
	PreviousKeys []PreviousKey `yaml:"previous_keys"`
}

// PreviousKey is a retired encryption key kept to open old sealed values.
type PreviousKey struct {
	// ID is the key id the values were sealed with.
	ID string `yaml:"id"`
	// Key is 32 bytes as base64 or hex (see DecodeKey).
	Key string `yaml:"key"`
	// KeyFile names a file holding Key; made absolute on load.
	KeyFile string `yaml:"key_file"`
}

// WebConfig tunes the webmail pages.
type WebConfig struct {
	// PageSize is the number of messages per mailbox page.
	PageSize int `yaml:"page_size"`
	// MaxUploadMB caps a message being composed (text plus attachments), in MiB.
	MaxUploadMB int `yaml:"max_upload_mb"`
}

// BridgeConfig is the IMAP/SMTP bridge for mail clients (issue 11): listeners that take a device password and
// speak to the mail server with that device's own grant. Every listener empty (the default) disables it.
type BridgeConfig struct {
	// Host is the name mail clients connect to; it must be in the certificate. Required with any listener.
	Host string `yaml:"host"`
	// IMAPSListen is the host:port of IMAP with implicit TLS (993 style, RFC 8314 §3.3).
	IMAPSListen string `yaml:"imaps_listen"`
	// IMAPListen is the host:port of IMAP with STARTTLS (143 style); optional.
	IMAPListen string `yaml:"imap_listen"`
	// SubmissionsListen is the host:port of SMTP submission with implicit TLS (465 style, RFC 8314 §3.3).
	SubmissionsListen string `yaml:"submissions_listen"`
	// SubmissionListen is the host:port of SMTP submission with STARTTLS (587 style); optional.
	SubmissionListen string `yaml:"submission_listen"`
	// CertFile and KeyFile are the PEM certificate chain and private key the bridge presents; made absolute on
	// load, read again on SIGHUP.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// PublicIMAPPort and PublicSMTPPort are the ports mail clients type when they differ from the listeners'
	// (NAT or a port forward); 0 takes the listener's port.
	PublicIMAPPort int `yaml:"public_imap_port"`
	PublicSMTPPort int `yaml:"public_smtp_port"`
	// MaxConnections bounds the bridge's client connections in all.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerDevice bounds one device's connections.
	MaxConnectionsPerDevice int `yaml:"max_connections_per_device"`
	// MaxDevicesPerUser bounds the live (not revoked) devices of one user.
	MaxDevicesPerUser int `yaml:"max_devices_per_user"`
	// PreloginTimeout bounds the time from connecting to a successful login.
	PreloginTimeout time.Duration `yaml:"prelogin_timeout"`
	// FailureDelay is the base delay before answering a wrong password; it doubles with repeated failures.
	FailureDelay time.Duration `yaml:"failure_delay"`
}

// Enabled reports whether any bridge listener is configured.
func (b BridgeConfig) Enabled() bool {
	return b.IMAPSListen != "" || b.IMAPListen != "" || b.SubmissionsListen != "" || b.SubmissionListen != ""
}

// Problem is one configuration mistake. Key is the YAML key path
// (imap.tls, storage.previous_keys[1].id), or the environment variable
// when its value could not be parsed.
type Problem struct {
	Key string
	Msg string
}

// Problems lists every configuration mistake found; it is the error type
// returned by Load, Parse and Validate.
type Problems struct {
	List []Problem
}

// Error returns one "key: message" line per problem.
func (p *Problems) Error() string {
	lines := make([]string, len(p.List))
	for i, pr := range p.List {
		lines[i] = pr.Key + ": " + pr.Msg
	}
	return strings.Join(lines, "\n")
}

func (p *Problems) add(key, format string, args ...any) {
	p.List = append(p.List, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// err returns p as an error, or nil (not a typed nil) when there are none.
func (p *Problems) err() error {
	if len(p.List) == 0 {
		return nil
	}
	return p
}

// fileKey is the Problem key for a mistake that has no YAML key path, such
// as an unreadable or syntactically broken file.
const fileKey = "(file)"

// Load reads the YAML file at path and returns the validated configuration.
// getenv supplies POSTERN_* overrides (nil means no environment). Relative
// file paths in the configuration resolve against the file's directory. Any
// failure is a *Problems listing every mistake.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Problems{List: []Problem{{Key: fileKey, Msg: err.Error()}}}
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, &Problems{List: []Problem{{Key: fileKey, Msg: err.Error()}}}
	}
	return Parse(data, getenv, dir)
}

// Parse is Load on YAML held in memory. baseDir resolves relative file
// paths; empty leaves them relative to the working directory.
func Parse(data []byte, getenv func(string) string, baseDir string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	c := defaults()
	var ps Problems
	decodeYAML(data, &c, &ps)
	fromEnv := applyEnv(&c, getenv, &ps)
	c.resolvePaths(baseDir)
	c.readSecrets(fromEnv, &ps)
	c.resolvePorts()
	c.Server.PublicURL = strings.TrimSuffix(c.Server.PublicURL, "/")
	c.validate(&ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Default returns the configuration used for every key a file leaves out.
// Required keys (public URL, issuer, client, hosts, secrets) are empty.
func Default() Config {
	c := defaults()
	c.resolvePorts()
	return c
}

// defaults holds every default value. Ports are 0 here and follow the TLS
// mode in resolvePorts, because the mode may be set after the defaults.
func defaults() Config {
	return Config{
		Server: ServerConfig{Listen: "127.0.0.1:8080"},
		Log:    LogConfig{Level: "info", Format: "text"},
		OIDC: OIDCConfig{
			Scopes:       []string{"openid", "profile", "email", "offline_access"},
			HTTPTimeout:  15 * time.Second,
			TokenTimeout: 2 * time.Minute,
		},
		Tokens: TokensConfig{
			RefreshBeforeExpiry:   5 * time.Minute,
			RefreshTokenLifetime:  90 * time.Minute, // Authelia's default lifespans.refresh_token
			RefreshConcurrency:    4,
			MaxRefreshesPerSecond: 2,
		},
		IMAP: IMAPConfig{
			TLS:  "tls",
			SASL: "oauthbearer",
			Pool: PoolConfig{MaxPerUser: 4, MaxTotal: 200, IdleTimeout: 5 * time.Minute},
		},
		SMTP: SMTPConfig{TLS: "tls", SASL: "oauthbearer"},
		Session: SessionConfig{
			CookieName:  "postern_session",
			IdleTimeout: 24 * time.Hour,
			Lifetime:    30 * 24 * time.Hour,
		},
		Storage: StorageConfig{
			Driver:          "sqlite",
			Path:            "/var/lib/postern/postern.db",
			EncryptionKeyID: "1",
		},
		Web: WebConfig{PageSize: 50, MaxUploadMB: 25},
		Bridge: BridgeConfig{
			MaxConnections:          1000,
			MaxConnectionsPerDevice: 20,
			MaxDevicesPerUser:       10,
			PreloginTimeout:         time.Minute,
			FailureDelay:            time.Second,
		},
	}
}

// resolvePorts fills a zero port from the TLS mode: implicit TLS ports
// (IMAPS 993, submissions 465, RFC 8314) or the plain/STARTTLS ones (143, 587).
func (c *Config) resolvePorts() {
	if c.IMAP.Port == 0 {
		c.IMAP.Port = 143
		if c.IMAP.TLS == "tls" {
			c.IMAP.Port = 993
		}
	}
	if c.SMTP.Port == 0 {
		c.SMTP.Port = 587
		if c.SMTP.TLS == "tls" {
			c.SMTP.Port = 465
		}
	}
}

// resolvePaths makes every relative file path absolute against baseDir.
func (c *Config) resolvePaths(baseDir string) {
	if baseDir == "" {
		return
	}
	paths := []*string{
		&c.OIDC.ClientSecretFile, &c.OIDC.CAFile, &c.IMAP.CAFile, &c.SMTP.CAFile,
		&c.Session.SecretFile, &c.Storage.EncryptionKeyFile, &c.Storage.DSNFile,
		&c.Bridge.CertFile, &c.Bridge.KeyFile,
	}
	// SQLite's ":memory:" and "file:" URIs are not file paths.
	if !strings.HasPrefix(c.Storage.Path, ":") && !strings.HasPrefix(c.Storage.Path, "file:") {
		paths = append(paths, &c.Storage.Path)
	}
	for i := range c.Storage.PreviousKeys {
		paths = append(paths, &c.Storage.PreviousKeys[i].KeyFile)
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(baseDir, *p)
		}
	}
}
