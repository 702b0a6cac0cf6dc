//go:build !nodemo

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/devstack"
	"github.com/postern/postern/internal/devstack/idp"
)

// trusting returns a client TLS configuration that trusts only the bridge's self-signed certificate.
func trusting(t *testing.T, certFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", certFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// waitFor polls cond every 20 ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// TestDemoBridge runs `postern demo` as a newcomer would and points mail clients at what it prints: go-imap's
// client signs in at the printed IMAPS address with alice's printed device password, lists and fetches; go-smtp's
// client sends through the printed submissions address, and the message arrives in bob's INBOX, read through the
// bridge with bob's printed password.
func TestDemoBridge(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "-listen", "127.0.0.1:0", "-bridge", "free"}, noEnv, &out, &errb)
	}()
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
	waitFor(t, 30*time.Second, "the demo's last line", func() bool { return strings.Contains(out.String(), "Press Ctrl-C") })
	printed := out.String()
	t.Logf("demo printed:\n%s", printed)
	addrs := regexp.MustCompile(`(?m)^bridge: IMAP (127\.0\.0\.1:\d+) \(TLS\), SMTP (127\.0\.0\.1:\d+) \(TLS\)$`).FindStringSubmatch(printed)
	starttls := regexp.MustCompile(`(?m)^bridge: IMAP (127\.0\.0\.1:\d+) \(STARTTLS\), SMTP (127\.0\.0\.1:\d+) \(STARTTLS\)$`).FindStringSubmatch(printed)
	cert := regexp.MustCompile(`(?m)^bridge: self-signed certificate (\S+)`).FindStringSubmatch(printed)
	pw := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^bridge: (\S+@example\.test)  device password (\S+)$`).FindAllStringSubmatch(printed, -1) {
		pw[m[1]] = m[2]
	}
	if addrs == nil || starttls == nil || cert == nil || pw["alice@example.test"] == "" || pw["bob@example.test"] == "" {
		t.Fatalf("demo did not print the bridge's addresses, certificate and both device passwords:\n%s", printed)
	}
	tc := trusting(t, cert[1])

	c, err := imapclient.DialTLS(addrs[1], &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice@example.test", pw["alice@example.test"]).Wait(); err != nil {
		t.Fatalf("LOGIN with the printed device password: %v", err)
	}
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil || len(boxes) < 2 {
		t.Fatalf("LIST = %d mailboxes, %v", len(boxes), err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages == 0 {
		t.Fatalf("SELECT INBOX = %+v, %v; want the seeded messages", sel, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope == nil || msgs[0].Envelope.Subject == "" {
		t.Fatalf("FETCH 1 (ENVELOPE) = %v, %v", msgs, err)
	}

	// Send from alice to bob through the SMTP bridge.
	subject := "through the demo bridge " + randomString(6)
	sc, err := smtp.DialTLS(addrs[2], tc)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Auth(sasl.NewPlainClient("", "alice@example.test", pw["alice@example.test"])); err != nil {
		t.Fatalf("AUTH PLAIN with the device password: %v", err)
	}
	msg := "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: " + subject + "\r\n\r\nHello Bob.\r\n"
	if err := sc.SendMail("alice@example.test", []string{"bob@example.test"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("send through the bridge: %v", err)
	}
	sc.Quit()

	// It arrived: bob reads it through the STARTTLS listener.
	bc, err := imapclient.DialStartTLS(starttls[1], &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	if err := bc.Login("bob@example.test", pw["bob@example.test"]).Wait(); err != nil {
		t.Fatalf("bob's LOGIN: %v", err)
	}
	if _, err := bc.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	found, err := bc.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil || len(found.AllSeqNums()) != 1 {
		t.Errorf("bob's INBOX: SEARCH SUBJECT %q = %v, %v; want the message sent through the bridge", subject, found, err)
	}
}

// bridgeServe is `postern serve` with the bridge on, against the dev IdP and mail server, as a self-hoster runs it.
type bridgeServe struct {
	t        *testing.T
	dev      *devstack.Stack
	base     string
	dir      string
	cert     string
	key      string
	logs     *syncBuffer
	hc       *http.Client
	imapAddr string
}

func startBridgeServe(t *testing.T) *bridgeServe {
	t.Helper()
	webAddr := freeAddr(t)
	s := &bridgeServe{t: t, base: "http://" + webAddr, dir: t.TempDir(), logs: &syncBuffer{}}
	var err error
	s.dev, err = startDevstack(s.base, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.dev.Close)
	s.cert, s.key = filepath.Join(s.dir, "cert.pem"), filepath.Join(s.dir, "key.pem")
	if err := writeSelfSigned(s.cert, s.key); err != nil {
		t.Fatal(err)
	}
	imapHost, imapPort := splitAddr(s.dev.IMAP)
	_, smtpPort := splitAddr(s.dev.SMTP)
	cfg := fmt.Sprintf(`server:
  public_url: %s
  listen: %s
log:
  level: debug
oidc:
  issuer: %s
  client_id: %s
  client_secret: %q
imap:
  host: %s
  port: %d
  tls: none
smtp:
  host: %s
  port: %d
  tls: none
session:
  secret: 0123456789abcdef0123456789abcdef-bridge-test
storage:
  path: postern.db
  encryption_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
bridge:
  host: 127.0.0.1
  imaps_listen: 127.0.0.1:0
  submissions_listen: 127.0.0.1:0
  cert_file: cert.pem
  key_file: key.pem
  failure_delay: 10ms
`, s.base, webAddr, s.dev.IdP.Issuer(), devstack.ClientID, s.dev.ClientSecret, imapHost, imapPort, imapHost, smtpPort)
	path := filepath.Join(s.dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := background(t, "serve", func(ctx context.Context) error {
		return run(ctx, []string{"serve", "-config", path}, noEnv, io.Discard, s.logs)
	}, s.logs.String)
	t.Cleanup(stop)
	waitFor(t, 20*time.Second, "the bridge", func() bool { return strings.Contains(s.logs.String(), `msg="bridge listening"`) })

	jar, _ := cookiejar.New(nil)
	s.hc = &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return s
}

// send does one request and returns the status, the Location and the body.
func (s *bridgeServe) send(method, path string, form url.Values) (int, string, string) {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	u := path
	if strings.HasPrefix(path, "/") {
		u = s.base + path
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// signIn signs alice in to the web UI, then connects a device on the Devices page (its own flow at the IdP) and
// returns its id and password; it also learns the bridge's IMAPS port from the page's set-up help.
func (s *bridgeServe) connectDevice(name string) (id, password string) {
	s.t.Helper()
	if _, loc, _ := s.send(http.MethodGet, "/login", nil); loc != "" {
		cb, err := idp.SignIn(context.Background(), s.hc, loc, "alice", "alice-password", true)
		if err != nil {
			s.t.Fatal(err)
		}
		if code, _, _ := s.send(http.MethodGet, cb.String(), nil); code != http.StatusSeeOther {
			s.t.Fatalf("sign-in callback = %d", code)
		}
	}
	code, loc, _ := s.send(http.MethodPost, "/devices", url.Values{"name": {name}})
	if code != http.StatusSeeOther {
		s.t.Fatalf("POST /devices = %d (is the bridge enabled on the Devices page?)", code)
	}
	cb, err := idp.SignIn(context.Background(), s.hc, loc, "alice", "alice-password", true)
	if err != nil {
		s.t.Fatal(err)
	}
	code, _, page := s.send(http.MethodGet, cb.String(), nil)
	pw := regexp.MustCompile(`<code>([a-z0-9-]+)</code>`).FindStringSubmatch(page)
	ids := regexp.MustCompile(`<tr id="device-([^"]+)"`).FindAllStringSubmatch(page, -1)
	port := regexp.MustCompile(`127\.0\.0\.1, port (\d+), SSL/TLS`).FindStringSubmatch(page)
	if code != http.StatusOK || pw == nil || len(ids) == 0 || port == nil {
		s.t.Fatalf("device page = %d, password %v, rows %v, IMAPS port %v:\n%s", code, pw != nil, ids, port, page)
	}
	s.imapAddr = "127.0.0.1:" + port[1]
	return ids[len(ids)-1][1], pw[1]
}

// rawLogin logs in on a fresh IMAPS connection and returns the tagged answer to LOGIN.
func (s *bridgeServe) rawLogin(tc *tls.Config, user, password string) string {
	s.t.Helper()
	conn, err := tls.Dial("tcp", s.imapAddr, tc)
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		s.t.Fatal(err)
	}
	fmt.Fprintf(conn, "a LOGIN %s %s\r\n", user, password)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "error: " + err.Error()
		}
		if strings.HasPrefix(line, "a ") {
			return strings.TrimSpace(line)
		}
	}
}

// leafSerial is the serial of the certificate the bridge presents on a new connection. Verification is off: the
// point is which certificate is presented, and the test swaps it.
func (s *bridgeServe) leafSerial() string {
	s.t.Helper()
	conn, err := tls.Dial("tcp", s.imapAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestServeBridge: `postern serve` with a bridge block. A device connected on the Devices page signs in at the
// IMAPS listener; a wrong password gets NO [AUTHENTICATIONFAILED] without any upstream login; SIGHUP makes the next
// connection present the renewed certificate (and a broken renewal keeps the old one); revoking the device on the
// Devices page closes its open connection within a second. Not parallel: it reserves the web port with freeAddr,
// and sends SIGHUP to the test process.
func TestServeBridge(t *testing.T) {
	// Registered first, so that SIGHUP can never take the default action (end the test binary).
	hups := make(chan os.Signal, 4)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)

	s := startBridgeServe(t)
	id, pw := s.connectDevice("Laptop")
	tc := trusting(t, s.cert)

	c, err := imapclient.DialTLS(s.imapAddr, &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice@example.test", pw).Wait(); err != nil {
		t.Fatalf("LOGIN with the device password: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT INBOX through the bridge: %v", err)
	}
	if st := s.dev.Mail.Stats(); st.AuthSuccesses == 0 {
		t.Fatal("the mail server saw no upstream login for the bridged session")
	}

	// A wrong password: refused by the bridge, never tried upstream.
	before := s.dev.Mail.Stats().AuthAttempts
	if got := s.rawLogin(tc, "alice@example.test", "wrong-password"); !strings.HasPrefix(got, "a NO [AUTHENTICATIONFAILED]") {
		t.Errorf("LOGIN with a wrong password = %q, want a NO [AUTHENTICATIONFAILED]", got)
	}
	if after := s.dev.Mail.Stats().AuthAttempts; after != before {
		t.Errorf("upstream AUTHENTICATEs for a wrong device password = %d, want 0", after-before)
	}

	// SIGHUP: the next connection presents the new certificate.
	old := s.leafSerial()
	dir2 := t.TempDir()
	if err := writeSelfSigned(filepath.Join(dir2, "cert.pem"), filepath.Join(dir2, "key.pem")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		b, _ := os.ReadFile(filepath.Join(dir2, f))
		// Key first would briefly pair the old certificate with the new key; the reload happens only on SIGHUP.
		if err := os.WriteFile(filepath.Join(s.dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the reloaded certificate", func() bool { return s.leafSerial() != old })
	renewed := s.leafSerial()
	waitFor(t, 2*time.Second, "the reload's log line", func() bool { return strings.Contains(s.logs.String(), `msg="bridge certificate reloaded"`) })
	// A broken renewal is logged and the working pair stays.
	if err := os.WriteFile(filepath.Join(s.dir, "cert.pem"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the failed reload's log line", func() bool {
		return strings.Contains(s.logs.String(), `msg="bridge certificate not reloaded; the previous one stays in use"`)
	})
	if got := s.leafSerial(); got != renewed {
		t.Errorf("after a failed reload the bridge presents serial %s, want the last good one %s", got, renewed)
	}

	// Revoke on the Devices page: the open connection closes within a second, the next login fails.
	start := time.Now()
	if code, loc, _ := s.send(http.MethodPost, "/devices/"+id+"/revoke", nil); code != http.StatusSeeOther || loc != "/devices?done=revoked" {
		t.Fatalf("POST revoke = %d to %q", code, loc)
	}
	select {
	case <-c.Closed():
		t.Logf("bridge connection closed %s after the revoke request", time.Since(start).Round(time.Millisecond))
	case <-time.After(time.Second):
		t.Fatal("the revoked device's bridge connection was still open 1 s after the revoke request")
	}
	if got := s.rawLogin(trusting(t, filepath.Join(dir2, "cert.pem")), "alice@example.test", pw); !strings.HasPrefix(got, "a NO [AUTHENTICATIONFAILED]") {
		t.Errorf("LOGIN of the revoked device = %q, want NO [AUTHENTICATIONFAILED]", got)
	}
	if strings.Contains(s.logs.String(), pw) {
		t.Error("the device password appears in the log")
	}
}

// TestServeBridgePortInUse: a bridge port taken by another process stops serve at once (before waiting for the
// IdP), with the key to change.
func TestServeBridgePortInUse(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeSelfSigned(cert, key); err != nil {
		t.Fatal(err)
	}
	// The IdP does not exist: serve must fail on the port before it would wait for it.
	path := waitingConfig(t, "127.0.0.1:1", "127.0.0.1:0")
	extra := fmt.Sprintf("bridge:\n  host: localhost\n  imaps_listen: %s\n  submissions_listen: 127.0.0.1:0\n  cert_file: %s\n  key_file: %s\n",
		taken.Addr(), cert, key)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(extra)
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = run(ctx, []string{"serve", "-config", path}, noEnv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "bridge.imaps_listen: ") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("serve with the IMAPS port taken = %v, want an error naming bridge.imaps_listen", err)
	}
	if ctx.Err() != nil {
		t.Error("serve waited for the IdP before reporting the port in use")
	}
}

// TestConfigCheckBridge: `postern config check` reports each bridge problem on its key, every one at once.
func TestConfigCheckBridge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeSelfSigned(cert, key); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile("../../config.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, bridge string
		want         []string
	}{
		{"valid", "  host: localhost\n  imaps_listen: :993\n  submissions_listen: :465\n  cert_file: cert.pem\n  key_file: key.pem\n", nil},
		{"listener without host, cert or key", "  imaps_listen: :993\n  submissions_listen: :465\n",
			[]string{"bridge.host", "bridge.cert_file", "bridge.key_file"}},
		{"unreadable pair", "  host: localhost\n  imaps_listen: :993\n  submissions_listen: :465\n  cert_file: nope.pem\n  key_file: key.pem\n",
			[]string{"bridge.cert_file"}},
		{"certificate for another host", "  host: mail.example.com\n  imaps_listen: :993\n  submissions_listen: :465\n  cert_file: cert.pem\n  key_file: key.pem\n",
			[]string{"bridge.cert_file"}},
		{"no submission", "  host: localhost\n  imaps_listen: :993\n  cert_file: cert.pem\n  key_file: key.pem\n", []string{"bridge.submissions_listen"}},
		{"typo and limits", "  host: localhost\n  imaps_listn: :993\n  max_connections: 0\n  max_devices_per_user: 0\n  prelogin_timeout: 0s\n  failure_delay: 5m\n",
			[]string{"bridge.imaps_listn", "bridge.max_connections", "bridge.max_devices_per_user", "bridge.prelogin_timeout", "bridge.failure_delay"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".yml")
			if err := os.WriteFile(path, append(append([]byte{}, base...), "\nbridge:\n"+tt.bridge...), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"config", "check", "-config", path}, noEnv, &out, &errb)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("config check = %v:\n%s", err, errb.String())
				}
				return
			}
			if err == nil {
				t.Fatal("config check accepted the file")
			}
			for _, k := range tt.want {
				if !strings.Contains(errb.String(), "  "+k+": ") {
					t.Errorf("no problem reported on %s:\n%s", k, errb.String())
				}
			}
			if n := strings.Count(errb.String(), "\n  bridge."); n != len(tt.want) {
				t.Errorf("%d bridge problems reported, want %d:\n%s", n, len(tt.want), errb.String())
			}
		})
	}
}
