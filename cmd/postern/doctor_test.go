//go:build !nodemo

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/internal/devstack"
)

// doctorConfig writes a configuration file for the demo's peers, with the client secret in a file as production
// would have it.
func doctorConfig(t *testing.T, d *devstack.Stack, clientSecret string) string {
	t.Helper()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client_secret")
	if err := os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	imapHost, imapPort := splitAddr(d.IMAP)
	smtpHost, smtpPort := splitAddr(d.SMTP)
	yml := fmt.Sprintf(`server:
  public_url: http://127.0.0.1:8080
oidc:
  issuer: %s
  client_id: postern
  client_secret_file: client_secret
imap:
  host: %s
  port: %d
  tls: none
smtp:
  host: %s
  port: %d
  tls: none
session:
  secret: %s
storage:
  path: postern.db
  encryption_key: %s
`, d.IdP.Issuer(), imapHost, imapPort, smtpHost, smtpPort, randomString(48), "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	d, err := startDevstack("http://127.0.0.1:8080", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	t.Run("correct", func(t *testing.T) {
		var out bytes.Buffer
		err := runDoctor(context.Background(), []string{"-config", doctorConfig(t, d, d.ClientSecret)}, noEnv, &out, io.Discard)
		if err != nil {
			t.Fatalf("doctor = %v\n%s", err, out.String())
		}
		for _, want := range []string{"✓ config", "✓ discovery", "✓ issuer", "✓ client_auth", "✓ imap", "✓ smtp", ", 0 failed,"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
		if strings.Contains(out.String(), "✗") {
			t.Errorf("a check failed:\n%s", out.String())
		}
	})

	t.Run("wrong secret", func(t *testing.T) {
		var out bytes.Buffer
		err := runDoctor(context.Background(), []string{"-config", doctorConfig(t, d, "not-the-secret")}, noEnv, &out, io.Discard)
		var ee exitError
		if !errors.As(err, &ee) {
			t.Fatalf("doctor = %v, want an exit status", err)
		}
		t.Log("\n" + out.String())
		for _, want := range []string{
			"✗ client_auth     wrong client secret",
			"fix: Authelia's client_secret must be the digest of the plaintext in Postern's oidc.client_secret",
			"  client_secret: '$pbkdf2-sha512$310000$…'",
			", 1 failed,",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
		if strings.Contains(out.String(), d.ClientSecret) || strings.Contains(out.String(), "not-the-secret") {
			t.Error("the output shows a client secret")
		}
	})

	t.Run("invalid config", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(path, []byte("oidc:\n  issuer: https://auth.example.com/\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err := runDoctor(context.Background(), []string{"-config", path}, noEnv, &out, io.Discard)
		if err == nil {
			t.Fatal("doctor accepted an invalid configuration")
		}
		if !strings.Contains(out.String(), "✗ config          oidc.issuer:") {
			t.Errorf("output:\n%s", out.String())
		}
	})
}
