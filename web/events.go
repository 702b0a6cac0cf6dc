package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

const (
	// maxWatchersPerUser bounds the open live-update streams (browser tabs) of one user, over all their sign-ins
	// (each sign-in is a new grant, so a per-grant bound alone let one user take every slot): each holds an IMAP
	// connection of its own out of the pool's per-user allowance (mail.PoolOptions.MaxPerUser, which the pool also
	// enforces for watches), and page views need the rest. A further tab simply gets no live updates.
	maxWatchersPerUser = 3
	// maxWatchersTotal bounds all streams together, at a quarter of the pool's default total (200 connections): every
	// sign-in makes a new grant, so without it a scripted client could tie up the whole pool with IDLE connections
	// and make every other user's page view wait.
	maxWatchersTotal = 50
	// keepAliveEvery sends a comment line on an idle stream, so that proxies with a read timeout (nginx: 60s) keep it.
	keepAliveEvery = 25 * time.Second
	// retryAfterFailure is the reconnection delay the browser is given when watching could not start.
	retryAfterFailure = 60 * time.Second
)

// handleEvents streams changes to a folder as Server-Sent Events (GET /events/{box...}), from an IMAP IDLE watch
// (mail.Pool.Watch). app.js listens and offers "New mail — reload"; the list works without it. Each burst of changes
// is followed by a "counts" event with every folder's unread count, which app.js writes into the side bar.
//
// EventSource reconnects by itself after a dropped stream, waiting the "retry:" we send, but gives up for good on a
// 204 or any status other than 200: so an ended grant or a missing folder answers 204, too many tabs 429, and a
// mail server that is down a 200 stream that ends at once with a long retry.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	grant := grantID(r)
	box := r.PathValue("box")
	if box == "" {
		box = "INBOX"
	}
	log := s.log(r)
	user := userOf(r)
	if !s.watchers.acquire(user) {
		log.Info("events: too many streams for this user")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	defer s.watchers.release(user)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.watchers.closing(), cancel)
	defer stop()

	// The watch retries with a replaced token after a refused login, like every mail call (mail.WithToken).
	ch, err := s.mail.Watch(ctx, grant, s.grantTokens(grant), box)
	h := w.Header()
	switch {
	case errors.Is(err, mail.ErrWatchLimit):
		log.Info("events: watch limit reached", slog.Any("err", err))
		w.WriteHeader(http.StatusTooManyRequests)
		return
	case errors.Is(err, auth.ErrNeedsSignIn) || errors.Is(err, mail.ErrNoMailbox) || errors.Is(err, mail.ErrAuthFailed):
		log.Info("events: not watching", slog.Any("err", err))
		w.WriteHeader(http.StatusNoContent)
		return
	case err != nil:
		log.Warn("events: watch failed", slog.Any("err", err))
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "retry: "+strconv.FormatInt(retryAfterFailure.Milliseconds(), 10)+"\n\n")
		return
	}

	rc := http.NewResponseController(w)
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	// Tell nginx not to buffer the stream.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if !sseWrite(w, rc, "retry: 10000\n: watching\n\n") {
		return
	}
	tick := time.NewTicker(keepAliveEvery)
	defer tick.Stop()
	// counts is armed by a change and fires countsDelay later, so that a burst of changes (a message arriving, then
	// its flags) costs one folder listing.
	var counts <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				// The watch ended (connection lost, grant closed): the browser reconnects after "retry".
				return
			}
			if !sseWrite(w, rc, "event: mailbox\ndata: changed\n\n") {
				return
			}
			if counts == nil {
				counts = time.After(countsDelay)
			}
		case <-counts:
			counts = nil
			if data, ok := s.folderCounts(ctx, r, grant); ok && !sseWrite(w, rc, "event: counts\ndata: "+data+"\n\n") {
				return
			}
		case <-tick.C:
			if !sseWrite(w, rc, ": keep-alive\n\n") {
				return
			}
		}
	}
}

// countsDelay is how long the stream waits after a change before it lists the folders for the side bar's unread
// counts; countsWait bounds that listing.
const (
	countsDelay = 300 * time.Millisecond
	countsWait  = 5 * time.Second
)

// folderCount is one folder's entry in a "counts" event: the side bar's link (folderLinks' URL, which app.js
// matches against the links' href) and its unread count.
type folderCount struct {
	URL    string `json:"url"`
	Unseen uint32 `json:"unseen"`
}

// folderCounts lists the folders with their unread counts on a pooled session (not the watching one, which is in
// IDLE) and returns them as the JSON data of a "counts" event. The watch sees one folder, but a change there (mail
// moved in from elsewhere, a filter) often changes others, and the listing covers every folder in one round trip.
// A failure is logged and skipped: the stream and the page go on without it.
func (s *Server) folderCounts(ctx context.Context, r *http.Request, grant string) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, countsWait)
	defer cancel()
	var boxes []mail.Mailbox
	_, err := s.withMail(ctx, grant, func(ms *mail.Session) error {
		var err error
		boxes, err = ms.Mailboxes(ctx)
		return err
	})
	if err != nil {
		s.log(r).Info("events: no folder counts", slog.Any("err", err))
		return "", false
	}
	links := folderLinks(boxes, "")
	out := make([]folderCount, 0, len(links))
	for _, l := range links {
		out = append(out, folderCount{URL: l.URL, Unseen: l.Unseen})
	}
	b, err := json.Marshal(out) // one line: JSON escapes control characters, so no newline can end the event early
	if err != nil {
		return "", false
	}
	return string(b), true
}

func sseWrite(w io.Writer, rc *http.ResponseController, s string) bool {
	if _, err := io.WriteString(w, s); err != nil {
		return false
	}
	return rc.Flush() == nil
}

// signedInStream gates the event stream on a signed-in session like signedIn, but never redirects (EventSource
// cannot follow a sign-in through the IdP, and would start a login flow on every retry) and does not refresh the
// session's idle timer: an open tab is not user activity.
func (s *Server) signedInStream(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.session(r)
		if err != nil || sess.GrantID() == "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h(w, withGrant(r, sess))
	})
}

// CloseStreams ends every live-update stream, now and later. http.Server.Shutdown waits for active requests and
// would otherwise wait for these until its deadline; cmd registers it with RegisterOnShutdown.
func (s *Server) CloseStreams() { s.watchers.close() }

// watchLimiter counts streams per user and in all, and ends them all at shutdown.
type watchLimiter struct {
	mu      sync.Mutex
	n       map[string]int
	max     int
	total   int
	limit   int
	doneCtx context.Context
	stop    context.CancelFunc
}

func newWatchLimiter(max, limit int) *watchLimiter {
	ctx, cancel := context.WithCancel(context.Background())
	return &watchLimiter{n: map[string]int{}, max: max, limit: limit, doneCtx: ctx, stop: cancel}
}

func (l *watchLimiter) acquire(grant string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[grant] >= l.max || l.total >= l.limit || l.doneCtx.Err() != nil {
		return false
	}
	l.n[grant]++
	l.total++
	return true
}

func (l *watchLimiter) release(grant string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.n[grant]--; l.n[grant] <= 0 {
		delete(l.n, grant)
	}
}

// closing is done once CloseStreams was called.
func (l *watchLimiter) closing() context.Context { return l.doneCtx }

func (l *watchLimiter) close() { l.stop() }
