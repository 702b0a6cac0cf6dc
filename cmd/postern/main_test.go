//go:build !nodemo

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
)

func noEnv(string) string { return "" }

func TestConfigCheckAcceptsTheExample(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"config", "check", "-config", "../../config.example.yml"}, noEnv, &out, &errb); err != nil {
		t.Fatalf("config check on config.example.yml: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), ": ok") {
		t.Errorf("stdout = %q, want it to say ok", out.String())
	}
}

func TestConfigCheckListsEveryProblem(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "broken.yml")
	broken := `server:
  public_url: ftp://mail.example.com
  listn: 127.0.0.1:8080
oidc:
  issuer: https://auth.example.com/
  client_id: postern
  scopes: [profile, email]
imap:
  host: mail.example.com
  tls: maybe
smtp:
  host: mail.example.com
  sasl: plain
session:
  secret: short
storage:
  encryption_key: not-a-key
`
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"config", "check", "-config", path}, noEnv, &out, &errb)
	if err == nil {
		t.Fatal("config check accepted a broken file")
	}
	for _, key := range []string{"server.public_url", "server.listn", "oidc.issuer", "oidc.client_secret", "oidc.scopes",
		"imap.tls", "smtp.sasl", "session.secret", "storage.encryption_key"} {
		if !strings.Contains(errb.String(), "  "+key+":") {
			t.Errorf("output lacks a problem for %s:\n%s", key, errb.String())
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, noEnv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "postern ") {
		t.Errorf("version output %q", out.String())
	}
}

// syncBuffer lets the test read what the running command prints.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemo runs the real command as a newcomer would, on a free port, and walks the first screen: sign in as the
// printed demo user, see the inbox, sign out. It does so with opaque access tokens and with -jwt, where the inbox
// only opens if the JWT carries the audience the offline-validating mail server requires.
func TestDemo(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		mode string
	}{
		{"opaque", nil, "Access tokens: opaque"},
		{"jwt", []string{"-jwt"}, "Access tokens: JWT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testDemo(t, tt.args, tt.mode)
		})
	}
}

func testDemo(t *testing.T, extra []string, mode string) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan error, 1)
	// -bridge free: the two subtests run at once, and the fixed bridge ports would collide (TestDemoBridge covers it).
	args := append([]string{"demo", "-listen", "127.0.0.1:0", "-bridge", "free"}, extra...)
	go func() { done <- run(ctx, args, noEnv, &out, &errb) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo returned %v; stderr:\n%s", err, errb.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("demo did not stop within 20 s of cancellation")
		}
	}()

	re := regexp.MustCompile(`running at (http://127\.0\.0\.1:\d+)`)
	var base string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("demo exited early: %v\n%s", err, errb.String())
		default:
		}
	}
	if base == "" {
		t.Fatalf("demo printed no URL; stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	pw := regexp.MustCompile(`user alice\s+password (\S+)`).FindStringSubmatch(out.String())
	if pw == nil {
		t.Fatalf("demo did not print alice's password:\n%s", out.String())
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), mode) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out.String(), mode) {
		t.Errorf("demo did not print %q:\n%s", mode, out.String())
	}

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authURL := resp.Header.Get("Location")
	cb, err := idp.SignIn(ctx, hc, authURL, "alice", pw[1], true)
	if err != nil {
		t.Fatalf("sign in at the demo IdP: %v", err)
	}
	resp, err = hc.Get(cb.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback = %s", resp.Status)
	}
	resp, err = hc.Get(base + resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "alice@example.test") || !strings.Contains(string(body), "data-uid=") {
		t.Fatalf("inbox = %s:\n%s", resp.Status, body)
	}
	resp, err = hc.Post(base+"/logout", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signed-out" {
		t.Errorf("logout = %s to %q", resp.Status, resp.Header.Get("Location"))
	}
}

// TestCLIErrors: every command-line mistake is said exactly once, with what was wrong, and the usage where it helps.
func TestCLIErrors(t *testing.T) {
	t.Parallel()
	example := "../../config.example.yml"
	for _, tt := range []struct {
		name    string
		args    []string
		ok      bool
		stdout  string   // substring of stdout
		stderr  []string // substrings of stderr, each exactly once
		noUsage bool
	}{
		{"unknown command", []string{"bogus"}, false, "", []string{`unknown command "bogus"`, "usage: postern"}, false},
		{"no command", nil, false, "", []string{"no command given", "usage: postern"}, false},
		{"config without check", []string{"config"}, false, "", []string{"missing subcommand", "usage: postern"}, false},
		{"config bogus", []string{"config", "validate"}, false, "", []string{`unknown subcommand "validate"`}, false},
		{"--version", []string{"--version"}, true, "postern dev", nil, true},
		{"-version", []string{"-version"}, true, "postern dev", nil, true},
		{"bad flag", []string{"serve", "-bogus"}, false, "", []string{"flag provided but not defined: -bogus"}, true},
		{"bad flag value", []string{"demo", "-jwt=maybe"}, false, "", []string{`invalid boolean value "maybe" for -jwt`}, true},
		{"placeholders warn", []string{"config", "check", "-config", example}, true, "ok, with 3 warning(s)",
			[]string{"warning: session.secret:", "warning: oidc.client_secret:", "warning: storage.encryption_key:"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			err := run(context.Background(), tt.args, noEnv, &out, &errb)
			// What main would add: it prints an error unless it is an exitError (already reported).
			var ee exitError
			if err != nil && !errors.As(err, &ee) {
				fmt.Fprintln(&errb, "postern:", err)
			}
			if (err == nil) != tt.ok {
				t.Fatalf("run(%q) = %v, want ok %v; stderr:\n%s", tt.args, err, tt.ok, errb.String())
			}
			if !strings.Contains(out.String(), tt.stdout) {
				t.Errorf("stdout = %q, want %q in it", out.String(), tt.stdout)
			}
			for _, s := range tt.stderr {
				if n := strings.Count(errb.String(), s); n != 1 {
					t.Errorf("stderr says %q %d times, want once:\n%s", s, n, errb.String())
				}
			}
			if tt.noUsage && strings.Contains(errb.String(), "usage: postern <command>") {
				t.Errorf("stderr repeats the whole usage:\n%s", errb.String())
			}
		})
	}
}
