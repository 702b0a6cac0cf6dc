package mail

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/mailserver"
)

const (
	alice      = "alice@example.test"
	bobAddr    = "bob@example.test"
	carolAddr  = "carol@example.test"
	aliceToken = "authelia_at_alice_0123456789"
	bobToken   = "authelia_at_bob_0123456789"
	carolToken = "authelia_at_carol_0123456789"
)

// idp is a fake userinfo endpoint mapping bearer tokens to emails.
type idp struct {
	srv   *httptest.Server
	mu    sync.Mutex
	users map[string]string
	down  atomic.Bool // answer 503
	gone  atomic.Bool // drop the connection without an answer
	calls atomic.Int64
}

func newIdP(t testing.TB) *idp {
	t.Helper()
	p := &idp{users: map[string]string{aliceToken: alice, bobToken: bobAddr, carolToken: carolAddr}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.calls.Add(1)
		if p.gone.Load() {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		if p.down.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		p.mu.Lock()
		email, known := p.users[tok]
		p.mu.Unlock()
		if !ok || !known {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"sub": "u-" + email, "email": strings.ToUpper(email[:1]) + email[1:], "email_verified": true})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// testPKI is a throwaway CA and a server certificate for 127.0.0.1.
type testPKI struct {
	server *tls.Config // for the mail server
	client *tls.Config // trusts the CA
}

var (
	pkiOnce sync.Once
	pki     testPKI
	pkiErr  error
)

func newPKI(t testing.TB) testPKI {
	t.Helper()
	pkiOnce.Do(func() { pki, pkiErr = makePKI() })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pki
}

func makePKI() (testPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testPKI{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "postern test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return testPKI{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return testPKI{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testPKI{}, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return testPKI{}, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return testPKI{
		server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}},
		client: &tls.Config{RootCAs: pool},
	}, nil
}

// env is a running mail server with its IdP.
type env struct {
	idp                      *idp
	srv                      *mailserver.Server
	pki                      testPKI
	imap, imaps, smtp, smtps int
}

func newEnv(t testing.TB, opts mailserver.Options) *env {
	t.Helper()
	e := &env{idp: newIdP(t), pki: newPKI(t)}
	opts.UserinfoURL = e.idp.srv.URL
	opts.TLSConfig = e.pki.server
	srv, err := mailserver.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.srv = srv
	for _, l := range []struct {
		listen func(string) (net.Addr, error)
		port   *int
	}{
		{srv.ListenIMAP, &e.imap}, {srv.ListenIMAPS, &e.imaps}, {srv.ListenSMTP, &e.smtp}, {srv.ListenSMTPS, &e.smtps},
	} {
		a, err := l.listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		*l.port = a.(*net.TCPAddr).Port
	}
	return e
}

// imapServer describes the IMAP endpoint for a TLS mode and mechanism.
func (e *env) imapServer(mode TLSMode, mech Mechanism) Server {
	port := e.imap
	if mode == TLSImplicit {
		port = e.imaps
	}
	return Server{Host: "127.0.0.1", Port: port, TLS: mode, TLSConfig: e.pki.client, Mechanism: mech, DialTimeout: 5 * time.Second}
}

func (e *env) smtpServer(mode TLSMode, mech Mechanism) Server {
	port := e.smtp
	if mode == TLSImplicit {
		port = e.smtps
	}
	return Server{Host: "127.0.0.1", Port: port, TLS: mode, TLSConfig: e.pki.client, Mechanism: mech, DialTimeout: 5 * time.Second}
}

// waitFor polls cond until it holds or a second passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
