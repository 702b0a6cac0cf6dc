package auth

import (
	"context"
	"math"
	"sync"

	"golang.org/x/time/rate"
)

// tokenClient is what the Keeper needs from a Provider; tests substitute a
// fault-injecting wrapper.
type tokenClient interface {
	Refresh(ctx context.Context, refreshToken string) (TokenSet, error)
	UserInfo(ctx context.Context, accessToken string) (Identity, error)
	Revoke(ctx context.Context, token, hint string) error
	// Introspect asks the IdP whether token is active (RFC 7662);
	// CanIntrospect reports whether the IdP has the endpoint.
	Introspect(ctx context.Context, token, hint string) (bool, error)
	CanIntrospect() bool
}

var _ tokenClient = (*Provider)(nil)

// newLimiter is Run's cap on IdP calls: a token bucket of depth one, which is
// the strictest reading of "calls per second". A negative rate does not limit.
func newLimiter(perSecond float64) *rate.Limiter {
	if perSecond < 0 || math.IsInf(perSecond, 1) {
		return rate.NewLimiter(rate.Inf, 1)
	}
	return rate.NewLimiter(rate.Limit(perSecond), 1)
}

// grantLocks serialises work on one grant within the process. The lock is a
// one-slot channel so that waiting respects a context (and, in tests, counts
// as durably blocked inside a synctest bubble).
type grantLocks struct {
	mu sync.Mutex
	m  map[string]*grantLock
}

type grantLock struct {
	ch   chan struct{}
	refs int
}

// lock takes the grant's lock, or fails when ctx ends first.
func (l *grantLocks) lock(ctx context.Context, id string) (unlock func(), err error) {
	e := l.get(id)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.put(id, e) }, nil
	case <-ctx.Done():
		l.put(id, e)
		return nil, ctx.Err()
	}
}

// tryLock takes the grant's lock if it is free.
func (l *grantLocks) tryLock(id string) (unlock func(), ok bool) {
	e := l.get(id)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.put(id, e) }, true
	default:
		l.put(id, e)
		return nil, false
	}
}

// get returns the grant's lock with a reference taken.
func (l *grantLocks) get(id string) *grantLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]*grantLock)
	}
	e := l.m[id]
	if e == nil {
		e = &grantLock{ch: make(chan struct{}, 1)}
		l.m[id] = e
	}
	e.refs++
	return e
}

// put drops a reference to e, forgetting it when unused.
func (l *grantLocks) put(id string, e *grantLock) {
	l.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(l.m, id)
	}
	l.mu.Unlock()
}

// callScope is the context of the Keeper's IdP calls and the count of
// refreshes running detached from their callers. Only shutdown (Run
// returning) cancels the context, and then only for the calls in flight:
// cancel installs a fresh context for later calls.
type callScope struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	n      int
	idle   chan struct{} // closed when n drops to 0
}

func newCallScope() callScope {
	ctx, cancel := context.WithCancel(context.Background())
	idle := make(chan struct{})
	close(idle)
	return callScope{ctx: ctx, cancel: cancel, idle: idle}
}

// context is the context for an IdP call starting now.
func (s *callScope) context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

// goDetached runs f on its own goroutine with the call context, counted
// until it returns.
func (s *callScope) goDetached(f func(ctx context.Context)) {
	s.mu.Lock()
	if s.n == 0 {
		s.idle = make(chan struct{})
	}
	s.n++
	ctx := s.ctx
	s.mu.Unlock()
	go func() {
		defer s.done()
		f(ctx)
	}()
}

func (s *callScope) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n--; s.n == 0 {
		close(s.idle)
	}
}

// idleCh is closed once no detached refresh runs.
func (s *callScope) idleCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idle
}

// cancelCalls cancels every call in flight and starts a fresh context.
func (s *callScope) cancelCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancel()
	s.ctx, s.cancel = context.WithCancel(context.Background())
}
