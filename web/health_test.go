package web

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/devstack/mailserver"
	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/mail"
)

// opsServer is a web.Server with nothing behind its sign-in pages: the operations routes need none of it.
func opsServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	public, _ := url.Parse("http://127.0.0.1:1")
	s, err := New(Config{PublicURL: public, SessionSecret: []byte("0123456789abcdef0123456789abcdef-test")}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

func readyz(t *testing.T, base string) (int, readiness) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("readyz body: %v", err)
	}
	return resp.StatusCode, r
}

// eventually polls readyz until it answers status, for at most 5 s (the discovery check caches its outcome).
func eventually(t *testing.T, base string, status int, failing string) readiness {
	t.Helper()
	var (
		got int
		r   readiness
	)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got, r = readyz(t, base)
		if got == status {
			break
		}
	}
	if got != status {
		t.Fatalf("/readyz = %d %+v, want %d", got, r, status)
	}
	if r.Ready != (status == http.StatusOK) {
		t.Errorf("ready = %v with status %d", r.Ready, status)
	}
	for name, v := range r.Checks {
		if (name == failing) == (v == "ok") {
			t.Errorf("check %s = %q (failing: %q)", name, v, failing)
		}
	}
	return r
}

func TestHealthz(t *testing.T) {
	_, ts := opsServer(t)
	resp, err := http.Get(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/healthz = %d %q", resp.StatusCode, body)
	}
}

func TestReadyz(t *testing.T) {
	s, ts := opsServer(t)

	// The IdP, on an address it can be restarted at.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	idpAddr := ln.Addr().String()
	ln.Close()
	startIdP := func() *idp.IdP {
		t.Helper()
		var p *idp.IdP
		var err error
		for range 50 { // the port may linger for a moment after Close
			if p, err = idp.Start(idpAddr, idp.Options{}); err == nil {
				return p
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal(err)
		return nil
	}
	p := startIdP()
	t.Cleanup(func() { p.Close() })

	// The IMAP server, likewise.
	startMail := func(addr string) (*mailserver.Server, net.Addr) {
		t.Helper()
		m, err := mailserver.New(mailserver.Options{UserinfoURL: p.Issuer() + "/api/oidc/userinfo"})
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			a, err := m.ListenIMAP(addr)
			if err == nil {
				return m, a
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("cannot listen for IMAP on", addr)
		return nil, nil
	}
	m, imapAddr := startMail("127.0.0.1:0")
	t.Cleanup(func() { m.Close() })

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, err := seal.New(map[string][]byte{"1": key}, "1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "postern.db"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	host, port := splitHostPort(t, imapAddr.String())
	s.SetReadiness(map[string]Checker{
		"store": CheckFunc(st.Ping),
		"idp":   DiscoveryCheck(&http.Client{}, p.Issuer(), 50*time.Millisecond),
		"imap":  IMAPCheck(mail.Server{Host: host, Port: port, TLS: mail.TLSNone}),
	})

	eventually(t, ts.URL, http.StatusOK, "")

	t.Run("idp down", func(t *testing.T) {
		p.SetDown(true)
		r := eventually(t, ts.URL, http.StatusServiceUnavailable, "idp")
		if r.Checks["idp"] != "fail" {
			t.Errorf("idp check = %q", r.Checks["idp"])
		}
		p.SetDown(false)
		eventually(t, ts.URL, http.StatusOK, "")
	})
	t.Run("idp stopped", func(t *testing.T) {
		p.Close()
		eventually(t, ts.URL, http.StatusServiceUnavailable, "idp")
		p = startIdP()
		eventually(t, ts.URL, http.StatusOK, "")
	})
	t.Run("imap stopped", func(t *testing.T) {
		m.Close()
		r := eventually(t, ts.URL, http.StatusServiceUnavailable, "imap")
		if r.Checks["imap"] != "fail" {
			t.Errorf("imap check = %q", r.Checks["imap"])
		}
		m, _ = startMail(imapAddr.String())
		eventually(t, ts.URL, http.StatusOK, "")
	})
	t.Run("store closed", func(t *testing.T) {
		st.Close()
		eventually(t, ts.URL, http.StatusServiceUnavailable, "store")
	})
}

func TestRoutePattern(t *testing.T) {
	s, _ := opsServer(t)
	for path, want := range map[string]string{
		"/mail/INBOX/Sub": "GET /mail/{box...}",
		"/readyz":         "GET /readyz",
		"/no/such/page":   "/",
	} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if got := s.RoutePattern(r); got != want {
			t.Errorf("RoutePattern(%s) = %q, want %q", path, got, want)
		}
	}
}
