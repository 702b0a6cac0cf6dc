//go:build !nodemo

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/store/pgtest"
)

// A fleet is several `postern serve` processes — real processes, so that kill -9 and restarts are real — sharing
// one PostgreSQL database, in front of a dev IdP and dev mail server that run in the test process (so the test can
// read the IdP's counters: refreshes, refresh-token re-uses, family revocations).

// instancesEnv turns on the multi-process tests (they build the binary and run for minutes; .ci/run sets it).
const instancesEnv = "POSTERN_TEST_INSTANCES"

// buildOnce builds the postern binary once per test run.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "postern-fleet-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "postern")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// startPeers starts the dev peers (access tokens living accessLife) with n users, user01…userNN.
func startPeers(t *testing.T, publicURL string, n int, accessLife time.Duration) (*devstack.Stack, []idp.User) {
	t.Helper()
	var users []idp.User
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("user%02d", i)
		users = append(users, idp.User{Username: name, Password: name + "-password", Email: name + "@example.test", Name: name})
	}
	p, err := devstack.Start(devstack.Options{RedirectURIs: []string{publicURL + "/callback"}, Users: users,
		AccessTokenLifespan: accessLife})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, users
}

// fleet is the running instances.
type fleet struct {
	t      *testing.T
	bin    string
	config string
	dsn    string
	addrs  []string
	mu     sync.Mutex
	procs  []*exec.Cmd
	logs   []*bytes.Buffer
	// dials has one lock per instance, read-held by each load request from its balancer's choice of instance until
	// its connection is open; takeOut write-locks it, as a load balancer stops routing to an instance and lets the
	// connections it already routed open before the instance is stopped. Requests already connected are not
	// waited for: serving them while draining is the instance's job, which the restart test checks.
	dials []sync.RWMutex
}

// startFleet writes one configuration for n instances on PostgreSQL and starts them; instance 0's address is the
// public URL (the IdP sends browsers back there), the others are reached directly, as a load balancer would.
func startFleet(t *testing.T, n int, accessLife time.Duration, users int, oidcExtra ...string) (*fleet, *devstack.Stack, []idp.User) {
	t.Helper()
	if os.Getenv(instancesEnv) == "" {
		t.Skipf("multi-instance tests skipped: set %s=1 (and %s)", instancesEnv, pgtest.Env)
	}
	dsn := pgtest.DSN(t)
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, bin: bin, dsn: dsn}
	for range n {
		f.addrs = append(f.addrs, freeAddr(t))
	}
	p, us := startPeers(t, "http://"+f.addrs[0], users, accessLife)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	imapHost, imapPort := splitAddr(p.IMAP)
	smtpHost, smtpPort := splitAddr(p.SMTP)
	cfg := fmt.Sprintf(`server:
  public_url: http://%s
oidc:
  issuer: %s
  client_id: postern
  client_secret: %s
%simap:
  host: %s
  port: %d
  tls: none
smtp:
  host: %s
  port: %d
  tls: none
session:
  secret: 0123456789abcdef0123456789abcdef-fleet
storage:
  driver: postgres
  dsn_file: dsn
  encryption_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
log:
  level: info
`, f.addrs[0], p.IdP.Issuer(), p.ClientSecret, strings.Join(oidcExtra, ""), imapHost, imapPort, smtpHost, smtpPort)
	f.config = filepath.Join(dir, "config.yml")
	if err := os.WriteFile(f.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f.procs = make([]*exec.Cmd, n)
	f.logs = make([]*bytes.Buffer, n)
	f.dials = make([]sync.RWMutex, n)
	for i := range n {
		f.start(i)
	}
	t.Cleanup(func() {
		for i := range f.procs {
			f.stop(i, syscall.SIGKILL)
		}
		if t.Failed() {
			for i, l := range f.logs {
				t.Logf("instance %d log (tail):\n%s", i, tail(l.String(), 3000))
				// The failed requests' causes, which the tail may have scrolled past.
				if failed := linesWith(l.String(), "request failed", 10); failed != "" {
					t.Logf("instance %d failed requests:\n%s", i, failed)
				}
			}
		}
	})
	return f, p, us
}

// linesWith returns the first max lines of s that contain sub.
func linesWith(s, sub string, max int) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) && len(out) < max {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// start starts instance i and waits until it serves.
func (f *fleet) start(i int) {
	f.t.Helper()
	cmd := exec.Command(f.bin, "serve", "-config", f.config)
	cmd.Env = append(os.Environ(), "POSTERN_SERVER_LISTEN="+f.addrs[i])
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &log}, &syncWriter{w: &log}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.procs[i], f.logs[i] = cmd, &log
	f.mu.Unlock()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + f.addrs[i] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("instance %d not ready within 30 s:\n%s", i, tail(log.String(), 2000))
		}
	}
}

// stop signals instance i and waits for it to exit (SIGTERM: a graceful drain; SIGKILL: a crash).
func (f *fleet) stop(i int, sig syscall.Signal) {
	f.mu.Lock()
	cmd := f.procs[i]
	f.procs[i] = nil
	f.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// syncWriter serialises writes from a process's stdout and stderr into one buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// browser is one signed-in user's cookie jar.
type browser struct {
	user idp.User
	hc   *http.Client
}

// signIn signs u in through instance 0 and the dev IdP.
func (f *fleet) signIn(ctx context.Context, u idp.User) *browser {
	f.t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get("http://" + f.addrs[0] + "/login")
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	cb, err := idp.SignIn(ctx, hc, resp.Header.Get("Location"), u.Username, u.Password, true)
	if err != nil {
		f.t.Fatalf("sign in %s: %v", u.Username, err)
	}
	if resp, err = hc.Get(cb.String()); err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("callback for %s = %s", u.Username, resp.Status)
	}
	return &browser{user: u, hc: hc}
}

// outcome classifies one page view.
type outcome int

const (
	viewOK          outcome = iota // 200 with the user's mail
	viewSignedOut                  // sent to sign in: the one thing that must never happen by accident
	viewUnavailable                // a friendly 503
	viewRefused                    // the instance did not answer (stopped or restarting)
	viewOther                      // anything else
	// viewRedial: the request got an idle keep-alive connection that the instance closed as it stopped, and Go's
	// transport re-sent it on a new connection, which the stopped instance refused. A load balancer retries such
	// an idempotent request on another instance (nginx's proxy_next_upstream error, the default), and so does load.
	viewRedial
)

// view asks instance i for b's inbox.
func (f *fleet) view(b *browser, i int) (outcome, string) { return f.viewThen(b, i, func() {}) }

// viewThen is view calling connected once, as soon as the request has its connection (or failed to get one).
func (f *fleet) viewThen(b *browser, i int, connected func()) (outcome, string) {
	once := sync.OnceFunc(connected)
	defer once()
	var reused, redialled atomic.Bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(c httptrace.GotConnInfo) {
			reused.Store(reused.Load() || c.Reused)
			once()
		},
		ConnectStart: func(string, string) { redialled.Store(reused.Load()) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+f.addrs[i]+"/mail/INBOX", nil)
	if err != nil {
		return viewOther, err.Error()
	}
	resp, err := b.hc.Do(req)
	if err != nil && redialled.Load() {
		return viewRedial, err.Error()
	}
	if err != nil {
		return viewRefused, err.Error()
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(b.user.Email)):
		return viewOK, ""
	case resp.StatusCode == http.StatusSeeOther && strings.Contains(resp.Header.Get("Location"), "/login"):
		return viewSignedOut, resp.Header.Get("Location")
	case resp.StatusCode == http.StatusServiceUnavailable:
		return viewUnavailable, ""
	}
	return viewOther, fmt.Sprintf("%s: %.200s", resp.Status, body)
}

// takeOut waits until every request routed to instance i before skip started answering true for it has its
// connection: after that, none will dial it.
func (f *fleet) takeOut(i int) {
	f.dials[i].Lock()
	f.dials[i].Unlock()
}

// load drives random views of random users on random instances (skipping those in skip) with a concurrency that
// changes every half second, until stop returns true or ctx ends, and counts the outcomes per instance.
func (f *fleet) load(ctx context.Context, users []*browser, stop func() bool, skip func(i int) bool) map[outcome]int {
	var mu sync.Mutex
	counts := map[outcome]int{}
	var examples []string
	var redials atomic.Int32
	var wg sync.WaitGroup
	for !stop() && ctx.Err() == nil {
		workers := 1 + rand.IntN(2*len(f.addrs)+4)
		until := time.Now().Add(500 * time.Millisecond)
		for range workers {
			wg.Go(func() {
				for time.Now().Before(until) && ctx.Err() == nil {
					u := users[rand.IntN(len(users))]
					i := rand.IntN(len(f.addrs))
					f.dials[i].RLock()
					if skip != nil && skip(i) {
						f.dials[i].RUnlock()
						continue
					}
					o, why := f.viewThen(u, i, f.dials[i].RUnlock)
					for try := 1; o == viewRedial && try < 2*len(f.addrs); try++ {
						redials.Add(1)
						i = (i + 1) % len(f.addrs)
						f.dials[i].RLock()
						if skip != nil && skip(i) {
							f.dials[i].RUnlock()
							continue
						}
						o, why = f.viewThen(u, i, f.dials[i].RUnlock)
					}
					mu.Lock()
					counts[o]++
					if o != viewOK && len(examples) < 10 {
						examples = append(examples, fmt.Sprintf("instance %d: %d %s", i, o, why))
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	if n := redials.Load(); n > 0 {
		f.t.Logf("views re-sent to another instance after a stopping one closed their idle connection: %d", n)
	}
	if len(examples) > 0 {
		f.t.Logf("non-OK views (first %d): %q", len(examples), examples)
	}
	return counts
}
