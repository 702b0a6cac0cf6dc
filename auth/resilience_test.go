package auth

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
)

// rvIdP is an Authelia-like fake for failure timing the dev IdP cannot produce: rotating single-use refresh tokens, reuse revokes the family.
type rvIdP struct {
	mu        sync.Mutex
	rt, at    string
	n         int
	revoked   bool
	reuses    int
	sent      []string // refresh tokens presented
	probes    int
	slowFirst bool // first Refresh: client times out, IdP commits commitLag after the deadline
	commitLag time.Duration
	lostFirst bool        // first Refresh commits but answer is lost (outcome unknown, returned at once)
	uiDown    atomic.Bool // userinfo unreachable
}

func (f *rvIdP) rotateLocked() TokenSet {
	f.n++
	f.rt, f.at = fmt.Sprintf("rt%d", f.n), fmt.Sprintf("at%d", f.n)
	return TokenSet{AccessToken: f.at, RefreshToken: f.rt, Expiry: time.Now().Add(time.Hour)}
}

func (f *rvIdP) Refresh(ctx context.Context, rt string) (TokenSet, error) {
	f.mu.Lock()
	f.sent = append(f.sent, rt)
	if f.revoked || rt != f.rt {
		if !f.revoked {
			f.reuses++
			f.revoked = true
		}
		f.mu.Unlock()
		return TokenSet{}, fmt.Errorf("reuse: %w", ErrInvalidGrant)
	}
	if f.slowFirst {
		f.slowFirst = false
		f.mu.Unlock()
		<-ctx.Done()
		go func() { // server still working; commits a little later
			time.Sleep(f.commitLag)
			f.mu.Lock()
			f.rotateLocked()
			f.mu.Unlock()
		}()
		return TokenSet{}, fmt.Errorf("timeout after send: %w: %w", ErrOutcomeUnknown, ctx.Err())
	}
	if f.lostFirst {
		f.lostFirst = false
		f.rotateLocked()
		f.mu.Unlock()
		return TokenSet{}, fmt.Errorf("reset after send: %w", ErrOutcomeUnknown)
	}
	ts := f.rotateLocked()
	f.mu.Unlock()
	return ts, nil
}

func (f *rvIdP) UserInfo(ctx context.Context, at string) (Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	if f.uiDown.Load() {
		return Identity{}, fmt.Errorf("down: %w", ErrTransient)
	}
	if f.revoked || at != f.at {
		return Identity{}, ErrTokenRejected
	}
	return Identity{Subject: "s"}, nil
}
func (f *rvIdP) Revoke(context.Context, string, string) error { return nil }

// flakyStore fails UpdateGrant while failUpdates is set.
type flakyStore struct {
	*store.SQLite
	failUpdates atomic.Bool
}

func (s *flakyStore) UpdateGrant(ctx context.Context, g store.Grant) (store.Grant, error) {
	if s.failUpdates.Load() {
		return store.Grant{}, errors.New("database is locked (SQLITE_BUSY)")
	}
	return s.SQLite.UpdateGrant(ctx, g)
}

func rvSetup(t *testing.T, f *rvIdP) (*flakyStore, *Keeper, string) {
	sealer, _ := seal.New(map[string][]byte{"k": make([]byte, seal.KeySize)}, "k")
	st, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "db"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fs := &flakyStore{SQLite: st}
	// A token call gives up after 100ms, as every IdP call did before TokenCallTimeout existed.
	k := newKeeper(f, fs, KeeperOptions{LeaseTTL: 400 * time.Millisecond, TokenCallTimeout: 100 * time.Millisecond})
	settleAtEnd(t, k)
	f.mu.Lock()
	ts := f.rotateLocked()
	f.mu.Unlock()
	// Signed in 59 minutes ago: access token has 60s left, so a page view refreshes (and a probe is meaningful).
	id, err := k.Start(t.Context(), &Login{Identity: Identity{Issuer: "i", Subject: "s", Email: "a@b"}, Tokens: ts})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(58 * time.Minute) // access token has 2 minutes left: a page view refreshes, a probe is meaningful
	return fs, k, id
}

// TestSlowCommitAfterTimeout: the client times out, the IdP commits the rotation a little later. The probe right
// after the timeout still sees the old access token alive; the retry after backoff must probe again, find it
// revoked, and never send the spent refresh token (which would make the IdP revoke the family).
func TestSlowCommitAfterTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &rvIdP{slowFirst: true, commitLag: 500 * time.Millisecond}
		fs, k, id := rvSetup(t, f)
		if _, err := k.Token(t.Context(), id); err != nil {
			t.Logf("first view: %v", err)
		}
		settle(k)
		time.Sleep(10 * time.Second) // past the backoff
		// The access token is not expired, so the view gets it at once and the retry runs behind it.
		k.Token(t.Context(), id)
		settle(k)
		_, err := k.Token(t.Context(), id)
		g, _ := fs.Grant(t.Context(), id)
		if f.reuses != 0 {
			t.Errorf("the spent refresh token was sent again (sent %v): the IdP revoked the grant", f.sent)
		}
		if !errors.Is(err, ErrNeedsSignIn) || Reason(g.LastError) != ReasonRefreshLost {
			t.Errorf("after the late commit: err %v, grant %s (%s); want needs_sign_in (%s)", err, g.State, g.LastError, ReasonRefreshLost)
		}
	})
}

// TestUnknownOutcomeMarkerSurvivesStoreError: the refresh answer is lost, and neither the store nor userinfo can
// be reached to record or settle it. The next attempt must still probe before re-sending the refresh token.
func TestUnknownOutcomeMarkerSurvivesStoreError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &rvIdP{lostFirst: true}
		fs, k, id := rvSetup(t, f)
		fs.failUpdates.Store(true)
		f.uiDown.Store(true)
		k.Token(t.Context(), id)
		settle(k)
		fs.failUpdates.Store(false)
		f.uiDown.Store(false)
		probes := f.probes
		k.Token(t.Context(), id)
		settle(k)
		if f.reuses != 0 || f.probes == probes {
			t.Errorf("next attempt: %d probe(s), refresh tokens sent %v, re-uses %d; want a probe and no re-use", f.probes-probes, f.sent, f.reuses)
		}
	})
}

// TestStoreOutageDuringCommitKeepsRotation: the IdP rotated the grant but the store refuses writes for a while.
// The rotated tokens are kept in memory and stored when the store is back: no new sign-in, no re-use.
func TestStoreOutageDuringCommitKeepsRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &rvIdP{}
		fs, k, id := rvSetup(t, f)
		fs.failUpdates.Store(true)
		go func() { time.Sleep(time.Second); fs.failUpdates.Store(false) }()
		if _, err := k.Token(t.Context(), id); err == nil {
			t.Log("the first view got a token although the store refused the rotation")
		}
		settle(k)
		time.Sleep(time.Minute)  // past the store outage and the backoff
		k.Token(t.Context(), id) // the access token is still valid: the stored rotation is committed behind the view
		settle(k)
		tok, err := k.Token(t.Context(), id)
		g, _ := fs.Grant(t.Context(), id)
		if err != nil || g.State != store.StateOK {
			t.Fatalf("after the store recovered: err %v, grant %s (%s); want ok", err, g.State, g.LastError)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if tok.Access != f.at || g.RefreshToken != f.rt || f.reuses != 0 {
			t.Errorf("stored tokens are not the IdP's current ones (re-uses %d, sent %v)", f.reuses, f.sent)
		}
	})
}

// rvIdP has no introspection endpoint: the keeper falls back to userinfo probes.
func (f *rvIdP) Introspect(context.Context, string, string) (bool, error) {
	return false, errors.New("no introspection")
}
func (f *rvIdP) CanIntrospect() bool { return false }
