package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// withSecretFiles replaces the inline secrets of validYAML with _file keys.
func withSecretFiles(client, session, key string) string {
	y := strings.Replace(validYAML, "client_secret: insecure_secret", "client_secret_file: "+client, 1)
	y = strings.Replace(y, "secret: 0123456789abcdef0123456789abcdef", "secret_file: "+session, 1)
	return strings.Replace(y, "encryption_key: Q0hBTkdFLU1FLUNIQU5HRS1NRS1DSEFOR0UtTUUtMzI=", "encryption_key_file: "+key, 1)
}

const hexKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

func TestSecretFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "secrets", "client"), "s3cret\n")
	writeFile(t, filepath.Join(dir, "session"), strings.Repeat("x", 40)+"\r\n")
	abs := filepath.Join(t.TempDir(), "key")
	writeFile(t, abs, hexKey+"\n")
	cfg := filepath.Join(dir, "postern.yml")
	// storage is the last block of validYAML, so its keys can be appended.
	writeFile(t, cfg, withSecretFiles("secrets/client", "session", abs)+"  path: data/postern.db\n")

	c, err := Load(cfg, noEnv)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	if c.OIDC.ClientSecret != "s3cret" {
		t.Errorf("client secret = %q, want s3cret (relative path, newline trimmed)", c.OIDC.ClientSecret)
	}
	if c.Session.Secret != strings.Repeat("x", 40) {
		t.Errorf("session secret = %q, want 40 x (CRLF trimmed)", c.Session.Secret)
	}
	if want := filepath.Join(dir, "secrets", "client"); c.OIDC.ClientSecretFile != want {
		t.Errorf("client_secret_file = %q, want %q", c.OIDC.ClientSecretFile, want)
	}
	if want := filepath.Join(dir, "data", "postern.db"); c.Storage.Path != want {
		t.Errorf("storage.path = %q, want %q", c.Storage.Path, want)
	}
	keys, _, err := c.SealKeys()
	if err != nil || keys["1"][31] != 0x1f {
		t.Errorf("SealKeys() = %x, %v", keys["1"], err)
	}
}

func TestSecretFileProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "client"), "s3cret\n")
	writeFile(t, filepath.Join(dir, "empty"), "\n")
	writeFile(t, filepath.Join(dir, "key"), hexKey)
	writeFile(t, filepath.Join(dir, "session"), strings.Repeat("x", 32))
	tests := []struct {
		name     string
		yml      string
		env      map[string]string
		wantKeys []string
	}{
		{"missing file", withSecretFiles("client", "nope", "key"), nil, []string{"session.secret_file"}},
		{"empty file", withSecretFiles("empty", "session", "key"), nil, []string{"oidc.client_secret_file"}},
		{"both in yaml", strings.Replace(validYAML, "client_id:", "client_secret_file: client\n  client_id:", 1), nil,
			[]string{"oidc.client_secret"}},
		{"both in env", validYAML, map[string]string{
			"POSTERN_OIDC_CLIENT_SECRET": "a", "POSTERN_OIDC_CLIENT_SECRET_FILE": "client",
		}, []string{"oidc.client_secret"}},
		{"env file replaces yaml value", validYAML, map[string]string{"POSTERN_OIDC_CLIENT_SECRET_FILE": "client"}, nil},
		{"env value replaces yaml file", withSecretFiles("nope", "session", "key"),
			map[string]string{"POSTERN_OIDC_CLIENT_SECRET": "a"}, nil},
		{"previous key file", validYAML + "  previous_keys:\n    - {id: \"0\", key_file: key}\n    - {id: \"x\", key_file: nope}\n",
			nil, []string{"storage.previous_keys[1].key_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yml), envMap(tc.env), dir)
			if tc.wantKeys == nil {
				if err != nil {
					t.Fatalf("Parse = %v, want no error", err)
				}
				return
			}
			if got := problemKeys(t, err); !slices.Equal(got, tc.wantKeys) {
				t.Errorf("problem keys = %q, want %q\n%v", got, tc.wantKeys, err)
			}
		})
	}
}

func TestPreviousKeys(t *testing.T) {
	t.Parallel()
	key := "  previous_keys:\n    - {id: %q, key: " + hexKey + "}\n"
	tests := []struct {
		name     string
		ids      []string
		wantKeys []string
	}{
		{"ok", []string{"0", "old"}, nil},
		{"same as current", []string{"1"}, []string{"storage.previous_keys[0].id"}},
		{"duplicate", []string{"0", "0"}, []string{"storage.previous_keys[1].id"}},
		{"empty id", []string{""}, []string{"storage.previous_keys[0].id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yml := validYAML + "  previous_keys:\n"
			for _, id := range tc.ids {
				yml += strings.TrimPrefix(strings.Replace(key, "%q", `"`+id+`"`, 1), "  previous_keys:\n")
			}
			c, err := Parse([]byte(yml), noEnv, "")
			if tc.wantKeys == nil {
				if err != nil {
					t.Fatalf("Parse = %v", err)
				}
				keys, cur, _ := c.SealKeys()
				if len(keys) != 1+len(tc.ids) || cur != "1" {
					t.Errorf("SealKeys() = %d keys, current %q", len(keys), cur)
				}
				return
			}
			if got := problemKeys(t, err); !slices.Equal(got, tc.wantKeys) {
				t.Errorf("problem keys = %q, want %q", got, tc.wantKeys)
			}
		})
	}
}

func TestDecodeKey(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0xfb}, 32) // 0xfb makes std and url base64 differ
	tests := []struct {
		name, text string
		ok         bool
	}{
		{"std padded", "+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/s=", true},
		{"std raw", "+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/v7+/s", true},
		{"url padded", "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s=", true},
		{"url raw with newline", "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s\n", true},
		{"hex", strings.Repeat("fb", 32), true},
		{"hex upper", strings.Repeat("FB", 32), true},
		{"short", "dG9vIHNob3J0", false},
		{"hex 31 bytes", strings.Repeat("fb", 31), false},
		{"garbage", "not a key!", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeKey(tc.text)
			if !tc.ok {
				if err == nil {
					t.Fatalf("DecodeKey(%q) = %x, want error", tc.text, got)
				}
				if tc.text != "" && strings.Contains(err.Error(), tc.text) {
					t.Errorf("error %q echoes the key", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, raw) {
				t.Errorf("DecodeKey(%q) = %x, %v, want %x", tc.text, got, err, raw)
			}
		})
	}
}

func TestCAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ca.pem"), selfSignedPEM(t))
	writeFile(t, filepath.Join(dir, "junk.pem"), "not pem\n")
	tests := []struct {
		name, file string
		wantKeys   []string
	}{
		{"valid pem, relative", "ca.pem", nil},
		{"not pem", "junk.pem", []string{"imap.ca_file"}},
		{"missing", "nope.pem", []string{"imap.ca_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yml := strings.Replace(validYAML, "imap:\n", "imap:\n  ca_file: "+tc.file+"\n", 1)
			c, err := Parse([]byte(yml), noEnv, dir)
			if tc.wantKeys == nil {
				if err != nil {
					t.Fatalf("Parse = %v", err)
				}
				if c.IMAP.CAFile != filepath.Join(dir, tc.file) {
					t.Errorf("imap.ca_file = %q, want it made absolute", c.IMAP.CAFile)
				}
				return
			}
			if got := problemKeys(t, err); !slices.Equal(got, tc.wantKeys) {
				t.Errorf("problem keys = %q, want %q", got, tc.wantKeys)
			}
		})
	}
}

func selfSignedPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test CA"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
