package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
)

// The keeper tests run the dev IdP in process (idp.Transport) and a real
// SQLite store inside testing/synctest bubbles, so hours of token lifetimes
// pass in milliseconds and the IdP's clock is the fake clock too.

const (
	keeperIssuer   = "http://idp.test"
	keeperClient   = "postern"
	keeperSecret   = "keeper-secret"
	keeperRedirect = "http://127.0.0.1:9/oauth2/callback"
)

// keeperRSAKey is shared by every IdP of the keeper tests: generating it is
// the slowest part of starting one.
var keeperRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// keeperEnv is a dev IdP, a Provider talking to it through faults, and a
// store file. It must be built inside a synctest bubble.
type keeperEnv struct {
	idp     *idp.IdP
	p       *Provider
	faults  *faults
	path    string
	sealer  *seal.Sealer
	st      *store.SQLite
	browser *http.Client
}

func newKeeperEnv(t *testing.T) *keeperEnv {
	t.Helper()
	return newKeeperEnvTTL(t, 0)
}

// newKeeperEnvTTL is newKeeperEnv with the IdP's access-token lifespan set (0: the default hour).
func newKeeperEnvTTL(t *testing.T, accessTTL time.Duration) *keeperEnv {
	t.Helper()
	ip, err := idp.New(idp.Options{
		AccessTokenLifespan: accessTTL,
		Issuer:              keeperIssuer,
		Users:               []idp.User{{Username: "ann", Password: "pw-ann", Email: "Ann@Example.org", Name: "Ann"}},
		Clients:             []idp.Client{{ID: keeperClient, Secret: keeperSecret, RedirectURIs: []string{keeperRedirect}}},
		SigningKey:          keeperRSAKey(),
	})
	if err != nil {
		t.Fatalf("idp.New() = %v", err)
	}
	f := &faults{next: ip.Transport()}
	p, err := New(t.Context(), Config{Issuer: keeperIssuer, ClientID: keeperClient,
		ClientSecret: keeperSecret, RedirectURL: keeperRedirect}, &http.Client{Transport: f})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	sealer, err := seal.New(map[string][]byte{"k1": make([]byte, seal.KeySize)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	e := &keeperEnv{idp: ip, p: p, faults: f, path: filepath.Join(t.TempDir(), "postern.db"), sealer: sealer}
	e.st = e.openStore(t)
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, Transport: ip.Transport()}
	return e
}

// openStore opens another handle on the env's database file, as a second
// process would.
func (e *keeperEnv) openStore(t *testing.T) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(t.Context(), e.path, e.sealer)
	if err != nil {
		t.Fatalf("OpenSQLite() = %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// keeper returns a Keeper on the env's provider and st, quiet by default.
func (e *keeperEnv) keeper(t *testing.T, st GrantStore, opts KeeperOptions) *Keeper {
	if opts.Logger == nil && os.Getenv("POSTERN_TEST_LOG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	k := NewKeeper(e.p, st, opts)
	settleAtEnd(t, k)
	return k
}

// probeKind chooses how a test keeper settles an unknown outcome.
type probeKind string

const (
	byIntrospection probeKind = "introspection" // RFC 7662 on the refresh token
	byUserinfo      probeKind = "userinfo"      // the fallback: userinfo on the access token
)

// keeperProbing is keeper with the probe chosen.
func (e *keeperEnv) keeperProbing(t *testing.T, st GrantStore, opts KeeperOptions, probe probeKind) *Keeper {
	t.Helper()
	if opts.Logger == nil && os.Getenv("POSTERN_TEST_LOG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var c tokenClient = withoutIntrospection{e.p}
	if probe == byIntrospection {
		if !e.p.CanIntrospect() {
			t.Fatal("the dev IdP offers no introspection")
		}
		c = e.p
	}
	k := newKeeper(c, st, opts)
	settleAtEnd(t, k)
	return k
}

// withoutIntrospection is a Provider whose IdP offers no introspection.
type withoutIntrospection struct{ *Provider }

func (withoutIntrospection) CanIntrospect() bool { return false }
func (withoutIntrospection) Introspect(context.Context, string, string) (bool, error) {
	return false, errors.New("no introspection")
}

// settleAtEnd makes the test wait, before its bubble ends, for the refreshes
// k runs behind page views, as a process's shutdown would.
func settleAtEnd(t *testing.T, k *Keeper) {
	t.Cleanup(func() { settle(k) })
}

// settle waits until no refresh runs detached from its caller.
func settle(k *Keeper) { <-k.calls.idleCh() }

// finish signs ann in at the IdP's pages for the flow f that authURL begins, and finishes it.
func (e *keeperEnv) finish(t *testing.T, f Flow, authURL string) *Login {
	t.Helper()
	loc, err := idp.SignIn(t.Context(), e.browser, authURL, "ann", "pw-ann", true)
	if err != nil {
		t.Fatalf("idp.SignIn() = %v", err)
	}
	l, err := e.p.Finish(t.Context(), f, loc.Query())
	if err != nil {
		t.Fatalf("Finish() = %v", err)
	}
	return l
}

// start signs ann in through the IdP's pages and stores the grant.
func (e *keeperEnv) start(t *testing.T, k *Keeper) string {
	t.Helper()
	f, authURL := e.p.Begin("/")
	l := e.finish(t, f, authURL)
	id, err := k.Start(t.Context(), l)
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	return id
}

// grant reads a grant straight from the store.
func (e *keeperEnv) grant(t *testing.T, id string) store.Grant {
	t.Helper()
	g, err := e.st.Grant(context.Background(), id)
	if err != nil {
		t.Fatalf("store Grant(%s) = %v", id, err)
	}
	return g
}

// sleepUntil advances the fake clock to at.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// runKeeper runs k.Run until the test ends (or stop is called) and checks
// that it returns nil.
func runKeeper(t *testing.T, k *Keeper) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// faults wraps the IdP transport to inject network failures and to watch
// token requests.
type faults struct {
	next http.RoundTripper

	mu          sync.Mutex
	refuse      bool          // every request fails as connection refused (never sent)
	resetToken  int           // this many token requests fail as reset after sending, without reaching the IdP
	tokenDelay  time.Duration // token requests take this long
	tokenTimes  []time.Time   // when each token request started
	inflight    int
	maxInflight int

	// A freeze holds every request until frozenUntil, then hands them to
	// the IdP one by one in arrival order, as a stopped process (SIGSTOP)
	// whose kernel accepted the connections does. A request whose client
	// gave up is still processed (its answer is lost), unless dropGone is
	// set, as a queueing proxy that drops requests of gone clients does.
	frozenUntil time.Time
	dropGone    bool
	lastFrozen  chan struct{} // closed when the previous frozen request is done
}

func (f *faults) RoundTrip(req *http.Request) (*http.Response, error) {
	if frozen, resp, err := f.frozen(req); frozen {
		return resp, err
	}
	token := strings.HasSuffix(req.URL.Path, "/api/oidc/token")
	f.mu.Lock()
	refuse, delay := f.refuse, f.tokenDelay
	reset := token && f.resetToken > 0
	if reset {
		f.resetToken--
	}
	if token {
		f.tokenTimes = append(f.tokenTimes, time.Now())
		f.inflight++
		f.maxInflight = max(f.maxInflight, f.inflight)
	}
	f.mu.Unlock()
	if token {
		defer func() { f.mu.Lock(); f.inflight--; f.mu.Unlock() }()
	}
	switch {
	case refuse:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	case reset:
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	}
	if token && delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		}
	}
	return f.next.RoundTrip(req)
}

// frozen serves req through the freeze, if one is on.
func (f *faults) frozen(req *http.Request) (bool, *http.Response, error) {
	f.mu.Lock()
	until, drop := f.frozenUntil, f.dropGone
	if !time.Now().Before(until) {
		f.mu.Unlock()
		return false, nil, nil
	}
	prev := f.lastFrozen
	done := make(chan struct{})
	f.lastFrozen = done
	f.mu.Unlock()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body) // the IdP's kernel has accepted and buffered the request
	}
	type answer struct {
		resp *http.Response
		err  error
	}
	out := make(chan answer, 1)
	go func() {
		defer close(done)
		sleepUntil(until)
		if prev != nil {
			<-prev
		}
		if drop && req.Context().Err() != nil {
			return
		}
		r := req.Clone(context.Background())
		r.Body = io.NopCloser(bytes.NewReader(body))
		resp, err := f.next.RoundTrip(r)
		out <- answer{resp, err}
	}()
	select {
	case a := <-out:
		return true, a.resp, a.err
	case <-req.Context().Done():
		return true, nil, req.Context().Err() // the answer, if any, goes to a closed connection
	}
}

// freeze holds the IdP for d from now; dropGone as in faults.
func (f *faults) freeze(d time.Duration, dropGone bool) {
	f.set(func(f *faults) { f.frozenUntil, f.dropGone = time.Now().Add(d), dropGone })
}

func (f *faults) set(fn func(f *faults)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// refreshes is the IdP's count of successful refreshes.
func (e *keeperEnv) refreshes() int64 { return e.idp.Stats().Refreshes }

// checkNoReuse fails the test if the IdP ever saw a spent refresh token.
func (e *keeperEnv) checkNoReuse(t *testing.T) {
	t.Helper()
	if s := e.idp.Stats(); s.RefreshReuses != 0 || s.FamilyRevocations != 0 {
		t.Errorf("IdP saw %d refresh-token reuses and %d family revocations, want 0 and 0",
			s.RefreshReuses, s.FamilyRevocations)
	}
}
