package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvOverrides(t *testing.T) {
	t.Parallel()
	env := envMap(map[string]string{
		"POSTERN_OIDC_CLIENT_SECRET":              "from-env",
		"POSTERN_IMAP_HOST":                       "imap.internal",
		"POSTERN_SERVER_PUBLIC_URL":               "http://127.0.0.1:8080",
		"POSTERN_TOKENS_REFRESH_CONCURRENCY":      "8",
		"POSTERN_TOKENS_MAX_REFRESHES_PER_SECOND": "0.5",
		"POSTERN_OIDC_HTTP_TIMEOUT":               "30s",
		"POSTERN_OIDC_SCOPES":                     "openid, offline_access,email",
		"POSTERN_IMAP_POOL_MAX_PER_USER":          "2",
		"POSTERN_SMTP_TLS":                        "starttls",
	})
	c := mustParse(t, validYAML, env, "")
	checkFields(t, []field{
		{"client_secret", c.OIDC.ClientSecret, "from-env"},
		{"imap.host", c.IMAP.Host, "imap.internal"},
		{"public_url", c.Server.PublicURL, "http://127.0.0.1:8080"},
		{"refresh_concurrency", c.Tokens.RefreshConcurrency, 8},
		{"max_refreshes_per_second", c.Tokens.MaxRefreshesPerSecond, 0.5},
		{"http_timeout", c.OIDC.HTTPTimeout, 30 * time.Second},
		{"scopes", strings.Join(c.OIDC.Scopes, " "), "openid offline_access email"},
		{"pool.max_per_user", c.IMAP.Pool.MaxPerUser, 2},
		{"smtp.port follows env tls", c.SMTP.Port, 587},
		{"untouched", c.SMTP.Host, "mail.example.com"},
	})
}

func TestEnvParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, env, value string
		wantKeys         []string
	}{
		{"int", "POSTERN_TOKENS_REFRESH_CONCURRENCY", "four", []string{"POSTERN_TOKENS_REFRESH_CONCURRENCY"}},
		{"float", "POSTERN_TOKENS_MAX_REFRESHES_PER_SECOND", "fast", []string{"POSTERN_TOKENS_MAX_REFRESHES_PER_SECOND"}},
		{"duration", "POSTERN_SESSION_IDLE_TIMEOUT", "3600", []string{"POSTERN_SESSION_IDLE_TIMEOUT"}},
		{"port", "POSTERN_IMAP_PORT", "imaps", []string{"POSTERN_IMAP_PORT"}},
		{"parses but invalid", "POSTERN_IMAP_TLS", "ssl", []string{"imap.tls"}},
		{"scopes without offline_access", "POSTERN_OIDC_SCOPES", "openid,email", []string{"oidc.scopes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(validYAML), envMap(map[string]string{tc.env: tc.value}), "")
			if got := problemKeys(t, err); !slices.Equal(got, tc.wantKeys) {
				t.Errorf("problem keys = %q, want %q", got, tc.wantKeys)
			}
			if !strings.Contains(err.Error(), tc.value) && strings.HasPrefix(tc.wantKeys[0], "POSTERN_") {
				t.Errorf("error %q does not quote the bad value %q", err, tc.value)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"oidc.client_secret":          "POSTERN_OIDC_CLIENT_SECRET",
		"imap.pool.idle_timeout":      "POSTERN_IMAP_POOL_IDLE_TIMEOUT",
		"storage.encryption_key_file": "POSTERN_STORAGE_ENCRYPTION_KEY_FILE",
	}
	for key, want := range tests {
		t.Run(key, func(t *testing.T) {
			if got := EnvName(key); got != want {
				t.Errorf("EnvName(%q) = %q, want %q", key, got, want)
			}
		})
	}
}
