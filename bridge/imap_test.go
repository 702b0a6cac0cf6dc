package bridge

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/mail"
)

// dialIMAPS logs in through the bridge's implicit-TLS listener with go-imap's client.
func (e *env) dialIMAPS(t *testing.T, user, pw string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = e.client
	c, err := imapclient.DialTLS(e.imaps, opts)
	if err != nil {
		t.Fatalf("DialTLS: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pw).Wait(); err != nil {
		t.Fatalf("Login through the bridge: %v", err)
	}
	return c
}

func TestIMAPClientThroughBridge(t *testing.T) {
	e := newEnv(t, Options{})
	before := e.upstreamAuths()
	exists := make(chan uint32, 16)
	c := e.dialIMAPS(t, alice, alicePW, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	// The login's answer carries the upstream's capabilities: IDLE and MOVE, no AUTH=.
	caps := c.Caps()
	if !caps.Has(imap.CapIdle) || !caps.Has(imap.CapMove) || caps.Has(imap.AuthCap("PLAIN")) {
		t.Errorf("capabilities after login = %v, want the upstream's (IDLE, MOVE, no AUTH=)", caps)
	}

	boxes, err := c.List("", "*", nil).Collect()
	if err != nil || len(boxes) < 2 {
		t.Fatalf("List = %d mailboxes, %v; want the seeded folders", len(boxes), err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages == 0 {
		t.Fatalf("Select INBOX = %+v, %v; want the seeded messages", sel, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, UID: true, BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope == nil || len(msgs[0].BodySection) == 0 {
		t.Fatalf("Fetch 1 = %v, %v; want one message with envelope and body", msgs, err)
	}
	uid := msgs[0].UID

	// STORE, MOVE, APPEND, EXPUNGE pass through.
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatalf("Store: %v", err)
	}
	if _, err := c.Move(imap.UIDSetNum(uid), "Archive").Wait(); err != nil {
		t.Fatalf("Move to Archive: %v", err)
	}
	raw := "From: alice@example.test\r\nTo: alice@example.test\r\nSubject: appended\r\n\r\nhello\r\n"
	ac := c.Append("INBOX", int64(len(raw)), nil)
	io.WriteString(ac, raw)
	ac.Close()
	if _, err := ac.Wait(); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatalf("Store \\Deleted: %v", err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatalf("Expunge: %v", err)
	}
	stored, err := e.stack.Mail.Messages(alice, "Archive")
	if err != nil || len(stored) == 0 {
		t.Errorf("Archive at the mail server = %d messages, %v; want the moved one", len(stored), err)
	}

	// IDLE wakes on new mail: deliver one to alice with her own token and wait for EXISTS.
	idle, err := c.Idle()
	if err != nil {
		t.Fatalf("Idle: %v", err)
	}
	g := e.auth.grants["grant-alice"]
	cr, _ := g.Token(t.Context())
	if err := mail.Send(t.Context(), mail.Server{Host: "127.0.0.1", Port: e.stack.SMTP.(*net.TCPAddr).Port, TLS: mail.TLSNone}, cr, alice, []string{alice}, strings.NewReader("Subject: new\r\n\r\nnew mail\r\n")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	select {
	case <-exists:
	case <-time.After(10 * time.Second): // a bound on a hang, not a timing assertion
		t.Fatal("IDLE did not report the new message")
	}
	if err := idle.Close(); err != nil {
		t.Fatalf("ending IDLE: %v", err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE: %v", err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("Noop after IDLE: %v", err)
	}

	// All of that was one connection: one upstream AUTHENTICATE (plus the Send's own), not one per command.
	if got := e.upstreamAuths() - before; got != 2 {
		t.Errorf("upstream AUTHENTICATEs = %d, want 2 (the bridged connection's and the Send's)", got)
	}
}

// TestFolderListOneAuthPerConnection opens the folder list as a client does — LIST, then STATUS of every folder —
// and then opens each folder (SELECT, EXAMINE), and checks that the whole conversation cost the upstream one
// AUTHENTICATE: the mail server counts them (Stats.AuthAttempts), so a bridge that logged in per command would show.
func TestFolderListOneAuthPerConnection(t *testing.T) {
	e := newEnv(t, Options{})
	before := e.upstreamAuths()
	c := e.dialIMAPS(t, alice, alicePW, nil)
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(boxes) < 2 {
		t.Fatalf("LIST = %d folders, want several", len(boxes))
	}
	for _, b := range boxes {
		if _, err := c.Status(b.Mailbox, &imap.StatusOptions{NumMessages: true, NumUnseen: true}).Wait(); err != nil {
			t.Fatalf("Status %s: %v", b.Mailbox, err)
		}
	}
	for i, b := range boxes {
		if _, err := c.Select(b.Mailbox, &imap.SelectOptions{ReadOnly: i%2 == 1}).Wait(); err != nil {
			t.Fatalf("Select %s: %v", b.Mailbox, err)
		}
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if got := e.upstreamAuths() - before; got != 1 {
		t.Errorf("upstream AUTHENTICATEs for LIST, %d STATUS and %d SELECT/EXAMINE = %d, want 1", len(boxes), len(boxes), got)
	}
	// The count is real: a second connection costs a second AUTHENTICATE.
	e.dialIMAPS(t, alice, alicePW, nil)
	if got := e.upstreamAuths() - before; got != 2 {
		t.Errorf("upstream AUTHENTICATEs after a second connection = %d, want 2", got)
	}
}

// TestWrongPasswordsCostDelaysAndNoUpstream: 50 wrong passwords from one address, three per connection as the
// bridge allows, never reach the mail server and cost at least 50 × the base delay.
func TestWrongPasswordsCostDelaysAndNoUpstream(t *testing.T) {
	const base = time.Second
	e := newEnv(t, Options{FailureDelay: base})
	before := e.upstreamAuths()
	tries := 0
	for tries < 50 {
		conn := e.rawIMAPS(t)
		for i := 0; i < maxFailures && tries < 50; i++ {
			tries++
			if got := conn.cmd(t, "a LOGIN "+alice+" wrong-password"); !strings.HasPrefix(got, "a NO [AUTHENTICATIONFAILED]") {
				t.Fatalf("LOGIN with a wrong password = %q, want NO [AUTHENTICATIONFAILED]", got)
			}
		}
		if tries%maxFailures == 0 {
			// After the third failure the bridge says BYE and closes the connection.
			if l, err := conn.r.ReadString('\n'); !strings.HasPrefix(l, "* BYE") {
				t.Fatalf("after %d failures = %q, %v; want BYE", maxFailures, l, err)
			}
			if _, err := conn.r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Fatalf("connection after BYE: %v, want EOF", err)
			}
		}
		conn.Close()
	}
	if got := time.Duration(e.delays.Load()); got < 50*base {
		t.Errorf("total delay for 50 wrong passwords = %v, want ≥ %v", got, 50*base)
	}
	if got := e.upstreamAuths() - before; got != 0 {
		t.Errorf("upstream AUTHENTICATEs for wrong passwords = %d, want 0", got)
	}
	if got := e.auth.grants["grant-alice"].tokens.Load(); got != 0 {
		t.Errorf("token requests for wrong passwords = %d, want 0", got)
	}
}

func TestCloseDeviceEndsConnection(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.dialIMAPS(t, alice, alicePW, nil)
	other := e.dialIMAPS(t, bob, bobPW, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sessions := e.stack.Mail.Stats().Sessions
	e.bridge.CloseDevice("dev-alice")
	if err := c.Noop().Wait(); err == nil {
		t.Fatal("NOOP after CloseDevice succeeded, want the connection closed")
	}
	select {
	case <-c.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("client not closed after CloseDevice")
	}
	// Bob's device keeps working, and alice's upstream connection went too.
	if err := other.Noop().Wait(); err != nil {
		t.Errorf("other device's NOOP after CloseDevice(alice) = %v", err)
	}
	waitFor(t, "the upstream session to close", func() bool { return e.stack.Mail.Stats().Sessions == sessions-1 })
	e.bridge.CloseGrant("grant-bob")
	if err := other.Noop().Wait(); err == nil {
		t.Error("NOOP after CloseGrant succeeded, want the connection closed")
	}
}

func TestSignInAgainAndUnavailable(t *testing.T) {
	e := newEnv(t, Options{PublicURL: "https://mail.example.test/"})
	e.auth.signIn["dev-alice"] = true
	conn := e.rawIMAPS(t)
	if got, want := conn.cmd(t, "a LOGIN "+alice+" "+alicePW), "a NO [AUTHENTICATIONFAILED] sign in again at https://mail.example.test/devices"; got != want {
		t.Errorf("LOGIN of a device whose grant needs sign-in = %q, want %q", got, want)
	}
	// A grant that ended at the token source gives the same answer, after no upstream attempt.
	e.auth.grants["grant-bob"].ended = true
	before := e.upstreamAuths()
	if got := conn.cmd(t, "b LOGIN "+bob+" "+bobPW); !strings.HasSuffix(got, "sign in again at https://mail.example.test/devices") {
		t.Errorf("LOGIN of a device whose grant ended = %q", got)
	}
	if n := e.upstreamAuths() - before; n != 0 {
		t.Errorf("upstream AUTHENTICATEs = %d, want 0", n)
	}
	// The mail server down: UNAVAILABLE.
	e.auth.signIn["dev-alice"] = false
	e.stack.Mail.Close()
	if got := conn.cmd(t, "c LOGIN "+alice+" "+alicePW); !strings.HasPrefix(got, "c NO [UNAVAILABLE]") {
		t.Errorf("LOGIN with the mail server down = %q, want NO [UNAVAILABLE]", got)
	}
}

// TestRefusedTokenRetriedOnce: a stale token is replaced once (a refresh at the IdP), and the login succeeds.
func TestRefusedTokenRetriedOnce(t *testing.T) {
	e := newEnv(t, Options{})
	g := e.auth.grants["grant-alice"]
	g.tok.AccessToken = "stale-token"
	before := e.upstreamAuths()
	e.dialIMAPS(t, alice, alicePW, nil)
	if got := e.upstreamAuths() - before; got != 2 {
		t.Errorf("upstream AUTHENTICATEs with a stale token = %d, want 2 (the refusal and the retry)", got)
	}
}

func TestPreLoginConversation(t *testing.T) {
	e := newEnv(t, Options{})
	raw, err := net.Dial("tcp", e.imap)
	if err != nil {
		t.Fatal(err)
	}
	conn := &rawClient{Conn: raw, r: bufio.NewReader(raw)}
	defer conn.Close()
	greeting, _ := conn.r.ReadString('\n')
	if !strings.Contains(greeting, "LOGINDISABLED") || strings.Contains(greeting, "AUTH=") || !strings.Contains(greeting, "STARTTLS") {
		t.Errorf("cleartext greeting = %q, want STARTTLS and LOGINDISABLED, no AUTH=", greeting)
	}
	if got := conn.cmd(t, "a LOGIN "+alice+" "+alicePW); !strings.HasPrefix(got, "a NO [PRIVACYREQUIRED]") {
		t.Errorf("LOGIN in cleartext = %q, want NO [PRIVACYREQUIRED]", got)
	}
	if got := conn.cmd(t, `b ID ("name" "Thunderbird" "version" "128.0")`); got != "b OK done" {
		t.Errorf("ID = %q", got)
	}
	if got := conn.cmd(t, "c SELECT INBOX"); !strings.HasPrefix(got, "c BAD") {
		t.Errorf("SELECT before login = %q, want BAD", got)
	}
	if got := conn.cmd(t, "d STARTTLS"); got != "d OK begin TLS" {
		t.Fatalf("STARTTLS = %q", got)
	}
	tc := tls.Client(raw, e.client)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS after STARTTLS: %v", err)
	}
	conn = &rawClient{Conn: tc, r: bufio.NewReader(tc)}
	io.WriteString(conn, "e CAPABILITY\r\n")
	capl, _ := conn.r.ReadString('\n')
	if !strings.Contains(capl, "AUTH=PLAIN") || strings.Contains(capl, "LOGINDISABLED") {
		t.Errorf("CAPABILITY under TLS = %q, want AUTH=PLAIN and no LOGINDISABLED", capl)
	}
	conn.r.ReadString('\n')
	// AUTHENTICATE PLAIN in the continuation form, the password as a literal in the SASL response.
	io.WriteString(conn, "f AUTHENTICATE PLAIN\r\n")
	if l, _ := conn.r.ReadString('\n'); !strings.HasPrefix(l, "+") {
		t.Fatalf("AUTHENTICATE PLAIN = %q, want a continuation request", l)
	}
	if got := conn.cmd(t, plainB64("", alice, alicePW)); !strings.HasPrefix(got, "f OK [CAPABILITY ") || !strings.Contains(got, "IDLE") {
		t.Fatalf("AUTHENTICATE PLAIN = %q, want OK with the upstream's capabilities", got)
	}
	// Now spliced: the upstream answers, and the bridge recorded the client's ID.
	if got := conn.cmd(t, "g NOOP"); !strings.HasPrefix(got, "g OK") {
		t.Errorf("NOOP after login = %q", got)
	}
}

func TestLoginWithLiteralAndSASLIR(t *testing.T) {
	e := newEnv(t, Options{})
	rec := &recorder{}
	e.bridge.opts.Recorder = rec
	conn := e.rawIMAPS(t)
	conn.cmd(t, `x ID ("name" "K-9 Mail" "version" "6.8")`)
	io.WriteString(conn, "a LOGIN {"+itoa(len(alice))+"}\r\n")
	if l, _ := conn.r.ReadString('\n'); !strings.HasPrefix(l, "+") {
		t.Fatalf("literal = %q, want a continuation request", l)
	}
	if got := conn.cmd(t, alice+" {"+itoa(len(alicePW))+"+}\r\n"+alicePW); !strings.HasPrefix(got, "a OK [CAPABILITY") {
		t.Fatalf("LOGIN with literals = %q", got)
	}
	if rec.device != "dev-alice" || rec.client != "K-9 Mail 6.8" || !rec.from.IsLoopback() {
		t.Errorf("Recorder saw %+v, want dev-alice from loopback as K-9 Mail 6.8", rec)
	}
	conn2 := e.rawIMAPS(t)
	if got := conn2.cmd(t, "b AUTHENTICATE PLAIN "+plainB64(alice, alice, alicePW)); !strings.HasPrefix(got, "b OK [CAPABILITY") {
		t.Fatalf("AUTHENTICATE PLAIN with SASL-IR = %q", got)
	}
}

func TestConnectionCaps(t *testing.T) {
	e := newEnv(t, Options{MaxConnsPerDevice: 2, MaxConns: 4})
	e.dialIMAPS(t, alice, alicePW, nil)
	e.dialIMAPS(t, alice, alicePW, nil)
	conn := e.rawIMAPS(t)
	if got := conn.cmd(t, "a LOGIN "+alice+" "+alicePW); got != "a NO [LIMIT] too many connections for this device" {
		t.Errorf("third connection of a device capped at 2 = %q", got)
	}
	e.rawIMAPS(t) // the fourth connection in all
	raw, err := tls.Dial("tcp", e.imaps, e.client)
	if err == nil {
		l, _ := bufio.NewReader(raw).ReadString('\n')
		raw.Close()
		if !strings.HasPrefix(l, "* BYE [UNAVAILABLE]") {
			t.Errorf("fifth connection with MaxConns 4 = %q, want BYE [UNAVAILABLE]", l)
		}
	}
}

func TestReloadCertificate(t *testing.T) {
	e := newEnv(t, Options{})
	certFile, keyFile, client := writeCert(t)
	e.bridge.opts.CertFile, e.bridge.opts.KeyFile = certFile, keyFile
	if _, err := tls.Dial("tcp", e.imaps, client); err == nil {
		t.Fatal("the new certificate was served before the reload")
	}
	if err := e.bridge.ReloadCertificate(); err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", e.imaps, client)
	if err != nil {
		t.Fatalf("dial after ReloadCertificate: %v", err)
	}
	c.Close()
	e.bridge.opts.KeyFile = certFile // not a key: the reload fails, the pair in use stays
	if err := e.bridge.ReloadCertificate(); err == nil {
		t.Error("ReloadCertificate with a broken key succeeded")
	}
	if c, err := tls.Dial("tcp", e.imaps, client); err != nil {
		t.Errorf("dial after a failed reload: %v", err)
	} else {
		c.Close()
	}
}

// TestSTARTTLSInjection: commands sent in cleartext together with STARTTLS must not run under TLS (CVE-2011-0411).
func TestSTARTTLSInjection(t *testing.T) {
	e := newEnv(t, Options{})
	raw, err := net.Dial("tcp", e.imap)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	r := bufio.NewReader(raw)
	r.ReadString('\n')
	io.WriteString(raw, "a STARTTLS\r\nb LOGIN "+alice+" "+alicePW+"\r\n")
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS = %q", l)
	}
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after STARTTLS with injected data: %v, want the connection closed", err)
	}
}

func TestPreLoginTimeout(t *testing.T) {
	e := newEnv(t, Options{PreLoginTimeout: 100 * time.Millisecond})
	conn := e.rawIMAPS(t)
	// The client says nothing more: the bridge closes the connection (the test waits for it, it does not time it).
	if _, err := conn.r.ReadString('\n'); err == nil {
		t.Error("read after the pre-login timeout succeeded, want the connection closed")
	}
	// A logged-in connection is not bound by it: the deadline is cleared at login.
	c := e.dialIMAPS(t, alice, alicePW, nil)
	time.Sleep(300 * time.Millisecond) // three pre-login timeouts
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("NOOP on a logged-in connection after the pre-login timeout: %v", err)
	}
}

// TestUpstreamDropEndsClient: when the mail server drops the session, the client's connection ends too.
func TestUpstreamDropEndsClient(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.dialIMAPS(t, alice, alicePW, nil)
	if n := e.stack.Mail.DropConnections(alice); n != 1 {
		t.Fatalf("DropConnections = %d, want 1", n)
	}
	select {
	case <-c.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("client connection still open after the upstream dropped")
	}
	waitFor(t, "the bridge to forget the connection", func() bool { return e.bridge.Conns() == 0 })
}

// TestLogsHoldNoSecrets runs good and bad logins with a logger and looks for the password and token in its output.
func TestLogsHoldNoSecrets(t *testing.T) {
	var buf syncBuffer
	e := newEnv(t, Options{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	e.dialIMAPS(t, alice, alicePW, nil)
	conn := e.rawIMAPS(t)
	conn.cmd(t, "a LOGIN "+alice+" not-"+alicePW)
	e.auth.grants["grant-bob"].tok.AccessToken = "stale-bob-token"
	e.auth.grants["grant-bob"].ended = false
	conn.cmd(t, "b LOGIN "+bob+" "+bobPW)
	out := buf.String()
	if !strings.Contains(out, "imap login") {
		t.Fatalf("no login logged: %q", out)
	}
	tok, _ := e.auth.grants["grant-alice"].Token(t.Context())
	for _, secret := range []string{alicePW, bobPW, tok.Token, "stale-bob-token"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains a secret: %q", out)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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
