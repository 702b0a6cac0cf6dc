package idp

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// FreezeOptions shape a freeze; the zero value freezes until Thaw.
type FreezeOptions struct {
	// For ends the freeze on its own after this long; 0 freezes until Thaw. The timer runs on the clock of the
	// goroutine that calls Freeze, so inside a testing/synctest bubble it is the bubble's fake clock.
	For time.Duration
	// UntilClientGone also holds every request received while frozen until its client has given up on it (closed
	// the connection, or cancelled the request of the in-process Transport), even if the freeze ends sooner. Its
	// answer is then certainly lost, whatever it is: the case of a refresh that commits after the client timed out.
	UntilClientGone bool
}

// freezer is the state of the freeze hook. thawed is closed when the current freeze ends; it is nil when not frozen.
type freezer struct {
	mu     sync.Mutex
	thawed chan struct{}
	opts   FreezeOptions
}

// Freeze makes the IdP hang the way Authelia does under SIGSTOP, an overloaded database or a queueing reverse
// proxy: connections are still accepted and requests are read in full, but none is processed until the freeze ends
// (For elapsed, or Thaw). Then every held request is processed — a refresh commits its rotation — and answered,
// whether or not the client is still waiting. Requests arriving after the freeze are served normally.
//
// It works with a listener (Start) and with the in-process Transport, whose RoundTrip returns as soon as the request's
// context is done while the IdP goes on processing. Inside a synctest bubble, end every freeze before the bubble
// returns: a request held forever is a goroutine blocked forever.
func (p *IdP) Freeze(o FreezeOptions) {
	f := &p.freeze
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawed == nil {
		f.thawed = make(chan struct{})
	}
	f.opts = o
	if o.For > 0 {
		ch := f.thawed
		// time.AfterFunc, not a polling loop: inside a bubble it fires when the fake clock gets there.
		time.AfterFunc(o.For, func() { p.thaw(ch) })
	}
}

// Thaw ends the freeze: held requests are processed now (or, with UntilClientGone, once their client has gone).
func (p *IdP) Thaw() { p.thaw(nil) }

// thaw ends the freeze whose channel is ch, or the current one when ch is nil; a timer of an earlier freeze must not
// end a later one.
func (p *IdP) thaw(ch chan struct{}) {
	f := &p.freeze
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawed == nil || (ch != nil && ch != f.thawed) {
		return
	}
	close(f.thawed)
	f.thawed = nil
}

// Frozen reports whether a freeze is in force.
func (p *IdP) Frozen() bool {
	p.freeze.mu.Lock()
	defer p.freeze.mu.Unlock()
	return p.freeze.thawed != nil
}

// hold reads r's body and blocks while the IdP is frozen. It returns the request to process: with the body read
// back, and with a context that the client's departure no longer cancels, because a stalled Authelia that resumes
// completes what it had read.
func (p *IdP) hold(r *http.Request) *http.Request {
	f := &p.freeze
	f.mu.Lock()
	thawed, opts := f.thawed, f.opts
	f.mu.Unlock()
	if thawed == nil {
		return r
	}
	p.stats.heldWhileFrozen.Add(1)
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body.Close()
	<-thawed
	if opts.UntilClientGone {
		<-r.Context().Done()
	}
	r = r.WithContext(context.WithoutCancel(r.Context()))
	r.Body = io.NopCloser(bytes.NewReader(body))
	return r
}
