package mail

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// waitSignal waits for a value on ch.
func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("%s: no signal", what)
	}
}

// noSignal checks that nothing arrives on ch for a short while.
func noSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: unexpected signal", what)
	case <-time.After(100 * time.Millisecond):
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed")
		}
	}
}

func watchEnv(t *testing.T) (*env, *Pool, *Session) {
	t.Helper()
	e, other := seededSession(t, mailserver.Options{})
	return e, newTestPool(t, e, PoolOptions{}), other
}

func TestWatch(t *testing.T) {
	e, p, other := watchEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := p.Watch(ctx, "k1", credsFor(alice, aliceToken), "INBOX")
	if err != nil {
		t.Fatalf("Watch() error = %v", err)
	}
	checkStats(t, p, PoolStats{Open: 1, Logins: 1})
	noSignal(t, ch, "after EXAMINE")

	if err := other.Append(ctxT(t), "INBOX", nil, bulkMessage(1)); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "append (EXISTS)")
	if err := other.SetFlag(ctxT(t), "INBOX", []uint32{1}, FlagFlagged, true); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "flag change (FETCH)")
	if err := other.Expunge(ctxT(t), "INBOX", []uint32{2}); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "expunge (EXPUNGE)")
	// An expunge is reported as a FETCH (\Deleted) and an EXPUNGE.
	time.Sleep(50 * time.Millisecond)
	select {
	case <-ch:
	default:
	}
	// Changes elsewhere are not reported.
	if err := other.Append(ctxT(t), "Archive", nil, bulkMessage(2)); err != nil {
		t.Fatal(err)
	}
	noSignal(t, ch, "append to another mailbox")

	// Pool sessions of the key are unaffected and not the watch's.
	if err := p.Do(ctxT(t), "k1", credsFor(alice, aliceToken), noop(ctxT(t))); err != nil {
		t.Fatal(err)
	}
	checkStats(t, p, PoolStats{Open: 2, Idle: 1, Logins: 2})

	sessions := e.srv.Stats().Sessions
	cancel()
	waitClosed(t, ch)
	waitFor(t, "watch slot released", func() bool { return p.Stats().Open == 1 })
	waitFor(t, "server connection closed", func() bool { return e.srv.Stats().Sessions == sessions-1 })
}

func TestWatchRestartsIdle(t *testing.T) {
	e, p, other := watchEnv(t)
	p.idleRestart = 30 * time.Millisecond
	ch, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	conns, idles := e.srv.Stats().IMAPConnections, e.srv.Stats().IdleCommands
	waitFor(t, "three more IDLE rounds", func() bool { return e.srv.Stats().IdleCommands >= idles+3 })
	noSignal(t, ch, "re-IDLE")
	if err := other.Append(ctxT(t), "INBOX", nil, bulkMessage(1)); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "append after re-IDLE")
	if got := e.srv.Stats().IMAPConnections; got != conns {
		t.Errorf("IMAP connections = %d, want %d (IDLE restarts on the same connection)", got, conns)
	}
}

func TestWatchPollsWithoutIdle(t *testing.T) {
	_, p, other := watchEnv(t)
	p.watchNoIdle, p.watchPoll = true, 20*time.Millisecond
	ch, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Append(ctxT(t), "INBOX", nil, bulkMessage(1)); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "append seen by NOOP")
}

func TestWatchStoppedByCloseKey(t *testing.T) {
	_, p, _ := watchEnv(t)
	ch, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.Watch(t.Context(), "k2", credsFor(alice, aliceToken), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	p.CloseKey("k1")
	waitClosed(t, ch)
	noSignal(t, other, "other key")
	waitFor(t, "slot released", func() bool { return p.Stats().Open == 1 })
	p.Close()
	waitClosed(t, other)
	waitFor(t, "all released", func() bool { return p.Stats().Open == 0 })
	if _, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "INBOX"); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("Watch() after Close error = %v, want ErrPoolClosed", err)
	}
}

func TestWatchErrors(t *testing.T) {
	_, p, _ := watchEnv(t)
	if _, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "No such box"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("Watch(missing box) error = %v, want ErrNoMailbox", err)
	}
	if _, err := p.Watch(t.Context(), "k1", credsFor(alice, "expired"), "INBOX"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Watch(bad token) error = %v, want ErrAuthFailed", err)
	}
	if _, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), ""); err == nil {
		t.Error("Watch(empty box) succeeded")
	}
	if got := p.Stats(); got.Open != 0 || got.AuthFailures != 1 {
		t.Errorf("Stats() = %+v, want nothing open and one auth failure", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Watch(ctx, "k1", credsFor(alice, aliceToken), "INBOX"); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch(cancelled) error = %v, want context.Canceled", err)
	}
}

func TestWatchLimit(t *testing.T) {
	e, _ := seededSession(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{MaxPerUser: 3})
	for i := range 2 {
		if _, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "INBOX"); err != nil {
			t.Fatalf("Watch() #%d error = %v", i+1, err)
		}
	}
	if _, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "INBOX"); !errors.Is(err, ErrWatchLimit) {
		t.Errorf("Watch() #3 error = %v, want ErrWatchLimit", err)
	}
	// The last slot stays available for page views.
	if err := p.Do(ctxT(t), "k1", credsFor(alice, aliceToken), noop(ctxT(t))); err != nil {
		t.Errorf("Do() with two watches error = %v", err)
	}
}

func TestWatchTakesRoomFromIdleSessions(t *testing.T) {
	e, _ := seededSession(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{MaxPerUser: 2, MaxTotal: 2})
	for _, key := range []string{"k1", "k2"} {
		if err := p.Do(ctxT(t), key, credsFor(alice, aliceToken), noop(ctxT(t))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "INBOX"); err != nil {
		t.Fatalf("Watch() in a full pool error = %v", err)
	}
	if got := p.Stats(); got.Open != 2 || got.Idle != 1 {
		t.Errorf("Stats() = %+v, want 2 open, 1 idle", got)
	}
}

// TestWatchLimitsLeaveRoomForPageViews: a user whose only connection is for page views gets no watch, however many
// grants ask; and watches of all users together take at most a quarter of MaxTotal, so they cannot starve other
// users' Do.
func TestWatchLimitsLeaveRoomForPageViews(t *testing.T) {
	e, _ := seededSession(t, mailserver.Options{})
	for _, u := range []string{bobAddr, carolAddr} {
		if err := e.srv.Seed(u); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("MaxPerUser 1", func(t *testing.T) {
		p := newTestPool(t, e, PoolOptions{MaxPerUser: 1})
		if _, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "INBOX"); !errors.Is(err, ErrWatchLimit) {
			t.Errorf("Watch() with MaxPerUser 1 = %v, want ErrWatchLimit", err)
		}
	})
	t.Run("per user over grants", func(t *testing.T) {
		p := newTestPool(t, e, PoolOptions{MaxPerUser: 3})
		for i, key := range []string{"k1", "k2"} {
			if _, err := p.Watch(t.Context(), key, credsFor(alice, aliceToken), "INBOX"); err != nil {
				t.Fatalf("Watch() #%d = %v", i+1, err)
			}
		}
		// A third sign-in of the same user is the same user.
		if _, err := p.Watch(t.Context(), "k3", credsFor("Alice@Example.test", aliceToken), "INBOX"); !errors.Is(err, ErrWatchLimit) {
			t.Errorf("third watch of one user from a third grant = %v, want ErrWatchLimit", err)
		}
		if _, err := p.Watch(t.Context(), "k4", credsFor(bobAddr, bobToken), "INBOX"); err != nil {
			t.Errorf("another user's watch = %v", err)
		}
	})
	t.Run("a quarter of MaxTotal", func(t *testing.T) {
		p := newTestPool(t, e, PoolOptions{MaxPerUser: 4, MaxTotal: 8})
		if _, err := p.Watch(t.Context(), "k1", credsFor(alice, aliceToken), "INBOX"); err != nil {
			t.Fatalf("Watch() #1 = %v", err)
		}
		if _, err := p.Watch(t.Context(), "k2", credsFor(bobAddr, bobToken), "INBOX"); err != nil {
			t.Fatalf("Watch() #2 = %v", err)
		}
		if _, err := p.Watch(t.Context(), "k3", credsFor(carolAddr, carolToken), "INBOX"); !errors.Is(err, ErrWatchLimit) {
			t.Errorf("third watch with MaxTotal 8 = %v, want ErrWatchLimit", err)
		}
	})
}

func TestWatchWithoutCredentials(t *testing.T) {
	e, _ := seededSession(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{})
	gone := tokenFunc(func(context.Context) (Credentials, error) {
		return Credentials{}, fmt.Errorf("%w: signed out", ErrNoCredentials)
	})
	if _, err := p.Watch(t.Context(), "k1", gone, "INBOX"); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("Watch() without credentials = %v, want ErrNoCredentials", err)
	}
	if st := p.Stats(); st.Open != 0 {
		t.Errorf("Stats().Open = %d after a refused watch, want 0", st.Open)
	}
}

// TestWatchReconnectsAfterDrop: a watch whose connection the server drops dials again (with the current
// credentials), signals once so the page can catch up, and goes on reporting changes; if by then there are no
// credentials any more (the grant ended), it stops for good.
func TestWatchReconnectsAfterDrop(t *testing.T) {
	e, p, _ := watchEnv(t)
	var gone atomic.Bool
	creds := tokenFunc(func(ctx context.Context) (Credentials, error) {
		if gone.Load() {
			return Credentials{}, fmt.Errorf("%w: signed out", ErrNoCredentials)
		}
		return Credentials{Address: alice, Token: aliceToken}, nil
	})
	ch, err := p.Watch(t.Context(), "k1", creds, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if n := e.srv.DropConnections(alice); n == 0 {
		t.Fatal("DropConnections closed nothing")
	}
	waitSignal(t, ch, "reconnect")
	other, err := Dial(ctxT(t), e.imapServer(TLSNone, MechOAuthBearer), Credentials{alice, aliceToken})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Append(ctxT(t), "INBOX", nil, bulkMessage(1)); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "append after the reconnect")

	gone.Store(true)
	e.srv.DropConnections(alice)
	waitClosed(t, ch)
}
