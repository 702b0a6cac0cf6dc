package mail

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// rotatingTokens is a TokenSource that hands out a stale token first and, asked to replace it, the next one of its
// list; it counts the calls.
type rotatingTokens struct {
	addr             string
	mu               sync.Mutex
	tokens           []string
	replaceErr       error
	tokenN, replaceN atomic.Int32
	rejected         []string
}

func (r *rotatingTokens) Token(context.Context) (Credentials, error) {
	r.tokenN.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	return Credentials{r.addr, r.tokens[0]}, nil
}

func (r *rotatingTokens) Replace(_ context.Context, rejected Credentials) (Credentials, error) {
	r.replaceN.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = append(r.rejected, rejected.Token)
	if r.replaceErr != nil {
		return Credentials{}, r.replaceErr
	}
	if len(r.tokens) > 1 && r.tokens[0] == rejected.Token {
		r.tokens = r.tokens[1:]
	}
	return Credentials{r.addr, r.tokens[0]}, nil
}

// TestPoolRetriesWithReplacedToken pins the rule: a refused AUTHENTICATE is retried with the token that replaced
// the refused one, once more only if that one was refused too and the source has a newer one, and never more.
func TestPoolRetriesWithReplacedToken(t *testing.T) {
	signedOut := errors.New("needs sign-in")
	tests := []struct {
		name        string
		tokens      []string
		replaceErr  error
		wantErr     []error
		wantFails   int64
		wantLogins  int64
		wantReplace int32
	}{
		{"stale then current", []string{"stale", aliceToken}, nil, nil, 1, 1, 1},
		{"replacement refused too, nothing newer", []string{"stale", "revoked"}, nil, []error{ErrAuthFailed}, 2, 0, 2},
		{"replacement revoked by a refresh in flight", []string{"stale", "stale-too", aliceToken}, nil, nil, 2, 1, 2},
		{"three refusals end it", []string{"a", "b", "c", aliceToken}, nil, []error{ErrAuthFailed}, 3, 0, 2},
		{"no replacement", []string{"stale"}, signedOut, []error{signedOut}, 1, 0, 1},
		{"current at once", []string{aliceToken}, nil, nil, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, mailserver.Options{})
			p := newTestPool(t, e, PoolOptions{})
			ts := &rotatingTokens{addr: alice, tokens: tt.tokens, replaceErr: tt.replaceErr}
			calls := 0
			err := p.Do(ctxT(t), "g1", ts, func(s *Session) error { calls++; return s.Noop(ctxT(t)) })
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("Do() = %v, want %v", err, want)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("Do() = %v", err)
			}
			if wantCalls := int(tt.wantLogins); calls != wantCalls {
				t.Errorf("fn ran %d times, want %d", calls, wantCalls)
			}
			st := p.Stats()
			if st.AuthFailures != tt.wantFails || st.Logins != tt.wantLogins {
				t.Errorf("Stats() = %+v, want %d auth failures and %d logins", st, tt.wantFails, tt.wantLogins)
			}
			if ts.tokenN.Load() != 1 || ts.replaceN.Load() != tt.wantReplace {
				t.Errorf("Token called %d times, Replace %d; want 1 and %d", ts.tokenN.Load(), ts.replaceN.Load(), tt.wantReplace)
			}
			for i := range ts.rejected {
				if ts.rejected[i] != tt.tokens[i] {
					t.Errorf("Replace told the rejected tokens were %q, want the refused ones, in order", ts.rejected)
					break
				}
			}
			if st.Open != st.Idle {
				t.Errorf("Stats() = %+v: a slot leaked", st)
			}
		})
	}
}

// TestPoolCapsPerUser: the cap counts a user's sessions over all their grants (every sign-in is a new grant), so
// one user's many sign-ins wait for each other while another user's work goes ahead.
func TestPoolCapsPerUser(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{MaxPerUser: 2, MaxTotal: 10})
	ctx := ctxT(t)
	hold := make(chan struct{})
	var wg sync.WaitGroup
	for _, g := range []string{"alice-1", "alice-2"} {
		wg.Go(func() {
			if err := p.Do(ctx, g, credsFor(alice, aliceToken), func(*Session) error { <-hold; return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, "two alice sessions", func() bool { return p.Stats().Open == 2 })

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	called := false
	err := p.Do(short, "alice-3", credsFor("ALICE@example.test", aliceToken), func(*Session) error { called = true; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || called {
		t.Errorf("a third grant of alice = %v (fn called %v), want to wait for her cap", err, called)
	}
	if err := p.Do(ctx, "bob-1", credsFor(bobAddr, bobToken), noop(ctx)); err != nil {
		t.Errorf("bob's Do while alice is at her cap = %v", err)
	}
	close(hold)
	wg.Wait()
	// Both of alice's sessions are idle now, on grants 1 and 2: grant 3 takes the room of the older one.
	if err := p.Do(ctx, "alice-3", credsFor(alice, aliceToken), noop(ctx)); err != nil {
		t.Fatal(err)
	}
	checkStats(t, p, PoolStats{Open: 3, Idle: 3, Logins: 4})
	p.mu.Lock()
	if n := p.count[alice]; n != 2 {
		t.Errorf("alice counts %d sessions, want 2", n)
	}
	p.mu.Unlock()
}
