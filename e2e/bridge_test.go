//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/internal/testcert"
	"github.com/postern/postern/mail"
)

// The bridge (issue 11) against real mail clients: Python's imaplib and smtplib, curl and isync's mbsync sign in to
// `postern serve`'s bridge with a device password, and the bridge speaks to Dovecot and Postfix with the device's
// own grant from Hydra. Each client runs as a subprocess; what it saw comes back as JSON lines (Python) or as its
// own output (curl, mbsync), and the test judges it.

// bridgeHost is the name the clients connect to and the bridge certificate names. mbsync (isync 1.4) matches a
// certificate's DNS names only, not IP SANs, hence a name rather than 127.0.0.1.
const bridgeHost = "localhost"

// bridged is a running Postern with the bridge on, and a browser signed in to it as alice.
type bridged struct {
	*instance
	tb *testbed
	// IMAPS and Submissions are the implicit-TLS ports, IMAP and Submission the STARTTLS ones.
	IMAPS, IMAP, Submissions, Submission int
	// CA is the PEM file of the throwaway CA that signed the bridge's certificate (the clients trust only it).
	CA      string
	Delay   time.Duration // bridge.failure_delay
	browser *browser
}

// bridgeCert writes a throwaway CA and a leaf for bridgeHost and 127.0.0.1; every client trusts only that CA.
func bridgeCert(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	return testcert.New(t, bridgeHost, "127.0.0.1").Write(t, dir, "")
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBridge runs `postern serve` (client postern, 127.0.0.1:18080) with all four bridge listeners and
// bridge.failure_delay = delay, waits for the listeners, and signs alice in with a browser on the Devices page.
func startBridge(t *testing.T, tb *testbed, delay time.Duration) *bridged {
	t.Helper()
	dir := t.TempDir()
	ca, cert, key := bridgeCert(t, dir)
	bp := &bridged{tb: tb, CA: ca, Delay: delay,
		IMAPS: freePort(t), IMAP: freePort(t), Submissions: freePort(t), Submission: freePort(t)}
	extra := fmt.Sprintf(`bridge:
  host: %s
  imaps_listen: 127.0.0.1:%d
  imap_listen: 127.0.0.1:%d
  submissions_listen: 127.0.0.1:%d
  submission_listen: 127.0.0.1:%d
  cert_file: %s
  key_file: %s
  max_connections: 200
  max_connections_per_device: 20
  max_devices_per_user: 10
  prelogin_timeout: 30s
  failure_delay: %s
`, bridgeHost, bp.IMAPS, bp.IMAP, bp.Submissions, bp.Submission, cert, key, delay)
	bp.instance = startPostern(t, tb, posternOptions{Listen: "127.0.0.1:18080", Client: tb.postern(), Extra: extra})
	for _, port := range []int{bp.IMAPS, bp.IMAP, bp.Submissions, bp.Submission} {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		err := eventually(15*time.Second, 100*time.Millisecond, func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			t.Fatalf("bridge listener %s: %v", addr, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bp.browser = newBrowser(t)
	resp, page := bp.browser.signInForm(ctx, t, bp.URL+"/devices", "alice", "alice-password")
	if got := resp.Request.URL.String(); got != bp.URL+"/devices" || resp.StatusCode != http.StatusOK {
		t.Fatalf("after sign-in: at %s with status %d, want the Devices page; page: %.300s", got, resp.StatusCode, visibleText(page))
	}
	if strings.Contains(page, `id="bridge-off"`) {
		t.Fatalf("the Devices page says the bridge is off: %.300s", visibleText(page))
	}
	return bp
}

// device is a device connected on the Devices page: its id and the password the page showed once.
type device struct{ ID, Password string }

var devicePassword = regexp.MustCompile(`<output id="device-password"><code>([^<]+)</code></output>`)

// connectDevice connects a device named name the way a user does: "Connect a device" on the Devices page, the
// device's own authorization flow at Hydra (login form, consent), back to the Devices page, which shows the
// password once.
func (bp *bridged) connectDevice(ctx context.Context, t *testing.T, name string) device {
	t.Helper()
	b := bp.browser
	resp, page := b.post(ctx, t, bp.URL+"/devices", url.Values{"name": {name}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Host == strings.TrimPrefix(bp.URL, "http://") {
		t.Fatalf("Connect a device: ended at %s with status %d, want the IdP's login page; page: %.300s", resp.Request.URL, resp.StatusCode, visibleText(page))
	}
	resp, page = bp.idpLogin(ctx, t, resp, page)
	m := devicePassword.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("device flow for %q: ended at %s with status %d and no password shown; page: %.500s", name, resp.Request.URL, resp.StatusCode, visibleText(page))
	}
	pw := html.UnescapeString(m[1])
	id, _, ok := strings.Cut(pw, "-")
	if !ok || !strings.Contains(page, `id="device-`+id+`"`) {
		t.Fatalf("device %q: password %d chars does not start with an id listed on the page", name, len(pw))
	}
	return device{ID: id, Password: pw}
}

// idpLogin fills in the IdP's login form that resp and page are, as alice, and follows the redirects back to
// Postern. A device flow is an authorization of its own (prompt=consent): the testbed's login app never remembers a
// login, so the user signs in again, as at Authelia with a device flow.
func (bp *bridged) idpLogin(ctx context.Context, t *testing.T, resp *http.Response, page string) (*http.Response, string) {
	t.Helper()
	f, err := idp.ParseForm([]byte(page))
	if err != nil {
		t.Fatalf("login page %s: %v", resp.Request.URL, err)
	}
	action, err := resp.Request.URL.Parse(f.Action)
	if err != nil {
		t.Fatal(err)
	}
	f.Values.Set("username", "alice")
	f.Values.Set("password", "alice-password")
	return bp.browser.post(ctx, t, action.String(), f.Values)
}

// deviceGrant returns the grant Postern holds for the device, read from Postern's store.
func (bp *bridged) deviceGrant(t *testing.T, st grantStore, d device) store.Grant {
	t.Helper()
	ds, ok := st.(interface {
		Device(ctx context.Context, id string) (store.Device, error)
	})
	if !ok {
		t.Fatalf("store %T has no Device method", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, err := ds.Device(ctx, d.ID)
	if err != nil {
		t.Fatalf("device %s: %v", d.ID, err)
	}
	g, err := st.Grant(ctx, rec.GrantID)
	if err != nil {
		t.Fatalf("grant of device %s: %v", d.ID, err)
	}
	if g.Kind != store.KindDevice {
		t.Fatalf("grant of device %s has kind %q, want %q", d.ID, g.Kind, store.KindDevice)
	}
	return g
}

// revokeDevice presses the device's Revoke button.
func (bp *bridged) revokeDevice(ctx context.Context, t *testing.T, d device) {
	t.Helper()
	resp, page := bp.browser.post(ctx, t, bp.URL+"/devices/"+d.ID+"/revoke", nil)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/devices" || !strings.Contains(page, `id="notice"`) {
		t.Fatalf("revoke %s: ended at %s with status %d; page: %.300s", d.ID, resp.Request.URL, resp.StatusCode, visibleText(page))
	}
}

// env is what every client script is told: where the bridge is and whom to sign in as. The password goes in the
// environment, not on a command line other processes can read.
func (bp *bridged) env(d device, extra ...string) []string {
	return append(append(os.Environ(),
		"BR_HOST="+bridgeHost,
		fmt.Sprintf("BR_IMAPS=%d", bp.IMAPS), fmt.Sprintf("BR_IMAP=%d", bp.IMAP),
		fmt.Sprintf("BR_SUBMISSIONS=%d", bp.Submissions), fmt.Sprintf("BR_SUBMISSION=%d", bp.Submission),
		"BR_CA="+bp.CA, "BR_USER="+alice, "BR_PASS="+d.Password,
	), extra...)
}

// pyPrelude is shared by the Python scripts: settings from the environment, TLS that trusts only the bridge's CA
// (with host name checks), and out(), one JSON object per line on stdout.
const pyPrelude = `
import imaplib, smtplib, ssl, os, sys, json, time, socket
HOST = os.environ["BR_HOST"]
USER, PW = os.environ["BR_USER"], os.environ["BR_PASS"]
CTX = ssl.create_default_context(cafile=os.environ["BR_CA"])
def out(**kw):
    print(json.dumps(kw), flush=True)
def imaps(pw=None):
    m = imaplib.IMAP4_SSL(HOST, int(os.environ["BR_IMAPS"]), ssl_context=CTX, timeout=30)
    if pw is not None:
        m.login(USER, pw)
    return m
def msg(frm, subject, body="sent by the bridge e2e suite"):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@e2e.postern.test>\r\n"
            "Date: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n" % (
            frm, USER, subject, subject.replace(" ", "."), time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()), body)).encode()
def s(x):
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)
`

// pyRun is a Python script running as a subprocess, its JSON lines arriving on Lines.
type pyRun struct {
	cmd   *exec.Cmd
	Lines chan map[string]any
	done  chan struct{}
	mu    sync.Mutex
	all   []string // every stdout line
	err   strings.Builder
	wait  error
}

// startPython runs pyPrelude + script with python3.
func startPython(ctx context.Context, t *testing.T, env []string, script string) *pyRun {
	t.Helper()
	path := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(path, []byte(pyPrelude+script), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &pyRun{Lines: make(chan map[string]any, 1000), done: make(chan struct{})}
	r.cmd = exec.CommandContext(ctx, "python3", path)
	r.cmd.Env = env
	r.cmd.Stderr = &lockedWriter{mu: &r.mu, b: &r.err}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("python3: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.all = append(r.all, line)
			r.mu.Unlock()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				r.Lines <- m
			}
		}
		r.wait = r.cmd.Wait()
		close(r.Lines)
		close(r.done)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
	})
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// output is what the script printed, for failure messages.
func (r *pyRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.all, "\n") + "\nstderr:\n" + r.err.String()
}

// next waits for the script's line of the given step.
func (r *pyRun) next(t *testing.T, step string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-r.Lines:
			if !ok {
				t.Fatalf("python ended (%v) before step %q:\n%s", r.wait, step, r.output())
			}
			if m["step"] == step {
				return m
			}
			if m["step"] == "error" {
				t.Fatalf("python failed before step %q: %v\n%s", step, m["error"], r.output())
			}
		case <-deadline:
			t.Fatalf("python: no step %q within %v:\n%s", step, timeout, r.output())
		}
	}
}

// finish waits for the script to end and fails the test unless it exited 0.
func (r *pyRun) finish(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("python did not end within %v:\n%s", timeout, r.output())
	}
	if r.wait != nil {
		t.Fatalf("python: %v\n%s", r.wait, r.output())
	}
}

// runPython runs a script to its end and returns its steps by name (the last of each).
func runPython(ctx context.Context, t *testing.T, env []string, script string) map[string]map[string]any {
	t.Helper()
	r := startPython(ctx, t, env, script)
	steps := map[string]map[string]any{}
	for m := range r.Lines {
		steps[fmt.Sprint(m["step"])] = m
	}
	<-r.done
	if r.wait != nil {
		t.Fatalf("python: %v\n%s", r.wait, r.output())
	}
	return steps
}

// str and num read a step's field.
func str(m map[string]any, k string) string { return fmt.Sprint(m[k]) }

func strs(m map[string]any, k string) []string {
	var out []string
	if l, ok := m[k].([]any); ok {
		for _, v := range l {
			out = append(out, fmt.Sprint(v))
		}
	}
	return out
}

// aliceToken is an access token of alice's own, from a direct authorization flow: the test's way to look into
// Dovecot without the bridge.
func (bp *bridged) aliceToken(t *testing.T) string {
	t.Helper()
	return bp.tb.directLogin(t, bp.tb.postern(), "alice", "alice-password").Access
}

// TestBridgeIMAPPython drives Python's imaplib through the bridge with a device password: LOGIN over implicit TLS,
// CAPABILITY, LIST, APPEND, SELECT, SEARCH, FETCH, STORE, MOVE, EXPUNGE, and an IDLE that must wake when a message
// is delivered through Dovecot submission, Postfix and LMTP; then the STARTTLS listener, which must refuse LOGIN
// before TLS (LOGINDISABLED).
func TestBridgeIMAPPython(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bp := startBridge(t, tb, 10*time.Millisecond)
	d := bp.connectDevice(ctx, t, "imaplib")
	bobTok := tb.directLogin(t, tb.postern(), "bob", "bob-password")
	subject := "bridge imaplib " + randomString()[:8]

	start := time.Now()
	r := startPython(ctx, t, bp.env(d, "BR_SUBJECT="+subject), `
try:
    SUBJ = os.environ["BR_SUBJECT"]
    M = imaps()
    out(step="greeting", caps=sorted(M.capabilities))
    typ, data = M.login(USER, PW)
    out(step="login", typ=typ, resp=s(data[0]))
    typ, data = M.capability()
    out(step="capability", typ=typ, caps=s(data[0]).split())
    typ, data = M.list()
    out(step="list", typ=typ, boxes=[s(x) for x in data])
    typ, data = M.append("INBOX", None, imaplib.Time2Internaldate(time.time()), msg(USER, SUBJ, "hello from imaplib"))
    out(step="append", typ=typ, resp=s(data[0]))
    typ, data = M.select("INBOX")
    out(step="select", typ=typ, exists=int(data[0]))
    typ, data = M.uid("SEARCH", "HEADER", "Subject", '"%s"' % SUBJ)
    uids = data[0].split()
    out(step="search", typ=typ, uids=[s(u) for u in uids])
    uid = uids[-1]
    typ, data = M.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
    body = data[0][1]
    out(step="fetch", typ=typ, meta=s(data[0][0]), subject=SUBJ.encode() in body, text=b"hello from imaplib" in body)
    typ, data = M.uid("STORE", uid, "+FLAGS", r"(\Flagged \Seen)")
    typ, data = M.uid("FETCH", uid, "(FLAGS)")
    out(step="store", typ=typ, flags=s(data[0]))
    typ, data = M.uid("MOVE", uid, "Archive")
    out(step="move", typ=typ, resp=[s(x) for x in data])
    typ, data = M.uid("SEARCH", "HEADER", "Subject", '"%s"' % SUBJ)
    out(step="inbox_after_move", uids=s(data[0]).split())
    typ, data = M.select("Archive")
    typ, data = M.uid("SEARCH", "HEADER", "Subject", '"%s"' % SUBJ)
    auids = data[0].split()
    out(step="archive_after_move", uids=[s(u) for u in auids])
    typ, data = M.uid("STORE", auids[-1], "+FLAGS", r"(\Deleted)")
    typ, data = M.expunge()
    out(step="expunge", typ=typ, resp=[s(x) for x in data if x])
    typ, data = M.uid("SEARCH", "HEADER", "Subject", '"%s"' % SUBJ)
    out(step="archive_after_expunge", uids=s(data[0]).split())

    # IDLE (RFC 2177): imaplib before Python 3.14 has no idle(), so the exchange is written by hand.
    M.select("INBOX")
    tag = M._new_tag()
    M.send(tag + b" IDLE\r\n")
    cont = M.readline()
    out(step="idling", cont=s(cont).strip())
    t0 = time.time()
    woke = ""
    while True:
        line = M.readline()
        if not line:
            break
        if s(line).strip().endswith("EXISTS"):
            woke = s(line).strip()
            break
    out(step="woke", line=woke, secs=time.time() - t0)
    M.send(b"DONE\r\n")
    while True:
        line = M.readline()
        if not line or line.startswith(tag):
            break
    out(step="idle_done", line=s(line).strip())
    typ, data = M.logout()
    out(step="logout", typ=typ)

    # STARTTLS listener: no credentials before TLS.
    P = imaplib.IMAP4(HOST, int(os.environ["BR_IMAP"]), timeout=30)
    before = sorted(P.capabilities)
    try:
        P.login(USER, PW)
        plain_login = "accepted"
    except Exception as e:
        plain_login = s(e)
    P.starttls(ssl_context=CTX)
    typ, data = P.login(USER, PW)
    typ2, data2 = P.list()
    out(step="starttls", before=before, plain_login=plain_login, typ=typ, list=typ2, n=len(data2))
    P.logout()
except Exception as e:
    out(step="error", error="%s: %s" % (type(e).__name__, e))
    sys.exit(1)
`)
	r.next(t, "greeting", 30*time.Second)
	login := r.next(t, "login", 30*time.Second)
	t.Logf("LOGIN with the device password: %s (%v after start)", str(login, "typ"), time.Since(start).Round(time.Millisecond))
	caps := strs(r.next(t, "capability", 10*time.Second), "caps")
	// After login the capabilities are the upstream's (Dovecot's), not the bridge's pre-login set.
	for _, c := range []string{"IDLE", "MOVE", "UIDPLUS", "LITERAL+"} {
		if !contains(caps, c) {
			t.Errorf("CAPABILITY after login = %v, want %s (Dovecot's, spliced through)", caps, c)
		}
	}
	if contains(caps, "LOGINDISABLED") || contains(caps, "AUTH=PLAIN") {
		t.Errorf("CAPABILITY after login = %v, still the pre-login set", caps)
	}
	boxes := strings.Join(strs(r.next(t, "list", 10*time.Second), "boxes"), "\n")
	for _, b := range []string{"INBOX", "Archive", "Sent", "Trash"} {
		if !strings.Contains(boxes, b) {
			t.Errorf("LIST = %s, want %s", boxes, b)
		}
	}
	if a := r.next(t, "append", 10*time.Second); str(a, "typ") != "OK" || !strings.Contains(str(a, "resp"), "APPENDUID") {
		t.Errorf("APPEND = %v, want OK [APPENDUID …]", a)
	}
	if sel := r.next(t, "select", 10*time.Second); str(sel, "typ") != "OK" || sel["exists"].(float64) < 1 {
		t.Errorf("SELECT INBOX = %v, want OK with the appended message", sel)
	}
	if s := r.next(t, "search", 10*time.Second); len(strs(s, "uids")) != 1 {
		t.Errorf("UID SEARCH for the appended subject = %v, want one UID", s)
	}
	if f := r.next(t, "fetch", 10*time.Second); f["subject"] != true || f["text"] != true {
		t.Errorf("UID FETCH BODY.PEEK[] = %v, want the appended message", f)
	}
	if s := r.next(t, "store", 10*time.Second); !strings.Contains(str(s, "flags"), `\Flagged`) || !strings.Contains(str(s, "flags"), `\Seen`) {
		t.Errorf("FLAGS after UID STORE +FLAGS = %v, want \\Flagged and \\Seen", s)
	}
	if m := r.next(t, "move", 10*time.Second); str(m, "typ") != "OK" {
		t.Errorf("UID MOVE = %v, want OK", m)
	}
	if u := strs(r.next(t, "inbox_after_move", 10*time.Second), "uids"); len(u) != 0 {
		t.Errorf("INBOX still has the moved message: %v", u)
	}
	if u := strs(r.next(t, "archive_after_move", 10*time.Second), "uids"); len(u) != 1 {
		t.Errorf("Archive after MOVE has %v, want the message", u)
	}
	if e := r.next(t, "expunge", 10*time.Second); str(e, "typ") != "OK" || len(strs(e, "resp")) != 1 {
		t.Errorf("EXPUNGE = %v, want OK with one expunged message", e)
	}
	if u := strs(r.next(t, "archive_after_expunge", 10*time.Second), "uids"); len(u) != 0 {
		t.Errorf("Archive after EXPUNGE still has %v", u)
	}

	idling := r.next(t, "idling", 10*time.Second)
	if !strings.HasPrefix(str(idling, "cont"), "+") {
		t.Fatalf("IDLE answered %q, want a continuation", str(idling, "cont"))
	}
	// Deliver while the client idles: Dovecot submission → Postfix → LMTP, nothing through the bridge.
	sent := time.Now()
	wake := "bridge idle " + randomString()[:8]
	if err := send(ctx, tb.mailServer(tb.SubmissionPort, mail.TLSImplicit, mail.MechOAuthBearer), bobTok.Access, wake); err != nil {
		t.Fatalf("deliver a message as bob: %v", err)
	}
	woke := r.next(t, "woke", 30*time.Second)
	if !strings.HasSuffix(str(woke, "line"), "EXISTS") {
		t.Errorf("IDLE ended without an EXISTS: %v", woke)
	}
	t.Logf("IDLE woke %v after the message was submitted (%s)", time.Since(sent).Round(time.Millisecond), str(woke, "line"))
	if done := r.next(t, "idle_done", 10*time.Second); !strings.Contains(str(done, "line"), "OK") {
		t.Errorf("DONE answered %v, want the IDLE's tagged OK", done)
	}
	st := r.next(t, "starttls", 30*time.Second)
	if !contains(strs(st, "before"), "LOGINDISABLED") || !contains(strs(st, "before"), "STARTTLS") {
		t.Errorf("capabilities before STARTTLS = %v, want STARTTLS and LOGINDISABLED", st["before"])
	}
	if str(st, "plain_login") == "accepted" {
		t.Errorf("LOGIN over the plaintext connection was accepted")
	}
	if str(st, "typ") != "OK" || str(st, "list") != "OK" {
		t.Errorf("LOGIN and LIST after STARTTLS = %v, want OK", st)
	}
	r.finish(t, 30*time.Second)
	t.Logf("imaplib session through the bridge: %v", time.Since(start).Round(time.Millisecond))
	assertNoSecrets(t, "postern's log", bp.Log(), d.Password)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// TestBridgeSMTPPython sends with Python's smtplib through the SMTP bridge: AUTH PLAIN with the device password over
// implicit TLS (465 style) and over STARTTLS (587 style, no AUTH offered before TLS), both messages arrive in
// alice's INBOX at Dovecot, and a MAIL FROM of another address is refused with 550.
func TestBridgeSMTPPython(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bp := startBridge(t, tb, 10*time.Millisecond)
	d := bp.connectDevice(ctx, t, "smtplib")
	tag := randomString()[:8]
	implicit, starttls, spoof := "bridge smtps "+tag, "bridge starttls "+tag, "bridge spoof "+tag

	start := time.Now()
	steps := runPython(ctx, t, bp.env(d, "BR_S1="+implicit, "BR_S2="+starttls, "BR_S3="+spoof), `
try:
    c = smtplib.SMTP_SSL(HOST, int(os.environ["BR_SUBMISSIONS"]), context=CTX, timeout=30)
    c.ehlo("imac.example.test")
    out(step="ehlo", auth=c.esmtp_features.get("auth", ""))
    c.user, c.password = USER, PW
    code, resp = c.auth("PLAIN", c.auth_plain, initial_response_ok=True)
    out(step="auth", code=code)
    refused = c.sendmail(USER, [USER], msg(USER, os.environ["BR_S1"]))
    out(step="send", refused=len(refused))
    try:
        c.sendmail("bob@example.test", [USER], msg("bob@example.test", os.environ["BR_S3"]))
        out(step="spoof", code=250)
    except smtplib.SMTPSenderRefused as e:
        out(step="spoof", code=e.smtp_code, text=s(e.smtp_error))
    c.quit()

    p = smtplib.SMTP(HOST, int(os.environ["BR_SUBMISSION"]), timeout=30)
    p.ehlo("imac.example.test")
    before = {"starttls": p.has_extn("starttls"), "auth": p.has_extn("auth")}
    p.starttls(context=CTX)
    p.ehlo("imac.example.test")
    p.user, p.password = USER, PW
    code, resp = p.auth("PLAIN", p.auth_plain, initial_response_ok=True)
    refused = p.sendmail(USER, [USER], msg(USER, os.environ["BR_S2"]))
    out(step="starttls", before=before, code=code, refused=len(refused))
    p.quit()
except Exception as e:
    out(step="error", error="%s: %s" % (type(e).__name__, e))
    sys.exit(1)
`)
	t.Logf("smtplib sessions: %v", time.Since(start).Round(time.Millisecond))
	if e := steps["ehlo"]; !strings.Contains(strings.ToUpper(str(e, "auth")), "PLAIN") {
		t.Errorf("EHLO over TLS offers AUTH %q, want PLAIN", str(e, "auth"))
	}
	if a := steps["auth"]; a["code"] != float64(235) {
		t.Errorf("AUTH PLAIN with the device password = %v, want 235", a)
	}
	if s := steps["send"]; s["refused"] != float64(0) {
		t.Errorf("sendmail refused recipients: %v", s)
	}
	if s := steps["spoof"]; s["code"] != float64(550) {
		t.Errorf("MAIL FROM another address = %v, want 550", s)
	} else {
		t.Logf("MAIL FROM bob@example.test: 550 %s", str(s, "text"))
	}
	st := steps["starttls"]
	if before, _ := st["before"].(map[string]any); before["starttls"] != true || before["auth"] != false {
		t.Errorf("EHLO before STARTTLS = %v, want STARTTLS offered and no AUTH", st["before"])
	}
	if st["code"] != float64(235) || st["refused"] != float64(0) {
		t.Errorf("AUTH and send after STARTTLS = %v, want 235 and no refusal", st)
	}
	sent := time.Now()
	waitForSubjects(t, tb, bp.aliceToken(t), implicit, starttls)
	t.Logf("both messages in alice's INBOX at Dovecot %v after sending", time.Since(sent).Round(time.Millisecond))
	if maildirHas(filepath.Join(tb.Dir, "mail", alice, "Maildir"), spoof) {
		t.Errorf("the message with MAIL FROM bob was delivered")
	}
	assertNoSecrets(t, "postern's log", bp.Log(), d.Password)
}

// curl runs curl with the bridge's CA and the device's credentials in a config file (not on the command line).
func (bp *bridged) curl(ctx context.Context, t *testing.T, d device, args ...string) (string, error) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "curlrc")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("user = \"%s:%s\"\ncacert = \"%s\"\n", alice, d.Password, bp.CA)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--max-time", "30", "-K", cfg}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBridgeCurl uses curl's IMAP and SMTP: smtps:// sends a message with the device password, imaps:// lists the
// mailboxes, searches INBOX for the message and fetches it; STARTTLS (imap:// and smtp:// with --ssl-reqd) too; a
// wrong password is refused (curl exit 67, login denied).
func TestBridgeCurl(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bp := startBridge(t, tb, 10*time.Millisecond)
	d := bp.connectDevice(ctx, t, "curl")
	subject := "bridge curl " + randomString()[:8]
	msgFile := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(msgFile, []byte(message(alice, alice, subject)), 0o600); err != nil {
		t.Fatal(err)
	}
	imaps := fmt.Sprintf("imaps://%s:%d", bridgeHost, bp.IMAPS)
	smtps := fmt.Sprintf("smtps://%s:%d", bridgeHost, bp.Submissions)

	start := time.Now()
	if out, err := bp.curl(ctx, t, d, "--login-options", "AUTH=PLAIN", "--mail-from", alice, "--mail-rcpt", alice, "-T", msgFile, smtps); err != nil {
		t.Fatalf("curl smtps:// send: %v\n%s", err, out)
	}
	t.Logf("curl smtps:// send: %v", time.Since(start).Round(time.Millisecond))
	waitForSubjects(t, tb, bp.aliceToken(t), subject)

	out, err := bp.curl(ctx, t, d, imaps+"/")
	if err != nil || !strings.Contains(out, "INBOX") || !strings.Contains(out, "Archive") {
		t.Fatalf("curl imaps:// LIST = %v\n%s", err, out)
	}
	out, err = bp.curl(ctx, t, d, imaps+"/INBOX?"+url.PathEscape(`HEADER Subject "`+subject+`"`))
	m := regexp.MustCompile(`\* SEARCH ([0-9]+)\s*$`).FindStringSubmatch(strings.TrimSpace(out))
	if err != nil || m == nil {
		t.Fatalf("curl imaps:// SEARCH = %v\n%s", err, out)
	}
	out, err = bp.curl(ctx, t, d, imaps+"/INBOX;MAILINDEX="+m[1])
	if err != nil || !strings.Contains(out, "Subject: "+subject) || !strings.Contains(out, "Sent by Postern's end-to-end suite.") {
		t.Fatalf("curl imaps:// FETCH message %s = %v\n%.500s", m[1], err, out)
	}
	// STARTTLS listeners, TLS required.
	out, err = bp.curl(ctx, t, d, "--ssl-reqd", fmt.Sprintf("imap://%s:%d/", bridgeHost, bp.IMAP))
	if err != nil || !strings.Contains(out, "INBOX") {
		t.Errorf("curl imap:// STARTTLS LIST = %v\n%s", err, out)
	}
	subject2 := subject + " starttls"
	if err := os.WriteFile(msgFile, []byte(message(alice, alice, subject2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := bp.curl(ctx, t, d, "--ssl-reqd", "--mail-from", alice, "--mail-rcpt", alice, "-T", msgFile, fmt.Sprintf("smtp://%s:%d", bridgeHost, bp.Submission)); err != nil {
		t.Errorf("curl smtp:// STARTTLS send: %v\n%s", err, out)
	} else {
		waitForSubjects(t, tb, bp.aliceToken(t), subject2)
	}
	// A wrong password (the last character changed; it may already have been "x"): curl's "login denied".
	out, err = bp.curl(ctx, t, device{ID: d.ID, Password: wrongPassword(d.Password)}, imaps+"/")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 67 {
		t.Errorf("curl imaps:// with a wrong password = %v, want exit 67 (login denied)\n%s", err, out)
	}
	t.Logf("curl scenario: %v", time.Since(start).Round(time.Millisecond))
	assertNoSecrets(t, "postern's log", bp.Log(), d.Password)
}

// appendMany appends n small messages to a new mailbox through the bridge in one pipelined burst (LITERAL+, RFC
// 7888), which also exercises the splice with pipelined literals.
func (bp *bridged) appendMany(ctx context.Context, t *testing.T, d device, box string, n int) {
	t.Helper()
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", bp.IMAPS))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pem, _ := os.ReadFile(bp.CA)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tc := tlsClient(conn, roots)
	tc.SetDeadline(time.Now().Add(2 * time.Minute))
	r := bufio.NewReader(tc)
	w := bufio.NewWriterSize(tc, 64<<10)
	readTagged := func(tag string) string {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("append %s: reading for %s: %v", box, tag, err)
			}
			if strings.HasPrefix(line, tag+" ") {
				return strings.TrimSpace(line)
			}
		}
	}
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "L LOGIN %s %s\r\n", quote(alice), quote(d.Password))
	w.Flush()
	if got := readTagged("L"); !strings.HasPrefix(got, "L OK") {
		t.Fatalf("LOGIN: %s", got)
	}
	fmt.Fprintf(w, "C CREATE %s\r\n", box)
	w.Flush()
	if got := readTagged("C"); !strings.HasPrefix(got, "C OK") {
		t.Fatalf("CREATE %s: %s", box, got)
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := 1; i <= n; i++ {
			m := message(bob, alice, fmt.Sprintf("bulk %d of %d", i, n))
			fmt.Fprintf(w, "A%d APPEND %s {%d+}\r\n%s\r\n", i, box, len(m), m)
		}
		w.Flush()
	}()
	defer func() { tc.Close(); <-written }() // a failed test closes the connection, which ends the writer
	for i := 1; i <= n; i++ {
		if got := readTagged(fmt.Sprintf("A%d", i)); !strings.HasPrefix(got, fmt.Sprintf("A%d OK", i)) {
			t.Fatalf("APPEND %d: %s", i, got)
		}
	}
	<-written
	fmt.Fprintf(w, "Z LOGOUT\r\n")
	w.Flush()
}

func quote(s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` }

// mbsyncCounters matches the near side's part of mbsync's progress line: messages added, flags set, messages
// trashed, done/total each ("C: 1/1  B: 1/1  F: +0/0 *0/0 #0/0  N: +1000/1000 *0/0 #0/0" in isync 1.4.4; later
// versions add expunges, "-0/0").
var mbsyncCounters = regexp.MustCompile(`N: \+(\d+)/(\d+) \*(\d+)/(\d+) #(\d+)/(\d+)(?: -(\d+)/(\d+))?`)

// maildirFiles lists the message files of a Maildir folder (cur and new).
func maildirFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files := map[string]bool{}
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range ents {
			files[sub+"/"+e.Name()] = true
		}
	}
	return files
}

// TestBridgeMbsync mirrors a 1,000-message folder with isync's mbsync through the bridge (IMAPS, the device
// password, certificate checked against the bridge's CA), then runs it again: the second run must transfer nothing.
func TestBridgeMbsync(t *testing.T) {
	tb := peers(t)
	if _, err := exec.LookPath("mbsync"); err != nil {
		t.Fatalf("mbsync is not installed (scripts/testbed-up installs isync): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bp := startBridge(t, tb, 10*time.Millisecond)
	d := bp.connectDevice(ctx, t, "mbsync")
	const n = 1000
	box := "Bulk" + randomString()[:8]
	start := time.Now()
	bp.appendMany(ctx, t, d, box, n)
	t.Logf("APPEND of %d messages through the bridge: %v", n, time.Since(start).Round(time.Millisecond))

	dir := t.TempDir()
	local := filepath.Join(dir, "mail")
	if err := os.MkdirAll(local, 0o700); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "password")
	writeSecret(t, pwFile, d.Password+"\n")
	rc := filepath.Join(dir, "mbsyncrc")
	writeSecret(t, rc, fmt.Sprintf(`IMAPAccount bridge
Host %s
Port %d
User %s
PassCmd "cat %s"
SSLType IMAPS
CertificateFile %s
AuthMechs LOGIN
PipelineDepth 50

IMAPStore far
Account bridge

MaildirStore near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel bulk
Far :far:
Near :near:
Patterns %s
Create Near
Sync Pull
SyncState *
`, bridgeHost, bp.IMAPS, alice, pwFile, bp.CA, local, local, box))
	run := func(name string) (counters []string, took time.Duration) {
		t.Helper()
		start := time.Now()
		// mbsync prints its progress counters only to a terminal: give it one with script(1).
		cmd := exec.CommandContext(ctx, "script", "-qefc", "mbsync -V -c "+rc+" bulk", "/dev/null")
		cmd.Env = append(os.Environ(), "COLUMNS=200")
		out, err := cmd.CombinedOutput()
		took = time.Since(start)
		if err != nil {
			t.Fatalf("mbsync (%s): %v\n%s", name, err, tail(string(out), 3000))
		}
		all := mbsyncCounters.FindAllStringSubmatch(string(out), -1)
		if len(all) == 0 {
			t.Fatalf("mbsync (%s): no progress counters in its output:\n%s", name, tail(string(out), 3000))
		}
		t.Logf("mbsync %s run: %v; %s", name, took.Round(time.Millisecond), all[len(all)-1][0])
		return all[len(all)-1][1:], took
	}
	c, took := run("first")
	files := maildirFiles(t, filepath.Join(local, box))
	if len(files) != n || c[0] != fmt.Sprint(n) {
		t.Errorf("first run: %d files in the local Maildir, %s messages added (counters %v), want %d", len(files), c[0], c, n)
	}
	if took > time.Minute {
		t.Errorf("first run took %v, want well under a minute", took)
	}
	c, _ = run("second")
	again := maildirFiles(t, filepath.Join(local, box))
	if c[0] != "0" || c[1] != "0" || c[2] != "0" || c[3] != "0" || c[4] != "0" || c[5] != "0" || (c[6] != "" && c[6] != "0") {
		t.Errorf("second run changed the near side: counters %v, want all zero", c)
	}
	if len(again) != len(files) {
		t.Errorf("second run: %d files, want the same %d", len(again), len(files))
	}
	for f := range again {
		if !files[f] {
			t.Errorf("second run wrote %s", f)
			break
		}
	}
	assertNoSecrets(t, "postern's log", bp.Log(), d.Password)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// pyIdle is a script that logs in through the bridge, selects INBOX, starts IDLE, says so, and reports when and how
// the connection ends.
const pyIdle = `
try:
    M = imaps(PW)
    M.select("INBOX")
    tag = M._new_tag()
    M.send(tag + b" IDLE\r\n")
    out(step="idling", cont=s(M.readline()).strip())
    M.sock.settimeout(60)
    last = ""
    while True:
        try:
            line = M.readline()
        except Exception as e:
            out(step="closed", how="%s" % type(e).__name__, last=last)
            break
        if not line:
            out(step="closed", how="eof", last=last)
            break
        last = s(line).strip()
except Exception as e:
    out(step="error", error="%s: %s" % (type(e).__name__, e))
    sys.exit(1)
`

// pyLogin tries one LOGIN with the environment's password and reports the answer.
const pyLogin = `
try:
    M = imaps()
    try:
        typ, data = M.login(USER, PW)
        typ, boxes = M.list()
        typ2, n = M.select("INBOX")
        out(step="login", ok=True, list=typ, select=typ2)
        M.logout()
    except imaplib.IMAP4.error as e:
        out(step="login", ok=False, answer=s(e))
except Exception as e:
    out(step="error", error="%s: %s" % (type(e).__name__, e))
    sys.exit(1)
`

// pySMTPAuth tries AUTH PLAIN on the implicit-TLS submission port and reports the code.
const pySMTPAuth = `
try:
    c = smtplib.SMTP_SSL(HOST, int(os.environ["BR_SUBMISSIONS"]), context=CTX, timeout=30)
    c.ehlo("e2e.example.test")
    c.user, c.password = USER, PW
    try:
        code, resp = c.auth("PLAIN", c.auth_plain, initial_response_ok=True)
        out(step="auth", code=code)
    except smtplib.SMTPAuthenticationError as e:
        out(step="auth", code=e.smtp_code, text=s(e.smtp_error))
    c.close()
except Exception as e:
    out(step="error", error="%s: %s" % (type(e).__name__, e))
    sys.exit(1)
`

// TestBridgeRevoke revokes a device on the Devices page while it idles on an IMAP connection through the bridge: the
// connection must be closed within a second, the next login with its password must fail with AUTHENTICATIONFAILED,
// and its grant must be inactive at Hydra, while the browser session and another device keep working.
func TestBridgeRevoke(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bp := startBridge(t, tb, 10*time.Millisecond)
	laptop := bp.connectDevice(ctx, t, "Laptop")
	phone := bp.connectDevice(ctx, t, "Phone")
	st := bp.openStore(t)
	g := bp.deviceGrant(t, st, laptop)
	if in := tb.introspect(t, g.RefreshToken); !in.Active {
		t.Fatalf("the laptop's refresh token is inactive at Hydra before the revocation")
	}

	r := startPython(ctx, t, bp.env(laptop), pyIdle)
	if c := r.next(t, "idling", 30*time.Second); !strings.HasPrefix(str(c, "cont"), "+") {
		t.Fatalf("IDLE answered %v", c)
	}
	start := time.Now()
	bp.revokeDevice(ctx, t, laptop)
	pressed := time.Since(start)
	closed := r.next(t, "closed", 10*time.Second)
	took := time.Since(start)
	t.Logf("revoke: the Revoke POST took %v; the idling connection ended %v after it was sent (%s, last line %q)",
		pressed.Round(time.Millisecond), took.Round(time.Millisecond), str(closed, "how"), str(closed, "last"))
	if took > time.Second {
		t.Errorf("the revoked device's connection closed %v after Revoke, want within 1 s", took)
	}
	r.finish(t, 10*time.Second)

	// Its password no longer opens anything.
	l := runPython(ctx, t, bp.env(laptop), pyLogin)["login"]
	if l["ok"] != false || !strings.Contains(str(l, "answer"), "AUTHENTICATIONFAILED") {
		t.Errorf("login with the revoked device's password = %v, want NO [AUTHENTICATIONFAILED]", l)
	}
	// Nor the SMTP bridge.
	if a := runPython(ctx, t, bp.env(laptop), pySMTPAuth)["auth"]; a["code"] != float64(535) {
		t.Errorf("SMTP AUTH with the revoked device's password = %v, want 535", a)
	}
	// Its grant is gone at the IdP.
	if in := tb.introspect(t, g.RefreshToken); in.Active {
		t.Errorf("the revoked device's refresh token is still active at Hydra")
	}
	if in := tb.introspect(t, g.AccessToken); in.Active {
		t.Errorf("the revoked device's access token is still active at Hydra")
	}
	// The other device and the browser session are untouched.
	if l := runPython(ctx, t, bp.env(phone), pyLogin)["login"]; l["ok"] != true || str(l, "select") != "OK" {
		t.Errorf("the other device after the revocation: %v, want a working login", l)
	}
	page := bp.inbox(ctx, t, bp.browser)
	if !strings.Contains(page, alice) {
		t.Errorf("the browser session's inbox page does not show alice after the revocation")
	}
	_, page = bp.browser.get(ctx, t, bp.URL+"/devices")
	if !regexp.MustCompile(`(?s)id="device-` + laptop.ID + `".*?revoked`).MatchString(page) {
		t.Errorf("the Devices page does not show the laptop as revoked: %.500s", visibleText(page))
	}
	assertNoSecrets(t, "postern's log", bp.Log(), laptop.Password, phone.Password, g.AccessToken, g.RefreshToken)
}

// TestBridgeSignOut signs the browser out: the device keeps working (its own grant, still active at Hydra). Then the
// provider revokes the device's grant behind Postern's back: the device's next login gets the "sign in again at
// …/devices" answer, and "Sign in again" on the Devices page gives it a new grant under the same password.
func TestBridgeSignOut(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bp := startBridge(t, tb, 10*time.Millisecond)
	d := bp.connectDevice(ctx, t, "Tablet")
	st := bp.openStore(t)
	web := bp.grantOf(t, kindFilter{st, store.KindWeb}, "alice")
	dg := bp.deviceGrant(t, st, d)

	resp, _ := bp.browser.post(ctx, t, bp.URL+"/logout", nil)
	if resp.Request.URL.Path != "/signed-out" {
		t.Fatalf("POST /logout ended at %s", resp.Request.URL)
	}
	if in := tb.introspect(t, web.RefreshToken); in.Active {
		t.Errorf("the browser grant's refresh token is still active after sign-out")
	}
	if in := tb.introspect(t, dg.RefreshToken); !in.Active {
		t.Errorf("the device's refresh token is inactive at Hydra after the browser signed out")
	}
	if l := runPython(ctx, t, bp.env(d), pyLogin)["login"]; l["ok"] != true || str(l, "list") != "OK" || str(l, "select") != "OK" {
		t.Fatalf("the device after the browser signed out: %v, want a working login", l)
	}

	// The provider ends the grant (an administrator, or the user elsewhere): RFC 7009 revocation of its refresh
	// token, which at Hydra ends its access token too.
	cur := bp.deviceGrant(t, st, d)
	tb.revoke(t, tb.postern(), cur.RefreshToken)
	l := runPython(ctx, t, bp.env(d), pyLogin)["login"]
	want := "sign in again at " + bp.URL + "/devices"
	if l["ok"] != false || !strings.Contains(str(l, "answer"), "AUTHENTICATIONFAILED") || !strings.Contains(str(l, "answer"), want) {
		t.Errorf("login after the provider revoked the device's grant = %v, want NO [AUTHENTICATIONFAILED] %s", l, want)
	}
	// Dovecot refused the revoked token once: clear its per-IP penalty for the next tests.
	bobTok := tb.directLogin(t, tb.postern(), "bob", "bob-password")
	resetPenalty(t, tb, mail.Credentials{Address: bob, Token: bobTok.Access})

	// Where the answer sends the user: sign in to the Devices page, which offers "Sign in again" for the device; a
	// new grant of its own, and the mail app works again with the password it has.
	resp, page := bp.browser.signInForm(ctx, t, bp.URL+"/devices", "alice", "alice-password")
	if resp.Request.URL.String() != bp.URL+"/devices" || !strings.Contains(page, `action="/devices/`+d.ID+`/reconnect"`) {
		t.Fatalf("the Devices page after the provider ended the device's grant offers no \"Sign in again\" for it: %.500s", visibleText(page))
	}
	resp, page = bp.browser.post(ctx, t, bp.URL+"/devices/"+d.ID+"/reconnect", nil)
	resp, page = bp.idpLogin(ctx, t, resp, page)
	if resp.Request.URL.Path != "/devices" || !strings.Contains(page, `id="notice"`) {
		t.Fatalf("Sign in again ended at %s with status %d: %.300s", resp.Request.URL, resp.StatusCode, visibleText(page))
	}
	if l := runPython(ctx, t, bp.env(d), pyLogin)["login"]; l["ok"] != true || str(l, "select") != "OK" {
		t.Errorf("the device after \"Sign in again\", same password: %v, want a working login", l)
	}
	again := bp.deviceGrant(t, st, d)
	if again.ID == cur.ID {
		t.Errorf("Sign in again kept the ended grant %s", cur.ID)
	}
	assertNoSecrets(t, "postern's log", bp.Log(), d.Password, dg.AccessToken, dg.RefreshToken, cur.AccessToken, cur.RefreshToken, again.AccessToken, again.RefreshToken)
}

// kindFilter is a grantStore whose GrantsBySubject returns grants of one kind only.
type kindFilter struct {
	grantStore
	kind store.GrantKind
}

func (k kindFilter) GrantsBySubject(ctx context.Context, issuer, subject string) ([]string, error) {
	ids, err := k.grantStore.GrantsBySubject(ctx, issuer, subject)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		g, err := k.Grant(ctx, id)
		if err != nil {
			return nil, err
		}
		if g.Kind == k.kind {
			out = append(out, id)
		}
	}
	return out, nil
}

// dovecotUpstream matches what Dovecot logs for any IMAP connection or authentication attempt: login-process lines
// (a login, a failed one, a disconnect before login) and the auth process's passdb lines.
var dovecotUpstream = regexp.MustCompile(`(?m)imap-login: |auth: .*oauth2|auth-worker`)

// TestBridgeBruteForce sends 50 wrong passwords for alice from one address through the bridge with Python's imaplib,
// reconnecting whenever the bridge disconnects after three failures. Every refusal must have waited at least its
// delay (bridge.failure_delay, doubling per failure up to 32×), so the attacker pays ≥ 50 × the delay, and Dovecot must not have seen a single connection or
// AUTHENTICATE for them; the one good login after them must show up in Dovecot's log, which proves the log is read.
func TestBridgeBruteForce(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const (
		attempts = 50
		delay    = 10 * time.Millisecond
	)
	bp := startBridge(t, tb, delay)
	d := bp.connectDevice(ctx, t, "Desktop")
	// Connecting the device starts its grant's IMAP login in the background (mail.Pool.Warm), which Dovecot logs;
	// the mark is taken once Dovecot's log has been quiet for a second, so that only the wrong passwords are judged.
	quietLog(t, tb.DovecotLog, time.Second, 15*time.Second)
	dovecot := markLog(t, tb.DovecotLog)

	// Half the guesses are random well-formed passwords, half carry the real device's id with a wrong secret (the
	// bridge finds the device's row and runs argon2id for those).
	start := time.Now()
	steps := runPython(ctx, t, bp.env(d, fmt.Sprintf("BR_N=%d", attempts), "BR_ID="+d.ID), `
import random
N, DEV = int(os.environ["BR_N"]), os.environ["BR_ID"]
ALPHA = "23456789abcdefghjkmnpqrstuvwxyz"
def guess(i):
    groups = ["".join(random.choice(ALPHA) for _ in range(5)) for _ in range(7)]
    if i % 2:
        groups[0] = DEV
    return "-".join(groups)
times, answers, conns = [], {}, 0
M = None
try:
    for i in range(N):
        if M is None:
            M = imaps()
            conns += 1
        t0 = time.monotonic()
        try:
            M.login(USER, guess(i))
            answers["accepted"] = answers.get("accepted", 0) + 1
        except imaplib.IMAP4.abort as e:
            # The bridge said BYE after the third failure, before or with the NO.
            answers["abort"] = answers.get("abort", 0) + 1
            M = None
        except imaplib.IMAP4.error as e:
            k = "AUTHENTICATIONFAILED" if "AUTHENTICATIONFAILED" in s(e) else s(e)
            answers[k] = answers.get(k, 0) + 1
        times.append(time.monotonic() - t0)
        if M is not None and i % 3 == 2:
            # The bridge disconnects after three failures; make sure the next try is on a fresh connection.
            try:
                M.noop()
            except Exception:
                M = None
    out(step="done", times=times, answers=answers, conns=conns)
except Exception as e:
    out(step="error", error="%s: %s" % (type(e).__name__, e))
    sys.exit(1)
`)
	total := time.Since(start)
	done := steps["done"]
	// bridge.failure_delay is the delay of a first failure; it doubles with each further failure from the same
	// address up to 32× (config.example.yml, bridge.Options.FailureDelay). argon2id alone makes a refusal take tens
	// of milliseconds, more than the 10 ms base, so the floor that tells a throttled bridge from an unthrottled one
	// is the whole schedule, not only 50 × the base.
	var sum, schedule time.Duration
	var short []int
	times, _ := done["times"].([]any)
	for i, v := range times {
		dt := time.Duration(v.(float64) * float64(time.Second))
		want := delay << min(i, 5)
		sum += dt
		schedule += want
		if dt < want {
			short = append(short, i+1)
		}
	}
	t.Logf("%d wrong passwords over %v connections: answers %v; time in LOGIN %v (≥ 50 × %v = %v, schedule %v), whole run %v",
		len(times), done["conns"], done["answers"], sum.Round(time.Millisecond), delay, attempts*delay, schedule, total.Round(time.Millisecond))
	if len(times) != attempts {
		t.Fatalf("%d attempts made, want %d", len(times), attempts)
	}
	answers, _ := done["answers"].(map[string]any)
	if answers["accepted"] != nil {
		t.Errorf("a wrong password was accepted: %v", answers)
	}
	if sum < attempts*delay {
		t.Errorf("50 wrong passwords cost %v, want ≥ %v (50 × bridge.failure_delay)", sum, attempts*delay)
	}
	if sum < schedule {
		t.Errorf("50 wrong passwords cost %v, want ≥ %v (the doubling schedule of bridge.failure_delay = %v)", sum, schedule, delay)
	}
	if len(short) > 0 {
		t.Errorf("refusals %v came sooner than their delay (bridge.failure_delay %v, doubling per failure up to 32×)", short, delay)
	}
	if got := dovecotUpstream.FindAllString(dovecot.since(t), -1); len(got) != 0 {
		t.Errorf("Dovecot saw %d connection or authentication lines during the wrong passwords, want 0: %q", len(got), got)
	}

	// The control: a good login is seen upstream, in the same log, by the same pattern.
	mark := markLog(t, tb.DovecotLog)
	if l := runPython(ctx, t, bp.env(d), pyLogin)["login"]; l["ok"] != true {
		t.Fatalf("the right password after the attack: %v, want a login", l)
	}
	err := eventually(5*time.Second, 100*time.Millisecond, func() error {
		logged := mark.since(t)
		if !dovecotUpstream.MatchString(logged) || !strings.Contains(logged, "method=OAUTHBEARER") {
			return fmt.Errorf("dovecot's log after a good bridged login: %q", logged)
		}
		return nil
	})
	if err != nil {
		t.Errorf("the control login is not in Dovecot's log, so its absence proves nothing: %v", err)
	}
	assertNoSecrets(t, "postern's log", bp.Log(), d.Password)
}

// tlsClient wraps c in TLS that trusts only roots and checks the bridge's name.
func tlsClient(c net.Conn, roots *x509.CertPool) *tls.Conn {
	return tls.Client(c, &tls.Config{RootCAs: roots, ServerName: bridgeHost, MinVersion: tls.VersionTLS12})
}

// wrongPassword returns pw with its last character changed, so that it is certainly not pw.
func wrongPassword(pw string) string {
	last := "x"
	if strings.HasSuffix(pw, last) {
		last = "y"
	}
	return pw[:len(pw)-1] + last
}
