package config

import (
	"crypto/x509"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// imapAutologout is the inactivity timer of RFC 9051 §5.4: a server may log
// out a client idle for 30 minutes, so pooled connections must close sooner.
const imapAutologout = 30 * time.Minute

// Validate checks c and returns a *Problems listing every mistake, or nil.
// It does not read *_file secrets: Load and Parse do that first.
func (c *Config) Validate() error {
	var ps Problems
	c.validate(&ps)
	return ps.err()
}

func (c *Config) validate(ps *Problems) {
	// server
	checkPublicURL(ps, "server.public_url", c.Server.PublicURL)
	checkListen(ps, "server.listen", c.Server.Listen)
	if c.Server.MetricsListen != "" {
		checkListen(ps, "server.metrics_listen", c.Server.MetricsListen)
		if c.Server.MetricsListen == c.Server.Listen {
			ps.add("server.metrics_listen", "must differ from server.listen")
		}
	}

	for i, p := range c.Server.TrustedProxies {
		if _, err := ParseTrustedProxy(p); err != nil {
			ps.add("server.trusted_proxies", "entry %d: %q is neither an IP address nor a CIDR range (10.0.0.0/8)", i, p)
		}
	}

	// log
	oneOf(ps, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(ps, "log.format", c.Log.Format, "text", "json")

	// oidc
	checkIssuer(ps, "oidc.issuer", c.OIDC.Issuer)
	required(ps, "oidc.client_id", c.OIDC.ClientID)
	requiredSecret(ps, "oidc.client_secret", c.OIDC.ClientSecret, c.OIDC.ClientSecretFile)
	checkScopes(ps, "oidc.scopes", c.OIDC.Scopes)
	checkCAFile(ps, "oidc.ca_file", c.OIDC.CAFile)
	okHTTP := positive(ps, "oidc.http_timeout", c.OIDC.HTTPTimeout)
	switch tt := c.OIDC.TokenTimeout; {
	case !positive(ps, "oidc.token_timeout", tt):
	case okHTTP && tt < c.OIDC.HTTPTimeout:
		ps.add("oidc.token_timeout", "must be >= oidc.http_timeout (%s): a refresh abandoned early may still "+
			"rotate the refresh token at the IdP, got %s", c.OIDC.HTTPTimeout, tt)
	case tt > time.Hour:
		ps.add("oidc.token_timeout", "must be at most 1h (a refresh holds its grant's lease that long), got %s", tt)
	}
	if c.OIDC.IntrospectionURL != "" {
		if u, ok := checkHTTPURL(ps, "oidc.introspection_url", c.OIDC.IntrospectionURL); ok && (u.RawQuery != "" || u.ForceQuery) {
			ps.add("oidc.introspection_url", "must not contain a query")
		}
	}

	for _, a := range c.OIDC.Audience {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			// The audience parameter is space-separated: a value with a space would become two audiences.
			ps.add("oidc.audience", "entries must be non-empty and contain no whitespace, got %q", a)
		}
	}
	if strings.ContainsAny(c.OIDC.AccessTokenType, " \t\r\n") {
		ps.add("oidc.access_token_type", "must be a JOSE typ such as at+jwt, got %q", c.OIDC.AccessTokenType)
	}

	// tokens
	positive(ps, "tokens.refresh_before_expiry", c.Tokens.RefreshBeforeExpiry)
	positive(ps, "tokens.refresh_token_lifetime", c.Tokens.RefreshTokenLifetime)
	if n := c.Tokens.RefreshConcurrency; n < 1 || n > 64 {
		ps.add("tokens.refresh_concurrency", "must be between 1 and 64, got %d", n)
	}
	if r := c.Tokens.MaxRefreshesPerSecond; !(r > 0) || r > 1e6 {
		ps.add("tokens.max_refreshes_per_second", "must be > 0 (each refresh costs the IdP CPU time), got %v", r)
	}

	// imap, smtp
	checkMailServer(ps, "imap", c.IMAP.Host, c.IMAP.Port, c.IMAP.TLS, c.IMAP.CAFile, c.IMAP.SASL)
	if p := c.IMAP.Pool; p.MaxPerUser < 1 {
		ps.add("imap.pool.max_per_user", "must be at least 1, got %d", p.MaxPerUser)
	} else if p.MaxTotal < p.MaxPerUser {
		ps.add("imap.pool.max_total", "must be at least imap.pool.max_per_user (%d), got %d", p.MaxPerUser, p.MaxTotal)
	}
	if d := c.IMAP.Pool.IdleTimeout; d <= 0 || d >= imapAutologout {
		ps.add("imap.pool.idle_timeout", "must be > 0 and < 30m (the IMAP autologout timer, RFC 9051 §5.4), got %s", d)
	}
	checkMailServer(ps, "smtp", c.SMTP.Host, c.SMTP.Port, c.SMTP.TLS, c.SMTP.CAFile, c.SMTP.SASL)

	// session
	if requiredSecret(ps, "session.secret", c.Session.Secret, c.Session.SecretFile) && len(c.Session.Secret) < 32 {
		ps.add("session.secret", "must be at least 32 bytes, got %d (generate one with: openssl rand -base64 48)", len(c.Session.Secret))
	}
	if !validCookieName(c.Session.CookieName) {
		ps.add("session.cookie_name", "must be a non-empty cookie token (letters, digits, - _ .), got %q", c.Session.CookieName)
	}
	okIdle := positive(ps, "session.idle_timeout", c.Session.IdleTimeout)
	okLife := positive(ps, "session.lifetime", c.Session.Lifetime)
	if okIdle && okLife && c.Session.IdleTimeout > c.Session.Lifetime {
		ps.add("session.lifetime", "must be >= session.idle_timeout (%s), got %s", c.Session.IdleTimeout, c.Session.Lifetime)
	}

	// storage
	c.validateStorage(ps)

	// web
	if n := c.Web.MaxUploadMB; n < 1 || n > 1024 {
		ps.add("web.max_upload_mb", "must be between 1 and 1024 (MiB), got %d; keep it at or below Stalwart's message size limit", n)
	}
	if n := c.Web.PageSize; n < 1 || n > 500 {
		ps.add("web.page_size", "must be between 1 and 500, got %d", n)
	}

	// bridge
	c.validateBridge(ps)
}

func (c *Config) validateStorage(ps *Problems) {
	s := c.Storage
	switch s.Driver {
	case "sqlite":
		required(ps, "storage.path", s.Path)
		if s.DSN != "" || s.DSNFile != "" {
			ps.add("storage.dsn", "is for driver postgres; with sqlite set storage.path")
		}
	case "postgres":
		if requiredSecret(ps, "storage.dsn", s.DSN, s.DSNFile) {
			checkDSN(ps, s.DSN)
		}
	default:
		ps.add("storage.driver", "must be sqlite or postgres, got %q", s.Driver)
	}
	checkKey(ps, "storage.encryption_key", s.EncryptionKey, s.EncryptionKeyFile)
	required(ps, "storage.encryption_key_id", s.EncryptionKeyID)
	seen := map[string]bool{}
	for i, pk := range s.PreviousKeys {
		key := "storage.previous_keys[" + strconv.Itoa(i) + "]"
		switch {
		case pk.ID == "":
			ps.add(key+".id", "required")
		case pk.ID == s.EncryptionKeyID:
			ps.add(key+".id", "%q is the current storage.encryption_key_id; give each key its own id", pk.ID)
		case seen[pk.ID]:
			ps.add(key+".id", "duplicate id %q", pk.ID)
		}
		seen[pk.ID] = true
		checkKey(ps, key+".key", pk.Key, pk.KeyFile)
	}
}

// checkDSN reports a PostgreSQL DSN that cannot work, without quoting it: it may hold a password.
func checkDSN(ps *Problems, dsn string) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") && !strings.Contains(dsn, "=") {
		ps.add("storage.dsn", "must be a postgres:// URL or key=value pairs (host=… dbname=…)")
		return
	}
	if _, err := url.Parse(dsn); strings.Contains(dsn, "://") && err != nil {
		ps.add("storage.dsn", "is not a valid URL (special characters in the password must be percent-encoded)")
	}
}

func required(ps *Problems, key, v string) bool {
	if strings.TrimSpace(v) == "" {
		ps.add(key, "required")
		return false
	}
	return true
}

// requiredSecret reports a missing secret. A set but unreadable file was
// already reported on its _file key, so it is not reported again here.
// It returns whether the value is there to check further.
func requiredSecret(ps *Problems, key, v, file string) bool {
	if v != "" {
		return true
	}
	if file == "" {
		ps.add(key, "required (set %s or %s_file)", key, key)
	}
	return false
}

func checkKey(ps *Problems, key, v, file string) {
	if !requiredSecret(ps, key, v, file) {
		return
	}
	if _, err := DecodeKey(v); err != nil {
		ps.add(key, "%s (generate one with: openssl rand -base64 32)", strings.TrimPrefix(err.Error(), "config: "))
	}
}

func positive(ps *Problems, key string, d time.Duration) bool {
	if d <= 0 {
		ps.add(key, "must be a positive duration, got %s", d)
		return false
	}
	return true
}

func oneOf(ps *Problems, key, v string, allowed ...string) bool {
	if !slices.Contains(allowed, v) {
		ps.add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
		return false
	}
	return true
}

// isLoopback reports whether host (no port, IPv6 without brackets) is
// localhost or a loopback address: 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkHTTPURL checks an absolute http(s) URL with a host, no user info and
// no fragment; plain http is allowed only for loopback hosts, as OAuth 2.0
// requires TLS for redirect URIs and endpoints (RFC 6749 §3.1.2.1, §10.9).
func checkHTTPURL(ps *Problems, key, raw string) (*url.URL, bool) {
	if !required(ps, key, raw) {
		return nil, false
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		ps.add(key, "not a valid URL: %v", err)
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		ps.add(key, "must be an absolute https:// URL, got %q", raw)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		ps.add(key, "must use https (plain http is allowed only for localhost and loopback addresses), got %q", raw)
	case u.User != nil:
		ps.add(key, "must not contain user info")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		ps.add(key, "must not contain a fragment")
	default:
		return u, true
	}
	return nil, false
}

func checkPublicURL(ps *Problems, key, raw string) {
	u, ok := checkHTTPURL(ps, key, raw)
	if !ok {
		return
	}
	if u.RawQuery != "" || u.ForceQuery {
		ps.add(key, "must not contain a query")
	} else if u.Path != "" && u.Path != "/" {
		ps.add(key, "must be an origin without a path (Postern is served at the root), got path %q", u.Path)
	}
}

// checkIssuer: OIDC Discovery §4.3 and Core §3.1.3.7 compare the issuer
// exactly, so a trailing slash Authelia does not send fails every login.
func checkIssuer(ps *Problems, key, raw string) {
	u, ok := checkHTTPURL(ps, key, raw)
	if !ok {
		return
	}
	switch {
	case u.RawQuery != "" || u.ForceQuery:
		ps.add(key, "must not contain a query")
	case strings.HasSuffix(raw, "/"):
		ps.add(key, "must equal Authelia's issuer byte for byte, which has no trailing slash: use %q",
			strings.TrimRight(raw, "/"))
	}
}

func checkScopes(ps *Problems, key string, scopes []string) {
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			ps.add(key, "%q is not a valid scope (RFC 6749 §3.3)", s)
		}
	}
	if !slices.Contains(scopes, "openid") {
		ps.add(key, "must contain openid (OIDC Core §3.1.2.1)")
	}
	if !slices.Contains(scopes, "offline_access") {
		ps.add(key, "must contain offline_access: Authelia only issues refresh tokens with it, and Postern "+
			"needs them to keep mail working after the 1 h access token expires")
	}
}

func checkCAFile(ps *Problems, key, path string) {
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		ps.add(key, "cannot read: %v", unwrapPath(err))
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		ps.add(key, "%s holds no PEM certificates", path)
	}
}

func checkListen(ps *Problems, key, addr string) {
	if !required(ps, key, addr) {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		ps.add(key, "must be host:port, such as 127.0.0.1:8080 or :8080, got %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		ps.add(key, "port must be a number from 0 to 65535, got %q", port)
	}
}

// checkMailServer checks an IMAP or SMTP server block under prefix.
func checkMailServer(ps *Problems, prefix, host string, port int, tlsMode, caFile, sasl string) {
	if required(ps, prefix+".host", host) {
		if strings.ContainsAny(host, "/ ") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
			ps.add(prefix+".host", "must be a host name or IP address only (put the port in %s.port), got %q", prefix, host)
		}
	}
	if port < 1 || port > 65535 {
		ps.add(prefix+".port", "must be between 1 and 65535, got %d", port)
	}
	if oneOf(ps, prefix+".tls", tlsMode, "tls", "starttls", "none") && tlsMode == "none" && host != "" && !isLoopback(host) {
		ps.add(prefix+".tls", "none sends the bearer token in clear text; it is allowed only for localhost and loopback addresses, not %q", host)
	}
	if tlsMode == "none" && caFile != "" {
		ps.add(prefix+".ca_file", "has no effect with %s.tls: none", prefix)
	}
	checkCAFile(ps, prefix+".ca_file", caFile)
	oneOf(ps, prefix+".sasl", sasl, "oauthbearer", "xoauth2")
}

// validCookieName reports whether name is an RFC 6265 §4.1.1 cookie-name
// limited to a conservative character set.
func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}

// ParseTrustedProxy parses one server.trusted_proxies entry: an IP address or a CIDR range.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
