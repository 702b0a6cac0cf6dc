package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testcert"
)

// writePair writes a certificate for names (DNS names or IPs) and its key; it returns the two paths.
func writePair(t *testing.T, dir, prefix string, names ...string) (string, string) {
	t.Helper()
	_, cert, key := testcert.New(t, names...).Write(t, dir, prefix)
	return cert, key
}

// TestBridgeValidate sets bridge keys on a valid file and checks exactly which keys are reported, every problem at
// once; an empty want means the change is valid.
func TestBridgeValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writePair(t, dir, "", "imap.example.com")
	otherCert, otherKey := writePair(t, dir, "other-", "imap.example.com")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	on := map[string]string{
		"POSTERN_BRIDGE_HOST":               "imap.example.com",
		"POSTERN_BRIDGE_IMAPS_LISTEN":       ":993",
		"POSTERN_BRIDGE_SUBMISSIONS_LISTEN": ":465",
		"POSTERN_BRIDGE_CERT_FILE":          cert,
		"POSTERN_BRIDGE_KEY_FILE":           key,
	}
	with := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range on {
			out[k] = v
		}
		for k, v := range m {
			if v == "-" {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"off", nil, nil},
		{"on", on, nil},
		{"starttls only", with(map[string]string{"POSTERN_BRIDGE_IMAPS_LISTEN": "-", "POSTERN_BRIDGE_SUBMISSIONS_LISTEN": "-",
			"POSTERN_BRIDGE_IMAP_LISTEN": ":143", "POSTERN_BRIDGE_SUBMISSION_LISTEN": ":587"}), nil},
		{"all four", with(map[string]string{"POSTERN_BRIDGE_IMAP_LISTEN": ":143", "POSTERN_BRIDGE_SUBMISSION_LISTEN": ":587"}), nil},
		{"public ports", with(map[string]string{"POSTERN_BRIDGE_PUBLIC_IMAP_PORT": "993", "POSTERN_BRIDGE_PUBLIC_SMTP_PORT": "465"}), nil},
		{"no host", with(map[string]string{"POSTERN_BRIDGE_HOST": "-"}), []string{"bridge.host"}},
		{"host with port", with(map[string]string{"POSTERN_BRIDGE_HOST": "imap.example.com:993"}), []string{"bridge.host"}},
		{"no cert, no key", with(map[string]string{"POSTERN_BRIDGE_CERT_FILE": "-", "POSTERN_BRIDGE_KEY_FILE": "-"}), []string{"bridge.cert_file", "bridge.key_file"}},
		{"missing cert file", with(map[string]string{"POSTERN_BRIDGE_CERT_FILE": filepath.Join(dir, "nope.pem")}), []string{"bridge.cert_file"}},
		{"missing key file", with(map[string]string{"POSTERN_BRIDGE_KEY_FILE": filepath.Join(dir, "nope.pem")}), []string{"bridge.key_file"}},
		{"cert not pem", with(map[string]string{"POSTERN_BRIDGE_CERT_FILE": garbage}), []string{"bridge.cert_file"}},
		{"key not pem", with(map[string]string{"POSTERN_BRIDGE_KEY_FILE": garbage}), []string{"bridge.key_file"}},
		{"key of another cert", with(map[string]string{"POSTERN_BRIDGE_KEY_FILE": otherKey}), []string{"bridge.key_file"}},
		{"other pair is fine", with(map[string]string{"POSTERN_BRIDGE_CERT_FILE": otherCert, "POSTERN_BRIDGE_KEY_FILE": otherKey}), nil},
		{"cert for another host", with(map[string]string{"POSTERN_BRIDGE_HOST": "mail.example.org"}), []string{"bridge.cert_file"}},
		{"bad listen", with(map[string]string{"POSTERN_BRIDGE_IMAPS_LISTEN": "993"}), []string{"bridge.imaps_listen"}},
		{"same listen twice", with(map[string]string{"POSTERN_BRIDGE_SUBMISSIONS_LISTEN": ":993"}), []string{"bridge.submissions_listen"}},
		{"listen on the web port", with(map[string]string{"POSTERN_BRIDGE_IMAPS_LISTEN": "127.0.0.1:8080"}), []string{"bridge.imaps_listen"}},
		{"imap without smtp", with(map[string]string{"POSTERN_BRIDGE_SUBMISSIONS_LISTEN": "-"}), []string{"bridge.submissions_listen"}},
		{"smtp without imap", with(map[string]string{"POSTERN_BRIDGE_IMAPS_LISTEN": "-"}), []string{"bridge.imaps_listen"}},
		{"cert without listener", map[string]string{"POSTERN_BRIDGE_CERT_FILE": cert}, []string{"bridge.imaps_listen"}},
		{"public port too big", with(map[string]string{"POSTERN_BRIDGE_PUBLIC_IMAP_PORT": "70000"}), []string{"bridge.public_imap_port"}},
		{"no connections", map[string]string{"POSTERN_BRIDGE_MAX_CONNECTIONS": "-1"}, []string{"bridge.max_connections"}},
		{"per device above total", map[string]string{"POSTERN_BRIDGE_MAX_CONNECTIONS": "10"}, []string{"bridge.max_connections_per_device"}},
		{"no devices", map[string]string{"POSTERN_BRIDGE_MAX_DEVICES_PER_USER": "-3"}, []string{"bridge.max_devices_per_user"}},
		{"prelogin 0", map[string]string{"POSTERN_BRIDGE_PRELOGIN_TIMEOUT": "0s"}, []string{"bridge.prelogin_timeout"}},
		{"prelogin 1h", map[string]string{"POSTERN_BRIDGE_PRELOGIN_TIMEOUT": "1h"}, []string{"bridge.prelogin_timeout"}},
		{"failure delay negative", map[string]string{"POSTERN_BRIDGE_FAILURE_DELAY": "-1s"}, []string{"bridge.failure_delay"}},
		// Every problem at once, each with its key.
		{"everything wrong", with(map[string]string{"POSTERN_BRIDGE_HOST": "-", "POSTERN_BRIDGE_CERT_FILE": "-",
			"POSTERN_BRIDGE_KEY_FILE": garbage, "POSTERN_BRIDGE_SUBMISSIONS_LISTEN": "465", "POSTERN_BRIDGE_FAILURE_DELAY": "2m",
			"POSTERN_BRIDGE_MAX_DEVICES_PER_USER": "0"}),
			[]string{"bridge.cert_file", "bridge.failure_delay", "bridge.host", "bridge.max_devices_per_user", "bridge.submissions_listen"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(validYAML), envMap(tt.env), dir)
			var got []string
			if err != nil {
				got = problemKeys(t, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems at %v, want %v\n%v", got, tt.want, err)
			}
			if err != nil {
				for _, k := range tt.want {
					if !strings.Contains(err.Error(), k+": ") {
						t.Errorf("no message for %s in\n%v", k, err)
					}
				}
			}
		})
	}
}

func TestBridgeDefaultsAndPaths(t *testing.T) {
	t.Parallel()
	c := mustParse(t, validYAML+"bridge:\n  max_connections: 50\n", noEnv, "/etc/postern")
	b := c.Bridge
	if b.Enabled() || b.MaxConnections != 50 || b.MaxConnectionsPerDevice != 20 || b.MaxDevicesPerUser != 10 ||
		b.PreloginTimeout != time.Minute || b.FailureDelay != time.Second {
		t.Errorf("bridge = %+v", b)
	}
	// Relative certificate paths resolve against the file's directory (the check then fails to read them).
	_, err := Parse([]byte(validYAML+"bridge:\n  host: h\n  imaps_listen: :993\n  submissions_listen: :465\n  cert_file: c.pem\n  key_file: k.pem\n"), noEnv, "/nonexistent-dir")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent-dir/c.pem") {
		t.Errorf("relative cert_file not resolved against the config's directory: %v", err)
	}
}

func TestBridgePorts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		b                    BridgeConfig
		imaps, imap, ss, s   string
		imapPort, smtpPort   int
		imapStart, smtpStart bool
	}{
		{"implicit", BridgeConfig{}, "[::]:993", "", "[::]:465", "", 993, 465, false, false},
		{"implicit preferred", BridgeConfig{}, "[::]:993", "[::]:143", "[::]:465", "[::]:587", 993, 465, false, false},
		{"starttls only", BridgeConfig{}, "", "0.0.0.0:143", "", "0.0.0.0:587", 143, 587, true, true},
		{"behind NAT", BridgeConfig{PublicIMAPPort: 993, PublicSMTPPort: 465}, "0.0.0.0:10993", "", "0.0.0.0:10465", "", 993, 465, false, false},
	}
	for _, tt := range tests {
		ip, is, sp, ss := tt.b.BridgePorts(tt.imaps, tt.imap, tt.ss, tt.s)
		if ip != tt.imapPort || is != tt.imapStart || sp != tt.smtpPort || ss != tt.smtpStart {
			t.Errorf("%s: BridgePorts = %d %v %d %v, want %d %v %d %v", tt.name, ip, is, sp, ss, tt.imapPort, tt.imapStart, tt.smtpPort, tt.smtpStart)
		}
	}
}

func TestPlaceholders(t *testing.T) {
	t.Parallel()
	c, err := Load("../../config.example.yml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range c.Placeholders() {
		keys = append(keys, p.Key)
	}
	if want := []string{"session.secret", "oidc.client_secret", "storage.encryption_key"}; !slices.Equal(keys, want) {
		t.Errorf("placeholders in config.example.yml = %v, want %v", keys, want)
	}
	c = mustParse(t, validYAML, envMap(map[string]string{"POSTERN_OIDC_CLIENT_SECRET": "s3cr3t-from-authelia",
		"POSTERN_STORAGE_ENCRYPTION_KEY": hexKey}), "")
	if ps := c.Placeholders(); len(ps) != 0 {
		t.Errorf("placeholders of real secrets = %v, want none", ps)
	}
}
