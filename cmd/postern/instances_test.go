//go:build !nodemo

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/store/pgtest"
)

// TestPostgresInstancesShareSessions runs two `postern serve` instances on one PostgreSQL database, as a site
// behind a load balancer would without sticky sessions: a sign-in on A is a session on B, and a sign-out on A ends
// it on B.
func TestPostgresInstancesShareSessions(t *testing.T) {
	dsn := pgtest.DSN(t)
	addrA, addrB, metricsB := freeAddr(t), freeAddr(t), freeAddr(t)
	d, err := startDevstack("http://"+addrA, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	imapHost, imapPort := splitAddr(d.IMAP)
	smtpHost, smtpPort := splitAddr(d.SMTP)
	cfg := fmt.Sprintf(`server:
  public_url: http://%s
  listen: %s
oidc:
  issuer: %s
  client_id: postern
  client_secret: %s
imap:
  host: %s
  port: %d
  tls: none
smtp:
  host: %s
  port: %d
  tls: none
session:
  secret: 0123456789abcdef0123456789abcdef-instances
storage:
  driver: postgres
  dsn_file: dsn
  encryption_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
`, addrA, addrA, d.IdP.Issuer(), d.ClientSecret, imapHost, imapPort, smtpHost, smtpPort)
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	for _, listen := range []string{addrA, addrB} {
		getenv := func(k string) string {
			switch {
			case k == "POSTERN_SERVER_LISTEN":
				return listen
			case k == "POSTERN_SERVER_METRICS_LISTEN" && listen == addrB:
				return metricsB
			}
			return ""
		}
		go func() { done <- run(ctx, []string{"serve", "-config", path}, getenv, io.Discard, io.Discard) }()
	}
	defer func() {
		cancel()
		for range 2 {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve returned %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("serve did not stop")
			}
		}
	}()

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(base, p string) (int, string) {
		t.Helper()
		resp, err := hc.Get("http://" + base + p)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, base := range []string{addrA, addrB} {
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if code, body := get(base, "/"); code == http.StatusOK && strings.Contains(body, `id="signin"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance %s did not come up", base)
			}
		}
	}

	// Sign in on A.
	resp, err := hc.Get("http://" + addrA + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb, err := idp.SignIn(ctx, hc, resp.Header.Get("Location"), "alice", "alice-password", true)
	if err != nil {
		t.Fatalf("sign in at the dev IdP: %v", err)
	}
	if resp, err = hc.Get(cb.String()); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback on A = %s", resp.Status)
	}

	// The same browser on B: signed in, with the same mail.
	if code, body := get(addrB, "/mail/INBOX"); code != http.StatusOK || !strings.Contains(body, "alice@example.test") || !strings.Contains(body, "data-uid=") {
		t.Fatalf("inbox on B after sign-in on A = %d:\n%.300s", code, body)
	}

	// B's pooled IMAP connection for alice's grant is open now (a connection stays authenticated after its token
	// is revoked, so B must close it when the grant ends elsewhere).
	metric := func(series string) string {
		resp, err := http.Get("http://" + metricsB + "/metrics")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				return v
			}
		}
		return "missing"
	}
	poolOpen := func() string { return metric(`postern_imap_pool_connections{state="open"}`) }
	// The database pool is in the metrics too (connections, waits).
	if v := metric("postern_db_pool_acquires_total"); v == "missing" || v == "0" {
		t.Errorf("postern_db_pool_acquires_total = %s, want a count above 0", v)
	}
	if v := metric(`postern_db_pool_connections{state="max"}`); v == "missing" || v == "0" {
		t.Errorf(`postern_db_pool_connections{state="max"} = %s`, v)
	}
	if got := poolOpen(); got != "1" {
		t.Fatalf("B's open IMAP connections after one inbox view = %s, want 1", got)
	}

	// Sign out on A; B must not serve the session any more, even to the old cookie replayed.
	uB, _ := url.Parse("http://" + addrB + "/")
	old := jar.Cookies(uB)
	if len(old) == 0 {
		t.Fatal("no session cookie to replay")
	}
	if resp, err = hc.Post("http://"+addrA+"/logout", "application/x-www-form-urlencoded", nil); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout on A = %s", resp.Status)
	}
	// Through PostgreSQL's NOTIFY, B closes its connection for the grant: within milliseconds on a quiet machine
	// (logged), and the test allows 10 s for a loaded one. Nothing else would close it that soon: B's janitor only
	// reaps connections idle for 5 minutes, so without the watcher this fails.
	var got string
	signedOut := time.Now()
	for deadline := signedOut.Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = poolOpen(); got == "0" {
			break
		}
	}
	if got != "0" {
		t.Errorf("B's open IMAP connections 10 s after sign-out on A = %s, want 0", got)
	} else {
		t.Logf("B closed its connection for the grant %s after the sign-out on A", time.Since(signedOut).Round(time.Millisecond))
	}
	jar.SetCookies(uB, old)
	if code, body := get(addrB, "/mail/INBOX"); code != http.StatusSeeOther || !strings.Contains(body, "/login") || strings.Contains(body, "data-uid=") {
		t.Errorf("B after sign-out on A = %d, want a redirect to sign in:\n%.300s", code, body)
	}
}
