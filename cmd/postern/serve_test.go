//go:build !nodemo

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
)

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeWaitsForTheIdP: `postern serve` started before its identity provider listens at once, says "starting"
// (503, /healthz 200, /readyz 503), and serves normally as soon as the IdP answers — no restart needed.
// Not parallel: it reserves two ports with freeAddr and listens on them later, which a parallel test's :0 listener
// could take in between.
func TestServeWaitsForTheIdP(t *testing.T) {
	idpAddr, webAddr := freeAddr(t), freeAddr(t)
	path := waitingConfig(t, idpAddr, webAddr)
	testServeWaitsForTheIdP(t, idpAddr, webAddr, path)
}

// TestServeStopsCleanlyWhileStarting: a SIGTERM (here: the context) while serve still waits for the IdP is a clean
// stop, exit status 0, as an orchestrator stopping a not-yet-ready container expects.
func TestServeStopsCleanlyWhileStarting(t *testing.T) {
	idpAddr, webAddr := freeAddr(t), freeAddr(t)
	path := waitingConfig(t, idpAddr, webAddr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", path}, noEnv, io.Discard, io.Discard) }()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + webAddr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not listen")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve stopped while waiting for the IdP returned %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("serve did not stop")
	}
}

// waitingConfig writes a configuration whose IdP (idpAddr) does not listen yet.
func waitingConfig(t *testing.T, idpAddr, webAddr string) string {
	dir := t.TempDir()
	cfg := fmt.Sprintf(`server:
  public_url: http://%s
  listen: %s
oidc:
  issuer: http://%s
  client_id: postern
  client_secret: waits-for-the-idp
imap:
  host: 127.0.0.1
  port: 1
  tls: none
smtp:
  host: 127.0.0.1
  port: 1
  tls: none
session:
  secret: 0123456789abcdef0123456789abcdef-serve-test
storage:
  path: %s
  encryption_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
`, webAddr, webAddr, idpAddr, filepath.Join(dir, "postern.db"))
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func testServeWaitsForTheIdP(t *testing.T, idpAddr, webAddr, path string) {
	defer background(t, "serve", func(ctx context.Context) error {
		return run(ctx, []string{"serve", "-config", path}, noEnv, io.Discard, io.Discard)
	}, nil)()

	get := func(p string) (int, string) {
		resp, err := http.Get("http://" + webAddr + p)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("timed out waiting for %s", what)
	}
	waitFor("the listener", func() bool { code, _ := get("/healthz"); return code == http.StatusOK })
	if code, body := get("/"); code != http.StatusServiceUnavailable || !strings.Contains(body, "Postern is starting") {
		t.Errorf("GET / before the IdP = %d: %.200s", code, body)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz before the IdP = %d, want 503", code)
	}

	p, err := idp.Start(idpAddr, idp.Options{Clients: []idp.Client{{ID: "postern", Secret: "waits-for-the-idp",
		RedirectURIs: []string{"http://" + webAddr + "/callback"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor("the app to take over", func() bool {
		code, body := get("/")
		return code == http.StatusOK && strings.Contains(body, `id="signin"`)
	})
}
