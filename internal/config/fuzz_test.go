package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary YAML to the strict decoder and the validation pass (no *_file secret or CA file is read:
// those touch the file system) and checks that they never panic and that every problem names a key and says something.
// Seeds: config.example.yml and testdata/fuzz/FuzzDecode. Run: go test -fuzz=FuzzDecode ./internal/config/
func FuzzDecode(f *testing.F) {
	if b, err := os.ReadFile("../../config.example.yml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("server: {public_url: https://mail.example.com, trusted_proxies: [10.0.0.0/8, '::1', junk]}\n"))
	f.Add([]byte("session: {idle_timeout: 1h, lifetime: 1m, cookie_name: '__Host-x;y', browser_session_cookie: maybe}\n"))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("imap:\n  pool:\n    max_total: 9999999999999999999999\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := defaults()
		var ps Problems
		decodeYAML(data, &c, &ps)
		// Keep the target hermetic: a fuzzed ca_file could name /dev/zero or a pipe.
		c.OIDC.CAFile, c.IMAP.CAFile, c.SMTP.CAFile = "", "", ""
		c.validate(&ps)
		for _, p := range ps.List {
			if p.Key == "" || strings.TrimSpace(p.Msg) == "" {
				t.Fatalf("problem without key or message: %+v", p)
			}
		}
	})
}
