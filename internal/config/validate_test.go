package config

import (
	"slices"
	"strings"
	"testing"
)

// TestValidate changes one key of a valid file and checks which keys are
// reported; an empty want means the change is valid.
func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"http public url on loopback", map[string]string{"POSTERN_SERVER_PUBLIC_URL": "http://localhost:8080"}, nil},
		{"trailing slash public url", map[string]string{"POSTERN_SERVER_PUBLIC_URL": "https://mail.example.com/"}, nil},
		{"http public url remote", map[string]string{"POSTERN_SERVER_PUBLIC_URL": "http://mail.example.com"}, []string{"server.public_url"}},
		{"public url with path", map[string]string{"POSTERN_SERVER_PUBLIC_URL": "https://example.com/mail"}, []string{"server.public_url"}},
		{"public url with query", map[string]string{"POSTERN_SERVER_PUBLIC_URL": "https://example.com?a=b"}, []string{"server.public_url"}},
		{"relative public url", map[string]string{"POSTERN_SERVER_PUBLIC_URL": "mail.example.com"}, []string{"server.public_url"}},
		{"issuer trailing slash", map[string]string{"POSTERN_OIDC_ISSUER": "https://auth.example.com/"}, []string{"oidc.issuer"}},
		{"issuer with path", map[string]string{"POSTERN_OIDC_ISSUER": "https://example.com/authelia"}, nil},
		{"http issuer on 127.5.5.5", map[string]string{"POSTERN_OIDC_ISSUER": "http://127.5.5.5:9091"}, nil},
		{"http issuer on ::1", map[string]string{"POSTERN_OIDC_ISSUER": "http://[::1]:9091"}, nil},
		{"http issuer remote", map[string]string{"POSTERN_OIDC_ISSUER": "http://auth.example.com"}, []string{"oidc.issuer"}},
		{"no openid", map[string]string{"POSTERN_OIDC_SCOPES": "offline_access"}, []string{"oidc.scopes"}},
		{"imap none on ::1", map[string]string{"POSTERN_IMAP_HOST": "::1", "POSTERN_IMAP_TLS": "none"}, nil},
		{"imap none remote", map[string]string{"POSTERN_IMAP_TLS": "none"}, []string{"imap.tls"}},
		{"imap host with port", map[string]string{"POSTERN_IMAP_HOST": "mail.example.com:993"}, []string{"imap.host"}},
		{"bad sasl", map[string]string{"POSTERN_SMTP_SASL": "plain"}, []string{"smtp.sasl"}},
		{"port 0 means default", map[string]string{"POSTERN_IMAP_PORT": "0"}, nil},
		{"port too big", map[string]string{"POSTERN_SMTP_PORT": "65536"}, []string{"smtp.port"}},
		{"pool idle at autologout", map[string]string{"POSTERN_IMAP_POOL_IDLE_TIMEOUT": "30m"}, []string{"imap.pool.idle_timeout"}},
		{"pool total below per user", map[string]string{"POSTERN_IMAP_POOL_MAX_TOTAL": "2"}, []string{"imap.pool.max_total"}},
		{"concurrency 65", map[string]string{"POSTERN_TOKENS_REFRESH_CONCURRENCY": "65"}, []string{"tokens.refresh_concurrency"}},
		{"negative duration", map[string]string{"POSTERN_TOKENS_REFRESH_BEFORE_EXPIRY": "-1m"}, []string{"tokens.refresh_before_expiry"}},
		{"idle above lifetime", map[string]string{"POSTERN_SESSION_IDLE_TIMEOUT": "48h", "POSTERN_SESSION_LIFETIME": "24h"}, []string{"session.lifetime"}},
		{"bad cookie name", map[string]string{"POSTERN_SESSION_COOKIE_NAME": "a;b"}, []string{"session.cookie_name"}},
		{"bad listen", map[string]string{"POSTERN_SERVER_LISTEN": "8080"}, []string{"server.listen"}},
		{"metrics same as listen", map[string]string{"POSTERN_SERVER_METRICS_LISTEN": "127.0.0.1:8080"}, []string{"server.metrics_listen"}},
		{"metrics ok", map[string]string{"POSTERN_SERVER_METRICS_LISTEN": "127.0.0.1:9090"}, nil},
		{"postgres without dsn", map[string]string{"POSTERN_STORAGE_DRIVER": "postgres"}, []string{"storage.dsn"}},
		{"postgres", map[string]string{"POSTERN_STORAGE_DRIVER": "postgres", "POSTERN_STORAGE_DSN": "postgres://postern@db:5432/postern"}, nil},
		{"postgres key=value", map[string]string{"POSTERN_STORAGE_DRIVER": "postgres", "POSTERN_STORAGE_DSN": "host=db dbname=postern"}, nil},
		{"postgres bad dsn", map[string]string{"POSTERN_STORAGE_DRIVER": "postgres", "POSTERN_STORAGE_DSN": "db:5432"}, []string{"storage.dsn"}},
		{"dsn with sqlite", map[string]string{"POSTERN_STORAGE_DSN": "postgres://db/postern"}, []string{"storage.dsn"}},
		{"unknown driver", map[string]string{"POSTERN_STORAGE_DRIVER": "mysql"}, []string{"storage.driver"}},
		{"log level", map[string]string{"POSTERN_LOG_LEVEL": "verbose"}, []string{"log.level"}},
		{"log format", map[string]string{"POSTERN_LOG_FORMAT": "xml"}, []string{"log.format"}},
		{"page size", map[string]string{"POSTERN_WEB_PAGE_SIZE": "1000"}, []string{"web.page_size"}},
		{"hex key", map[string]string{"POSTERN_STORAGE_ENCRYPTION_KEY": hexKey}, nil},
		{"token timeout below http timeout", map[string]string{"POSTERN_OIDC_TOKEN_TIMEOUT": "5s"}, []string{"oidc.token_timeout"}},
		{"token timeout zero", map[string]string{"POSTERN_OIDC_TOKEN_TIMEOUT": "0s"}, []string{"oidc.token_timeout"}},
		{"token timeout 10m", map[string]string{"POSTERN_OIDC_TOKEN_TIMEOUT": "10m"}, nil},
		{"token timeout 2h", map[string]string{"POSTERN_OIDC_TOKEN_TIMEOUT": "2h"}, []string{"oidc.token_timeout"}},
		{"audience", map[string]string{"POSTERN_OIDC_AUDIENCE": "stalwart,mail"}, nil},
		{"audience with space", map[string]string{"POSTERN_OIDC_AUDIENCE": "stal wart"}, []string{"oidc.audience"}},
		{"access token type JWT", map[string]string{"POSTERN_OIDC_ACCESS_TOKEN_TYPE": "JWT"}, nil},
		{"access token type with space", map[string]string{"POSTERN_OIDC_ACCESS_TOKEN_TYPE": "at jwt"}, []string{"oidc.access_token_type"}},
		{"introspection url on loopback", map[string]string{"POSTERN_OIDC_INTROSPECTION_URL": "http://127.0.0.1:4445/admin/oauth2/introspect"}, nil},
		{"introspection url https", map[string]string{"POSTERN_OIDC_INTROSPECTION_URL": "https://hydra-admin.internal/admin/oauth2/introspect"}, nil},
		{"introspection url http remote", map[string]string{"POSTERN_OIDC_INTROSPECTION_URL": "http://hydra:4445/admin/oauth2/introspect"}, []string{"oidc.introspection_url"}},
		{"introspection url relative", map[string]string{"POSTERN_OIDC_INTROSPECTION_URL": "/admin/oauth2/introspect"}, []string{"oidc.introspection_url"}},
		{"introspection url with query", map[string]string{"POSTERN_OIDC_INTROSPECTION_URL": "https://h.example/i?x=1"}, []string{"oidc.introspection_url"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(validYAML), envMap(tc.env), "")
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse = %v, want no error", err)
				}
				return
			}
			if got := problemKeys(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("problem keys = %q, want %q\n%v", got, tc.want, err)
			}
		})
	}
}

func TestDefaultNeedsOnlyRequiredKeys(t *testing.T) {
	t.Parallel()
	c := Default()
	err := c.Validate()
	for _, p := range err.(*Problems).List {
		if !strings.HasSuffix(p.Msg, "required") && !strings.HasPrefix(p.Msg, "required") {
			t.Errorf("Default().Validate() reports %s: %s, want only missing required keys", p.Key, p.Msg)
		}
	}
}

func TestProblemsError(t *testing.T) {
	t.Parallel()
	ps := &Problems{List: []Problem{{"imap.tls", "bad"}, {"oidc.scopes", "worse"}}}
	if got, want := ps.Error(), "imap.tls: bad\noidc.scopes: worse"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
