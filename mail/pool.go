package mail

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrPoolClosed is returned by Pool.Do after Pool.Close.
var ErrPoolClosed = errors.New("mail: pool closed")

// PoolOptions tune a Pool. Zero values take the defaults noted per field.
type PoolOptions struct {
	// MaxPerUser bounds the sessions of one user (one mail account, see
	// Credentials), over all of the user's grants; default 4. Every sign-in
	// makes a new grant, so a cap per grant would let one user with many
	// sign-ins take the whole pool. Stalwart 0.16 allows 16 concurrent IMAP
	// sessions per account.
	MaxPerUser int
	// MaxTotal bounds all sessions; default 200.
	MaxTotal int
	// IdleTimeout is how long an unused session is kept; default 5m, well
	// under the 30-minute autologout timer of RFC 9051 section 5.4.
	IdleTimeout time.Duration
	// CheckAfter: a session idle for longer than this is checked with NOOP
	// before reuse; default 30s.
	CheckAfter time.Duration
	// Logger receives debug events (logins, discards); default discards.
	Logger *slog.Logger
}

// PoolStats are counters for metrics and tests.
type PoolStats struct {
	// Open counts sessions that exist now, idle or in use (or being dialled).
	Open int64
	// Idle counts sessions waiting in the pool.
	Idle int64
	// Logins counts successful AUTHENTICATEs, i.e. userinfo calls the mail
	// server made to the identity provider on our behalf.
	Logins int64
	// Reuses counts Do calls served by an idle session.
	Reuses int64
	// AuthFailures counts dials refused with ErrAuthFailed or
	// ErrAuthUnavailable.
	AuthFailures int64
}

// Pool keeps authenticated IMAP sessions per grant, so that a page view does
// not cost a login, and therefore a userinfo round trip from the mail server
// to the identity provider. Sessions are kept apart per grant (a sign-out
// closes exactly the sessions its tokens opened) but counted per user, so
// that the caps hold however many times one user signs in. It starts no
// goroutines: the owner calls Reap from its own ticker.
type Pool struct {
	srv  Server
	opts PoolOptions
	log  *slog.Logger

	mu     sync.Mutex
	idle   map[string][]*pooled // per grant, least recently used first
	count  map[string]int       // per user: idle + busy + dialling
	gen    map[string]uint64    // per grant, bumped by CloseKey: busy sessions of an older generation are not returned
	total  int
	wake   chan struct{} // closed (and replaced) whenever capacity frees up
	closed bool

	// warming holds, per grant, a channel closed when Warm's dial ends; acquire waits for it rather than dial a
	// second session for the same grant.
	warming map[string]chan struct{}

	// watches are the running Pool.Watch loops per grant (see idle.go);
	// CloseKey and Close stop them.
	watches map[string]map[*watch]struct{}
	// idleRestart and watchPoll tune Watch; zero means the defaults.
	idleRestart, watchPoll time.Duration
	// watchNoIdle makes Watch poll even if the server has IDLE (tests).
	watchNoIdle bool

	logins, reuses, authFailures atomic.Int64

	dial func(context.Context, Server, Credentials) (*Session, error)
}

type pooled struct {
	s        *Session
	key      string // the grant
	user     string // Credentials.userKey
	gen      uint64
	lastUsed time.Time
}

// NewPool returns an empty pool of sessions to srv. It does no I/O.
func NewPool(srv Server, opts PoolOptions) *Pool {
	if opts.MaxPerUser <= 0 {
		opts.MaxPerUser = 4
	}
	if opts.MaxTotal <= 0 {
		opts.MaxTotal = 200
	}
	if opts.MaxPerUser > opts.MaxTotal {
		opts.MaxPerUser = opts.MaxTotal
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	if opts.CheckAfter <= 0 {
		opts.CheckAfter = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pool{
		srv:   srv,
		opts:  opts,
		log:   log,
		idle:  map[string][]*pooled{},
		count: map[string]int{},
		gen:   map[string]uint64{},
		wake:  make(chan struct{}),

		warming: map[string]chan struct{}{},
		dial:    Dial,
	}
}

// Do runs fn on an authenticated session for key (a grant id). It asks ts
// for the grant's credentials, reuses an idle session of that grant,
// checked with NOOP if it sat idle longer than CheckAfter, or else dials a
// new one with those credentials; if the server refuses them, it asks ts
// for their replacement and tries again (see WithToken). A session on
// which fn hit a connection-level error is discarded, not pooled.
//
// Sessions are bounded per user (the credentials' address, over all the
// user's grants) and in total. When the total is reached the least
// recently used idle session of any grant is closed to make room; when the
// user's cap is reached, an idle session of another of the user's grants;
// when nothing is idle, Do waits until a session frees up or ctx is done.
//
// Do returns fn's error as is, or a dial error (ErrAuthFailed and
// ErrAuthUnavailable wrapped) without calling fn. fn must not return
// ErrAuthFailed itself (no Session method does), or it would run twice.
func (p *Pool) Do(ctx context.Context, key string, ts TokenSource, fn func(*Session) error) error {
	return WithToken(ctx, ts, func(c Credentials) error { return p.do(ctx, key, c, fn) })
}

// Warm opens a session for key in the background of a page that will need it: Postern calls it at sign-in, so that
// the login at the mail server (TLS, AUTHENTICATE, and the mail server's own call to the identity provider) overlaps
// with the browser following the redirect to its first page. A Do for key that finds nothing idle while Warm dials
// waits for that session rather than dialling a second one. Warm does nothing when key has an idle session or is
// already being warmed, and gives up silently on any error: the page's own Do then dials and reports it.
func (p *Pool) Warm(ctx context.Context, key string, ts TokenSource) {
	p.mu.Lock()
	if p.closed || len(p.idle[key]) > 0 || p.warming[key] != nil {
		p.mu.Unlock()
		return
	}
	done := make(chan struct{})
	p.warming[key] = done
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.warming, key)
		close(done)
		p.mu.Unlock()
	}()
	err := WithToken(ctx, ts, func(c Credentials) error {
		pe, err := p.acquireOwn(ctx, key, c, false)
		if err != nil {
			return err
		}
		p.release(pe, nil)
		return nil
	})
	if err != nil {
		p.log.Debug("mail: warming an imap session", "key", key, "err", err)
	}
}

func (p *Pool) do(ctx context.Context, key string, c Credentials, fn func(*Session) error) error {
	pe, err := p.acquire(ctx, key, c)
	if err != nil {
		return err
	}
	returned := false
	defer func() {
		if !returned { // fn panicked: the session state is unknown
			p.discard(pe)
		}
	}()
	err = fn(pe.s)
	returned = true
	p.release(pe, err)
	return err
}

func (p *Pool) acquire(ctx context.Context, key string, c Credentials) (*pooled, error) {
	return p.acquireOwn(ctx, key, c, true)
}

// acquireOwn is acquire; joinWarm says whether to wait for Warm's dial of key (false for Warm itself).
func (p *Pool) acquireOwn(ctx context.Context, key string, c Credentials, joinWarm bool) (*pooled, error) {
	user := c.userKey()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		// Most recently used first: it is the likeliest to be alive.
		if list := p.idle[key]; len(list) > 0 {
			pe := list[len(list)-1]
			p.setIdle(key, list[:len(list)-1])
			p.mu.Unlock()
			if time.Since(pe.lastUsed) > p.opts.CheckAfter {
				if err := pe.s.Noop(ctx); err != nil {
					p.log.Debug("mail: discarding stale imap session", "key", key, "err", err)
					p.discard(pe)
					continue
				}
			}
			p.reuses.Add(1)
			return pe, nil
		}
		if w := p.warming[key]; joinWarm && w != nil {
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-w:
			}
			continue
		}
		var victim *pooled
		switch {
		case p.count[user] < p.opts.MaxPerUser && p.total < p.opts.MaxTotal:
			p.count[user]++
			p.total++
			g := p.gen[key]
			p.mu.Unlock()
			return p.open(ctx, key, user, g, c)
		case p.count[user] < p.opts.MaxPerUser:
			// Full: make room by closing the least recently used idle
			// session of anyone.
			victim = p.takeLRU("")
		default:
			// The user's cap: an idle session of another of their grants
			// makes room.
			victim = p.takeLRU(user)
		}
		if victim != nil {
			p.mu.Unlock()
			p.discard(victim)
			continue
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		}
	}
}

// open dials a session for a slot already reserved in the counts.
func (p *Pool) open(ctx context.Context, key, user string, gen uint64, c Credentials) (*pooled, error) {
	s, err := p.dial(ctx, p.srv, c)
	if err == nil {
		p.logins.Add(1)
		p.log.Debug("mail: imap login", "key", key)
		return &pooled{s: s, key: key, user: user, gen: gen}, nil
	}
	if errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrAuthUnavailable) {
		p.authFailures.Add(1)
	}
	p.mu.Lock()
	p.unreserveLocked(user)
	p.mu.Unlock()
	return nil, err
}

// release returns a session to the pool after fn, or discards it.
func (p *Pool) release(pe *pooled, fnErr error) {
	if !pe.s.usable() || isConnError(fnErr) {
		p.discard(pe)
		return
	}
	p.mu.Lock()
	if p.closed || p.gen[pe.key] != pe.gen {
		p.mu.Unlock()
		p.discard(pe)
		return
	}
	pe.lastUsed = time.Now()
	p.idle[pe.key] = append(p.idle[pe.key], pe)
	p.broadcastLocked()
	p.mu.Unlock()
}

// isConnError reports whether err says the connection itself failed, as
// opposed to a NO/BAD reply or an application error.
func isConnError(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// discard closes a session that is no longer counted as idle and frees its
// slot.
func (p *Pool) discard(pe *pooled) {
	p.mu.Lock()
	p.unreserveLocked(pe.user)
	p.mu.Unlock()
	if err := pe.s.Close(); err != nil {
		p.log.Debug("mail: closing imap session", "key", pe.key, "err", err)
	}
}

func (p *Pool) unreserveLocked(user string) {
	p.count[user]--
	if p.count[user] <= 0 {
		delete(p.count, user)
	}
	p.total--
	p.broadcastLocked()
}

func (p *Pool) broadcastLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

func (p *Pool) setIdle(key string, list []*pooled) {
	if len(list) == 0 {
		delete(p.idle, key)
		return
	}
	p.idle[key] = list
}

// takeLRU removes and returns the least recently used idle session of user
// ("" for anyone), or nil.
func (p *Pool) takeLRU(user string) *pooled {
	var victim *pooled
	for _, list := range p.idle {
		if len(list) > 0 && (user == "" || list[0].user == user) && (victim == nil || list[0].lastUsed.Before(victim.lastUsed)) {
			victim = list[0]
		}
	}
	if victim != nil {
		p.setIdle(victim.key, p.idle[victim.key][1:])
	}
	return victim
}

// CloseKey logs out and closes every idle session of key (a grant id),
// stops its watches, and makes sure sessions of key now in use are closed when they
// are released. Call it at
// sign-out: an authenticated IMAP session outlives the revocation of the
// token it was opened with.
func (p *Pool) CloseKey(key string) {
	p.mu.Lock()
	list := p.idle[key]
	delete(p.idle, key)
	p.gen[key]++
	stop := p.takeWatchesLocked(key)
	p.mu.Unlock()
	stop()
	p.closeAll(list)
}

func (p *Pool) closeAll(list []*pooled) {
	var wg sync.WaitGroup
	for _, pe := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.discard(pe)
		}()
	}
	wg.Wait()
}

// Reap closes sessions idle for longer than IdleTimeout as of now. The
// owner calls it periodically (e.g. every minute).
func (p *Pool) Reap(now time.Time) {
	var old []*pooled
	p.mu.Lock()
	for key, list := range p.idle {
		keep := list[:0]
		for _, pe := range list {
			if now.Sub(pe.lastUsed) > p.opts.IdleTimeout {
				old = append(old, pe)
			} else {
				keep = append(keep, pe)
			}
		}
		p.setIdle(key, keep)
	}
	p.mu.Unlock()
	p.closeAll(old)
}

// Close closes every idle session and stops every watch; sessions in use
// are closed when released. Do fails with ErrPoolClosed afterwards.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	var all []*pooled
	for _, list := range p.idle {
		all = append(all, list...)
	}
	p.idle = map[string][]*pooled{}
	p.broadcastLocked()
	stop := p.takeWatchesLocked("")
	p.mu.Unlock()
	stop()
	p.closeAll(all)
	return nil
}

// Stats returns the current counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	open, idle := p.total, 0
	for _, list := range p.idle {
		idle += len(list)
	}
	p.mu.Unlock()
	return PoolStats{
		Open:         int64(open),
		Idle:         int64(idle),
		Logins:       p.logins.Load(),
		Reuses:       p.reuses.Load(),
		AuthFailures: p.authFailures.Load(),
	}
}
