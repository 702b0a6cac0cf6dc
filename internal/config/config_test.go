package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// validYAML is a minimal valid file: every required key and nothing else.
const validYAML = `
server:
  public_url: https://mail.example.com
oidc:
  issuer: https://auth.example.com
  client_id: postern
  client_secret: insecure_secret
imap:
  host: mail.example.com
smtp:
  host: mail.example.com
session:
  secret: 0123456789abcdef0123456789abcdef
storage:
  encryption_key: Q0hBTkdFLU1FLUNIQU5HRS1NRS1DSEFOR0UtTUUtMzI=
`

func noEnv(string) string { return "" }

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// problemKeys returns the sorted keys of err, which must be a *Problems.
func problemKeys(t *testing.T, err error) []string {
	t.Helper()
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error = %v (%T), want *Problems", err, err)
	}
	var keys []string
	for _, p := range ps.List {
		keys = append(keys, p.Key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func mustParse(t *testing.T, yml string, getenv func(string) string, dir string) *Config {
	t.Helper()
	c, err := Parse([]byte(yml), getenv, dir)
	if err != nil {
		t.Fatalf("Parse = %v, want no error", err)
	}
	return c
}

func TestExampleFileLoads(t *testing.T) {
	t.Parallel()
	c, err := Load("../../config.example.yml", noEnv)
	if err != nil {
		t.Fatalf("Load(config.example.yml) = %v", err)
	}
	if c.OIDC.Issuer != "https://auth.example.com" || c.OIDC.ClientID != "postern" {
		t.Errorf("issuer, client_id = %q, %q", c.OIDC.Issuer, c.OIDC.ClientID)
	}
	keys, cur, err := c.SealKeys()
	if err != nil || cur != "1" || len(keys["1"]) != KeyLen {
		t.Errorf("SealKeys() = %v, %q, %v", keys, cur, err)
	}
}

// The example documents every key: each key name appears in it, set or in
// a comment.
func TestExampleFileHasEveryKey(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../config.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keyPaths(reflect.TypeFor[Config](), "") {
		leaf := key[strings.LastIndex(key, ".")+1:]
		re := regexp.MustCompile(`(?m)^[\s#-]*` + regexp.QuoteMeta(leaf) + `:`)
		if !re.Match(data) {
			t.Errorf("config.example.yml does not mention %s", key)
		}
	}
}

// keyPaths lists every YAML key path of struct type t.
func keyPaths(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		key := join(prefix, tagName(f))
		keys = append(keys, key)
		switch {
		case f.Type.Kind() == reflect.Struct:
			keys = append(keys, keyPaths(f.Type, key)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			keys = append(keys, keyPaths(f.Type.Elem(), key+"[]")...)
		}
	}
	return keys
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := mustParse(t, validYAML, noEnv, "")
	want := Default()
	checkFields(t, []field{
		{"listen", c.Server.Listen, "127.0.0.1:8080"},
		{"log.level", c.Log.Level, "info"},
		{"scopes", strings.Join(c.OIDC.Scopes, ","), "openid,profile,email,offline_access"},
		{"http_timeout", c.OIDC.HTTPTimeout, 15 * time.Second},
		{"token_timeout", c.OIDC.TokenTimeout, 2 * time.Minute},
		{"introspection_url", c.OIDC.IntrospectionURL, ""},
		{"refresh_token_lifetime", c.Tokens.RefreshTokenLifetime, 90 * time.Minute},
		{"imap.port", c.IMAP.Port, 993},
		{"smtp.port", c.SMTP.Port, 465},
		{"pool", c.IMAP.Pool, want.IMAP.Pool},
		{"session.lifetime", c.Session.Lifetime, 720 * time.Hour},
		{"storage.path", c.Storage.Path, "/var/lib/postern/postern.db"},
		{"key id", c.Storage.EncryptionKeyID, "1"},
		{"page_size", c.Web.PageSize, 50},
		{"max_upload_mb", c.Web.MaxUploadMB, 25},
	})
}

func TestPortsByTLSMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		extra              string
		imapPort, smtpPort int
	}{
		{"tls", "", 993, 465},
		{"starttls", "imap: {host: mail.example.com, tls: starttls}\nsmtp: {host: mail.example.com, tls: starttls}\n", 143, 587},
		{"none on loopback", "imap: {host: 127.0.0.1, tls: none}\nsmtp: {host: localhost, tls: none}\n", 143, 587},
		{"explicit", "imap: {host: mail.example.com, port: 1993}\nsmtp: {host: mail.example.com, tls: starttls, port: 2525}\n", 1993, 2525},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yml := strings.ReplaceAll(strings.ReplaceAll(validYAML, "imap:\n  host: mail.example.com\n", ""),
				"smtp:\n  host: mail.example.com\n", "")
			if tc.extra == "" {
				yml = validYAML
			}
			c := mustParse(t, yml+tc.extra, noEnv, "")
			if c.IMAP.Port != tc.imapPort || c.SMTP.Port != tc.smtpPort {
				t.Errorf("ports = %d, %d, want %d, %d", c.IMAP.Port, c.SMTP.Port, tc.imapPort, tc.smtpPort)
			}
		})
	}
}

func TestBrokenFileListsEveryProblem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := `
server:
  public_url: "ht!tp://mail example.com"
  listn: 127.0.0.1:8080
oidc:
  issuer: https://auth.example.com/
  client_id: postern
  client_secret: insecure_secret
  client_secret_file: secret
  scopes: [openid, email]
  token_timout: 2m
imap:
  host: mail.example.com
  tls: ssl
smtp:
  host: mail.example.com
  tls: none
session:
  secret: short
storage:
  encryption_key: dG9vIHNob3J0
tokens:
  refresh_concurrency: lots
`
	_, err := Parse([]byte(yml), noEnv, dir)
	got := problemKeys(t, err)
	want := []string{
		"imap.tls",                   // bad enum
		"oidc.client_secret",         // value and _file
		"oidc.issuer",                // trailing slash
		"oidc.scopes",                // no offline_access
		"oidc.token_timout",          // unknown key
		"server.listn",               // unknown key
		"server.public_url",          // bad URL
		"session.secret",             // short
		"smtp.tls",                   // none on a remote host
		"storage.encryption_key",     // 10 bytes
		"tokens.refresh_concurrency", // not an integer
	}
	if !slices.Equal(got, want) {
		t.Errorf("problem keys =\n%q\nwant\n%q\nerror:\n%v", got, want, err)
	}
	msg := err.Error()
	for _, s := range []string{"server.listn: line 4: unknown key; did you mean server.listen?", "offline_access",
		"oidc.token_timout: line 11: unknown key; did you mean oidc.token_timeout?"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error does not contain %q:\n%s", s, msg)
		}
	}
}

func TestMissingRequired(t *testing.T) {
	t.Parallel()
	_, err := Parse(nil, noEnv, "")
	want := []string{
		"imap.host", "oidc.client_id", "oidc.client_secret", "oidc.issuer", "server.public_url",
		"session.secret", "smtp.host", "storage.encryption_key",
	}
	if got := problemKeys(t, err); !slices.Equal(got, want) {
		t.Errorf("problem keys = %q, want %q", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "nope.yml"), noEnv)
	if got := problemKeys(t, err); !slices.Equal(got, []string{fileKey}) {
		t.Errorf("problem keys = %q", got)
	}
}

// field is one configuration value and what it should be.
type field struct {
	name      string
	got, want any
}

// checkFields reports each field whose value is not the one wanted, as a subtest named after it.
func checkFields(t *testing.T, fields []field) {
	t.Helper()
	for _, f := range fields {
		t.Run(f.name, func(t *testing.T) {
			if f.got != f.want {
				t.Errorf("got %v, want %v", f.got, f.want)
			}
		})
	}
}
