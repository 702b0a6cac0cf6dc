package mail

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// ErrNoCredentials is what a credentials function wraps when there will be no token any more (the user signed out
// or must sign in again): a watch then stops instead of retrying.
var ErrNoCredentials = errors.New("mail: no credentials any more")

// ErrWatchLimit is returned by Pool.Watch when the user already has as many
// watches as they may: watches hold connections, and at least one of the
// user's MaxPerUser sessions must stay available for Do.
var ErrWatchLimit = errors.New("mail: too many watches for this key")

const (
	// defaultIdleRestart is how often Watch ends and re-issues IDLE. RFC
	// 2177 section 3 (and RFC 9051 section 5.4) let a server log out a
	// client idle for 30 minutes, so clients must re-issue IDLE at least
	// every 29; 25 leaves room for slow networks (imapclient's own restart
	// at 28 minutes then never fires).
	defaultIdleRestart = 25 * time.Minute
	// defaultWatchPoll is the NOOP interval on a server without IDLE.
	defaultWatchPoll = time.Minute
	// watchBackoffMax bounds the wait between reconnection attempts.
	watchBackoffMax = time.Minute
	// idleDoneTimeout bounds the wait for the server's answer to DONE.
	idleDoneTimeout = 10 * time.Second
)

// watch is one running Watch loop.
type watch struct {
	cancel context.CancelFunc
	user   string
}

// Watch reports changes to box: it opens a dedicated IMAP connection for
// key (a grant id; the connection is not taken from nor returned to the
// idle sessions, but counted against the user's MaxPerUser and MaxTotal),
// EXAMINEs box and waits with IDLE (RFC 2177, RFC 9051 section 6.3.13),
// re-issued every 25 minutes. Each EXISTS, EXPUNGE or FETCH the server sends
// unilaterally (new mail, deletions, flag changes from other sessions) puts
// a value on the returned channel; values coalesce, so a slow reader sees
// one for several changes. A server without IDLE is polled with NOOP every
// minute.
//
// Watch returns once the first connection is up (after at most one retry
// with a replaced token, as in WithToken), or its error (ErrAuthFailed,
// ErrNoMailbox, ErrWatchLimit, ...). After that, a lost connection is
// re-established with backoff, using ts for a current token, and a value
// is sent since changes may have been missed. The channel is closed when
// ctx ends (after DONE and LOGOUT), on CloseKey(key) or Close, or when
// reconnecting fails for good (the token or the mailbox is gone).
func (p *Pool) Watch(ctx context.Context, key string, ts TokenSource, box string) (<-chan struct{}, error) {
	if err := checkMailboxName(box); err != nil {
		return nil, err
	}
	var out <-chan struct{}
	err := WithToken(ctx, ts, func(c Credentials) error {
		var err error
		out, err = p.watch(ctx, key, c, ts, box)
		return err
	})
	return out, err
}

func (p *Pool) watch(ctx context.Context, key string, c Credentials, ts TokenSource, box string) (<-chan struct{}, error) {
	user := c.userKey()
	ctx, cancel := context.WithCancel(ctx)
	w := &watch{cancel: cancel, user: user}
	if err := p.addWatch(key, w); err != nil {
		cancel()
		return nil, err
	}
	if err := p.reserve(ctx, user); err != nil {
		p.removeWatch(key, w)
		cancel()
		return nil, err
	}
	out := make(chan struct{}, 1)
	notify := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	s, err := p.watchDial(ctx, c, box, notify)
	if err != nil {
		p.unreserve(user)
		p.removeWatch(key, w)
		cancel()
		return nil, err
	}
	go func() {
		defer close(out)
		defer p.unreserve(user)
		defer p.removeWatch(key, w)
		defer cancel()
		p.watchLoop(ctx, key, ts, box, s, notify)
	}()
	return out, nil
}

// watchLoop idles on s until ctx ends, reconnecting when the connection
// is lost.
func (p *Pool) watchLoop(ctx context.Context, key string, ts TokenSource, box string, s *Session, notify func()) {
	backoff := time.Second
	for {
		err := p.idleOn(ctx, s)
		s.Close()
		if ctx.Err() != nil {
			return
		}
		p.log.Debug("mail: watch connection lost", "key", key, "err", err)
		for {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, watchBackoffMax)
			var c Credentials
			if c, err = ts.Token(ctx); err != nil {
				err = fmt.Errorf("mail: credentials for imap: %w", err)
			} else {
				s, err = p.watchDial(ctx, c, box, notify)
			}
			if err == nil {
				backoff = time.Second
				notify()
				break
			}
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrNoMailbox) || errors.Is(err, ErrNoCredentials) {
				p.log.Debug("mail: watch gives up", "key", key, "err", err)
				return
			}
			p.log.Debug("mail: watch reconnect failed", "key", key, "err", err)
		}
	}
}

// watchDial opens a connection authenticated with c whose unilateral
// updates call notify, and EXAMINEs box.
func (p *Pool) watchDial(ctx context.Context, c Credentials, box string, notify func()) (*Session, error) {
	// Updates that belong to our own EXAMINE are not changes.
	var armed atomic.Bool
	h := &imapclient.UnilateralDataHandler{
		Expunge: func(uint32) {
			if armed.Load() {
				notify()
			}
		},
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if armed.Load() && d.NumMessages != nil {
				notify()
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			if armed.Load() {
				notify()
			}
			// The reader waits until the items are consumed.
			for msg.Next() != nil {
			}
		},
	}
	s, err := dial(ctx, p.srv, c, h)
	if err != nil {
		if errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrAuthUnavailable) {
			p.authFailures.Add(1)
		}
		return nil, err
	}
	p.logins.Add(1)
	err = s.run(ctx, fmt.Sprintf("examine %q for watch", box), func() error {
		_, err := s.examine(box)
		return err
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	armed.Store(true)
	return s, nil
}

// idleOn runs IDLE on s, re-issuing it every idleRestart, until ctx ends
// (nil) or the connection fails (an error).
func (p *Pool) idleOn(ctx context.Context, s *Session) error {
	if !s.c.Caps().Has(imap.CapIdle) || p.watchNoIdle {
		return p.poll(ctx, s)
	}
	restart := p.idleRestart
	if restart <= 0 {
		restart = defaultIdleRestart
	}
	for {
		// Idle blocks until the server's continuation request; a server
		// that never sends it must not outlive ctx.
		stop := context.AfterFunc(ctx, func() {
			s.broken.Store(true)
			s.conn.Close()
		})
		cmd, err := s.c.Idle()
		if !stop() {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mail: imap idle: %w", err)
		}
		t := time.NewTimer(restart)
		select {
		case <-ctx.Done():
			t.Stop()
			stopIdle(s, cmd)
			return nil
		case <-s.c.Closed():
			t.Stop()
			s.broken.Store(true)
			return errors.New("mail: imap idle: connection closed")
		case <-t.C:
			if err := stopIdle(s, cmd); err != nil {
				return err
			}
		}
	}
}

// stopIdle sends DONE and waits for the tagged response, closing the
// connection if it does not come.
func stopIdle(s *Session, cmd *imapclient.IdleCommand) error {
	t := time.AfterFunc(idleDoneTimeout, func() {
		s.broken.Store(true)
		s.conn.Close()
	})
	defer t.Stop()
	err := cmd.Close()
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		s.broken.Store(true)
		return fmt.Errorf("mail: imap idle done: %w", err)
	}
	return nil
}

// poll sends NOOP (RFC 9051 section 6.1.2), which lets the server report
// changes, every watchPoll until ctx ends.
func (p *Pool) poll(ctx context.Context, s *Session) error {
	every := p.watchPoll
	if every <= 0 {
		every = defaultWatchPoll
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := s.Noop(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

// addWatch registers w under key. Watches hold connections that Do cannot evict, so they are bounded twice: at most
// MaxPerUser-1 per user, over all the user's grants (with MaxPerUser 1 none: the one connection is for page views),
// and at most a quarter of MaxTotal in all, so that watches can never starve other users' page views.
func (p *Pool) addWatch(key string, w *watch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrPoolClosed
	}
	if p.watches == nil {
		p.watches = map[string]map[*watch]struct{}{}
	}
	total, mine := 0, 0
	for _, set := range p.watches {
		total += len(set)
		for o := range set {
			if o.user == w.user {
				mine++
			}
		}
	}
	if mine >= p.opts.MaxPerUser-1 || total >= max(p.opts.MaxTotal/4, 1) {
		return ErrWatchLimit
	}
	if p.watches[key] == nil {
		p.watches[key] = map[*watch]struct{}{}
	}
	p.watches[key][w] = struct{}{}
	return nil
}

func (p *Pool) removeWatch(key string, w *watch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.watches[key], w)
	if len(p.watches[key]) == 0 {
		delete(p.watches, key)
	}
}

// takeWatchesLocked unregisters the watches of key ("" for all) and
// returns a function that stops them, to be called without p.mu.
func (p *Pool) takeWatchesLocked(key string) func() {
	var cancels []context.CancelFunc
	for k, set := range p.watches {
		if key != "" && k != key {
			continue
		}
		for w := range set {
			cancels = append(cancels, w.cancel)
		}
		delete(p.watches, k)
	}
	return func() {
		for _, c := range cancels {
			c()
		}
	}
}

// reserve takes a session slot for user outside the idle set, closing an
// idle session to make room if needed, or waiting for one to free up.
func (p *Pool) reserve(ctx context.Context, user string) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return ErrPoolClosed
		}
		if p.count[user] < p.opts.MaxPerUser && p.total < p.opts.MaxTotal {
			p.count[user]++
			p.total++
			p.mu.Unlock()
			return nil
		}
		var victim *pooled
		if p.count[user] >= p.opts.MaxPerUser {
			victim = p.takeLRU(user)
		} else {
			victim = p.takeLRU("")
		}
		wake := p.wake
		p.mu.Unlock()
		if victim != nil {
			p.discard(victim)
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

func (p *Pool) unreserve(user string) {
	p.mu.Lock()
	p.unreserveLocked(user)
	p.mu.Unlock()
}
