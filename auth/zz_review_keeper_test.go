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

// rvIdP is an Authelia-like fake: rotating single-use refresh tokens, reuse revokes the family.
type rvIdP struct {
	mu        sync.Mutex
	rt, at    string
	n         int
	revoked   bool
	reuses    int
	sent      []string // refresh tokens presented
	probes    int
	slowFirst bool          // first Refresh: client times out, IdP commits commitLag after the deadline
	commitLag time.Duration
	lostFirst bool          // first Refresh commits but answer is lost (outcome unknown, returned at once)
	uiDown    atomic.Bool   // userinfo unreachable
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
	k := newKeeper(f, fs, KeeperOptions{LeaseTTL: 400 * time.Millisecond})
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

// The probe right after a client-side timeout sees "alive" because the IdP has not committed yet; the marker is
// cleared and the retry after backoff re-sends the spent refresh token.
func TestReviewProbeRacesSlowCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &rvIdP{slowFirst: true, commitLag: 500 * time.Millisecond}
		fs, k, id := rvSetup(t, f)
		_, err := k.Token(t.Context(), id)
		g, _ := fs.Grant(t.Context(), id)
		t.Logf("after first view: err=%v state=%s last_error=%q probes=%d", err, g.State, g.LastError, f.probes)
		time.Sleep(10 * time.Second) // past backoff
		_, err = k.Token(t.Context(), id)
		g, _ = fs.Grant(t.Context(), id)
		t.Logf("after retry: err=%v state=%s last_error=%q sent=%v reuses=%d", err, g.State, g.LastError, f.sent, f.reuses)
		if f.reuses > 0 {
			t.Errorf("spent refresh token re-sent: grant revoked at the IdP")
		}
	})
}

// Store write fails while the answer is lost and userinfo is down: the outcome_unknown marker is never recorded,
// and the next attempt re-sends the refresh token without probing.
func TestReviewUnknownMarkerLostOnStoreError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &rvIdP{lostFirst: true}
		fs, k, id := rvSetup(t, f)
		fs.failUpdates.Store(true)
		f.uiDown.Store(true)
		_, err := k.Token(t.Context(), id)
		t.Logf("first view: err=%v", err)
		fs.failUpdates.Store(false)
		f.uiDown.Store(false)
		probes := f.probes
		_, err = k.Token(t.Context(), id)
		g, _ := fs.Grant(t.Context(), id)
		t.Logf("second view: err=%v state=%s last_error=%q sent=%v probes-before-resend=%d reuses=%d", err, g.State, g.LastError, f.sent, f.probes-probes, f.reuses)
		if f.reuses > 0 {
			t.Errorf("spent refresh token re-sent without a probe: grant revoked")
		}
	})
}

// A store outage longer than LeaseTTL/2 during commit drops a successfully rotated refresh token.
func TestReviewCommitFailureDropsRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &rvIdP{}
		fs, k, id := rvSetup(t, f)
		fs.failUpdates.Store(true)
		go func() { time.Sleep(time.Second); fs.failUpdates.Store(false) }()
		_, err := k.Token(t.Context(), id)
		t.Logf("view during 1s store blip: err=%v", err)
		time.Sleep(2 * time.Second)
		_, err = k.Token(t.Context(), id)
		g, _ := fs.Grant(t.Context(), id)
		t.Logf("after store recovered: err=%v state=%s last_error=%q", err, g.State, g.LastError)
		if g.State == store.StateNeedsSignIn {
			t.Errorf("1s store outage forced a new sign-in")
		}
	})
}
