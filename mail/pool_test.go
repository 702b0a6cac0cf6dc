package mail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// errNoReplacement is what the test token sources answer to Replace: they have no other token, so their token
// stays refused.
var errNoReplacement = fmt.Errorf("%w: test source has no other token", ErrAuthFailed)

// tokenFunc is a TokenSource whose Token is the function and that has nothing to replace a refused token with.
type tokenFunc func(context.Context) (Credentials, error)

func (f tokenFunc) Token(ctx context.Context) (Credentials, error) { return f(ctx) }

func (f tokenFunc) Replace(context.Context, Credentials) (Credentials, error) {
	return Credentials{}, errNoReplacement
}

// credsFor returns a token source for a fixed address and token.
func credsFor(addr, token string) TokenSource {
	return tokenFunc(func(context.Context) (Credentials, error) { return Credentials{addr, token}, nil })
}

func newTestPool(t *testing.T, e *env, opts PoolOptions) *Pool {
	t.Helper()
	p := NewPool(e.imapServer(TLSNone, MechOAuthBearer), opts)
	t.Cleanup(func() { p.Close() })
	return p
}

func noop(ctx context.Context) func(*Session) error {
	return func(s *Session) error { return s.Noop(ctx) }
}

func checkStats(t *testing.T, p *Pool, want PoolStats) {
	t.Helper()
	if got := p.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestPoolReusesOneLogin(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{})
	ctx := ctxT(t)
	for i := range 20 {
		if err := p.Do(ctx, "grant-a", credsFor(alice, aliceToken), noop(ctx)); err != nil {
			t.Fatalf("Do #%d: %v", i, err)
		}
	}
	checkStats(t, p, PoolStats{Open: 1, Idle: 1, Logins: 1, Reuses: 19})
	if got := e.idp.calls.Load(); got != 1 {
		t.Errorf("userinfo calls = %d, want 1", got)
	}
}

func TestPoolCloseKey(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{})
	ctx := ctxT(t)
	// Two concurrent sessions for alice, one for bob.
	hold := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), func(*Session) error { <-hold; return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, "two alice sessions", func() bool { return p.Stats().Open == 2 })
	close(hold)
	wg.Wait()
	if err := p.Do(ctx, "bob", credsFor(bobAddr, bobToken), noop(ctx)); err != nil {
		t.Fatal(err)
	}
	checkStats(t, p, PoolStats{Open: 3, Idle: 3, Logins: 3})

	p.CloseKey("alice")
	checkStats(t, p, PoolStats{Open: 1, Idle: 1, Logins: 3})
	waitFor(t, "server to see one session", func() bool { return e.srv.Stats().Sessions == 1 })
	p.CloseKey("bob")
	checkStats(t, p, PoolStats{Open: 0, Idle: 0, Logins: 3})
	waitFor(t, "server to see no session", func() bool { return e.srv.Stats().Sessions == 0 })
}

func TestPoolCloseKeyWhileInUse(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{})
	ctx := ctxT(t)
	err := p.Do(ctx, "alice", credsFor(alice, aliceToken), func(*Session) error {
		p.CloseKey("alice") // sign-out while a request is running
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkStats(t, p, PoolStats{Open: 0, Idle: 0, Logins: 1})
}

func TestPoolReap(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{IdleTimeout: time.Minute})
	ctx := ctxT(t)
	if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), noop(ctx)); err != nil {
		t.Fatal(err)
	}
	p.Reap(time.Now().Add(30 * time.Second))
	checkStats(t, p, PoolStats{Open: 1, Idle: 1, Logins: 1})
	p.Reap(time.Now().Add(61 * time.Second))
	checkStats(t, p, PoolStats{Open: 0, Idle: 0, Logins: 1})
	waitFor(t, "server to see no session", func() bool { return e.srv.Stats().Sessions == 0 })
}

func TestPoolMaxPerUser(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{MaxPerUser: 2})
	ctx := ctxT(t)
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			err := p.Do(ctx, "alice", credsFor(alice, aliceToken), func(s *Session) error {
				n := cur.Add(1)
				defer cur.Add(-1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				if st := p.Stats(); st.Open > 2 {
					t.Errorf("Open = %d while running, want <= 2", st.Open)
				}
				time.Sleep(10 * time.Millisecond)
				return s.Noop(ctx)
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if peak.Load() != 2 {
		t.Errorf("peak concurrency = %d, want 2", peak.Load())
	}
	st := p.Stats()
	if st.Logins != 2 || st.Open != 2 || st.Reuses != 10 {
		t.Errorf("Stats() = %+v, want 2 logins, 2 open, 10 reuses", st)
	}
}

func TestPoolMaxTotalEvictsLeastRecentlyUsed(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{MaxTotal: 2})
	ctx := ctxT(t)
	do := func(key, addr, token string) {
		t.Helper()
		if err := p.Do(ctx, key, credsFor(addr, token), noop(ctx)); err != nil {
			t.Fatal(err)
		}
	}
	do("alice", alice, aliceToken)
	do("bob", bobAddr, bobToken)
	do("carol", carolAddr, carolToken) // evicts alice, the least recently used
	checkStats(t, p, PoolStats{Open: 2, Idle: 2, Logins: 3})
	do("bob", bobAddr, bobToken) // still pooled
	checkStats(t, p, PoolStats{Open: 2, Idle: 2, Logins: 3, Reuses: 1})
	do("alice", alice, aliceToken) // dials again, evicting carol
	do("bob", bobAddr, bobToken)
	checkStats(t, p, PoolStats{Open: 2, Idle: 2, Logins: 4, Reuses: 2})
}

func TestPoolWaitsWhenFull(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{MaxPerUser: 1})
	ctx := ctxT(t)
	inUse, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- p.Do(ctx, "alice", credsFor(alice, aliceToken), func(*Session) error {
			close(inUse)
			<-release
			return nil
		})
	}()
	<-inUse

	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	called := false
	err := p.Do(short, "alice", credsFor(alice, aliceToken), func(*Session) error { called = true; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || called {
		t.Fatalf("Do() on a full key = %v (fn called %v), want context.DeadlineExceeded", err, called)
	}

	// A waiter gets the session as soon as it is released.
	waiter := make(chan error)
	go func() { waiter <- p.Do(ctx, "alice", credsFor(alice, aliceToken), noop(ctx)) }()
	time.Sleep(10 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-waiter; err != nil {
		t.Fatal(err)
	}
	checkStats(t, p, PoolStats{Open: 1, Idle: 1, Logins: 1, Reuses: 1})
}

func TestPoolDiscardsBrokenSessions(t *testing.T) {
	appErr := errors.New("message not found")
	tests := []struct {
		name     string
		fn       func(*Session) error
		wantKept bool
	}{
		{"app error keeps session", func(*Session) error { return appErr }, true},
		{"NO reply keeps session", func(s *Session) error {
			_, err := s.Summaries(context.Background(), "missing", 1)
			return err
		}, true},
		{"closed connection discards", func(*Session) error { return fmt.Errorf("fetch: %w", net.ErrClosed) }, false},
		{"dead connection discards", func(s *Session) error {
			s.conn.Close()
			return s.Noop(context.Background())
		}, false},
		{"dead connection with app error discards", func(s *Session) error {
			s.conn.Close()
			s.Noop(context.Background())
			return appErr
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, mailserver.Options{})
			p := newTestPool(t, e, PoolOptions{})
			ctx := ctxT(t)
			if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), tt.fn); err == nil {
				t.Fatal("Do() = nil, want fn's error")
			}
			want := PoolStats{Logins: 1}
			if tt.wantKept {
				want.Open, want.Idle = 1, 1
			}
			checkStats(t, p, want)
			// Either way the next Do works.
			if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), noop(ctx)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPoolChecksStaleSession(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{CheckAfter: time.Nanosecond})
	ctx := ctxT(t)
	if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), noop(ctx)); err != nil {
		t.Fatal(err)
	}
	// The server goes away under the idle session (e.g. its autologout).
	p.mu.Lock()
	p.idle["alice"][0].s.conn.Close()
	p.mu.Unlock()
	called := 0
	if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), func(s *Session) error { called++; return s.Noop(ctx) }); err != nil {
		t.Fatalf("Do() after the server dropped the idle session = %v", err)
	}
	if called != 1 {
		t.Errorf("fn called %d times, want 1", called)
	}
	checkStats(t, p, PoolStats{Open: 1, Idle: 1, Logins: 2})
}

func TestPoolAuthFailure(t *testing.T) {
	credsErr := errors.New("needs sign-in")
	tests := []struct {
		name      string
		creds     TokenSource
		want      error
		wantFails int64
	}{
		{"refused token", credsFor(alice, "revoked"), ErrAuthFailed, 1},
		{"no credentials", tokenFunc(func(context.Context) (Credentials, error) { return Credentials{}, credsErr }), credsErr, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, mailserver.Options{})
			p := newTestPool(t, e, PoolOptions{MaxPerUser: 1})
			ctx := ctxT(t)
			called := false
			err := p.Do(ctx, "alice", tt.creds, func(*Session) error { called = true; return nil })
			if !errors.Is(err, tt.want) || called {
				t.Fatalf("Do() = %v (fn called %v), want %v", err, called, tt.want)
			}
			checkStats(t, p, PoolStats{AuthFailures: tt.wantFails})
			// The slot was freed: a good token works with MaxPerUser 1.
			if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), noop(ctx)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPoolClose(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{})
	ctx := ctxT(t)
	if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), noop(ctx)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	checkStats(t, p, PoolStats{Logins: 1})
	if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), noop(ctx)); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("Do() after Close() = %v, want ErrPoolClosed", err)
	}
	waitFor(t, "server to see no session", func() bool { return e.srv.Stats().Sessions == 0 })
}

func TestPoolFnPanics(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{MaxPerUser: 1})
	ctx := ctxT(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic was swallowed")
			}
		}()
		p.Do(ctx, "alice", credsFor(alice, aliceToken), func(*Session) error { panic("boom") })
	}()
	checkStats(t, p, PoolStats{Logins: 1})
	if err := p.Do(ctx, "alice", credsFor(alice, aliceToken), noop(ctx)); err != nil {
		t.Fatalf("Do() after a panic = %v", err)
	}
}

// TestPoolServerStopsAnswering: a server that stops answering in the middle of a page view fails the command
// after Server.CommandTimeout and frees the connection, instead of holding a pooled slot for ever (issue 10,
// finding 2); once it answers again, so does the pool.
func TestPoolServerStopsAnswering(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	if err := e.srv.Seed(alice); err != nil {
		t.Fatal(err)
	}
	srv := e.imapServer(TLSNone, MechOAuthBearer)
	srv.CommandTimeout = 100 * time.Millisecond
	p := NewPool(srv, PoolOptions{MaxPerUser: 1})
	t.Cleanup(func() { p.Close() })
	// A long deadline, only so that a regression fails instead of hanging: the command timeout must end the wait.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	list := func(s *Session) error { _, err := s.Mailboxes(ctx); return err }
	if err := p.Do(ctx, "g1", credsFor(alice, aliceToken), list); err != nil {
		t.Fatal(err)
	}
	e.srv.Stall(true)
	err := p.Do(ctx, "g1", credsFor(alice, aliceToken), list)
	if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || !isConnError(err) {
		t.Fatalf("Do() against a stalled server = %v, want the command timeout (a connection error)", err)
	}
	if st := p.Stats(); st.Open != 0 {
		t.Errorf("Stats() = %+v after the timeout, want the connection released", st)
	}
	e.srv.Stall(false)
	if err := p.Do(ctx, "g1", credsFor(alice, aliceToken), list); err != nil {
		t.Errorf("Do() once the server answers again = %v", err)
	}
}

// TestPoolWarm: a Do that arrives while Warm is dialling for the same grant waits for that session instead of
// logging in a second time; Warm on a grant with an idle session does nothing.
func TestPoolWarm(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{})
	ctx := ctxT(t)
	dialing, release := make(chan struct{}, 4), make(chan struct{})
	p.dial = func(ctx context.Context, srv Server, c Credentials) (*Session, error) {
		dialing <- struct{}{}
		<-release
		return Dial(ctx, srv, c)
	}
	warmed := make(chan struct{})
	go func() {
		defer close(warmed)
		p.Warm(ctx, "grant-a", credsFor(alice, aliceToken))
	}()
	<-dialing
	did := make(chan error, 1)
	go func() { did <- p.Do(ctx, "grant-a", credsFor(alice, aliceToken), noop(ctx)) }()
	select {
	case <-dialing:
		t.Fatal("Do dialled a second session while Warm was dialling")
	case err := <-did:
		t.Fatalf("Do returned before Warm's session was open: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-did; err != nil {
		t.Fatal(err)
	}
	<-warmed
	checkStats(t, p, PoolStats{Open: 1, Idle: 1, Logins: 1, Reuses: 1})
	p.Warm(ctx, "grant-a", credsFor(alice, aliceToken)) // idle session there: nothing to do
	checkStats(t, p, PoolStats{Open: 1, Idle: 1, Logins: 1, Reuses: 1})
}
