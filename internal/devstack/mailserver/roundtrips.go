package mailserver

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// CountRoundTrips makes IMAP connections accepted from now on count round trips (Stats.RoundTrips), for tests that
// assert how many times a page makes its user wait for the mail server. 0 turns counting off for new connections.
//
// A round trip is a turn of the conversation: client bytes that arrive after the server has answered everything it
// had received, i.e. after the client could have been waiting for that answer. Commands the client pipelines (RFC
// 9051 section 5.5: sent without waiting) arrive while the server is still busy with the first one and make no new
// turn. To keep that true on a loaded machine, where the client's goroutine may pause between the writes of one
// batch, the first answer to each turn is held back for hold: pipelined commands sent within hold of each other
// count as one turn. Each counted connection has a reader goroutine that timestamps arrivals, and ignores read
// deadlines; it is meant for tests only.
func (s *Server) CountRoundTrips(hold time.Duration) {
	s.rtHold.Store(int64(hold))
}

// countRoundTrips wraps c when counting is on.
func (s *Server) countRoundTrips(c net.Conn) net.Conn {
	hold := time.Duration(s.rtHold.Load())
	if hold <= 0 {
		return c
	}
	cc := &countingConn{Conn: c, hold: hold, turns: &s.roundTrips}
	cc.cond = sync.NewCond(&cc.mu)
	go cc.readLoop()
	return cc
}

// countingConn reads its connection in the background so that the arrival of client bytes is timestamped relative
// to the server's writes, whatever the server is doing at the time.
type countingConn struct {
	net.Conn
	hold  time.Duration
	turns *atomic.Int64

	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte
	err     error
	// answered: the server has written since the last counted turn; an arrival while nothing else is pending is
	// then a new turn.
	answered bool
	// fresh: the server has read since its last write, so its next write is the first answer of a turn.
	fresh bool
}

func (c *countingConn) readLoop() {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Conn.Read(buf)
		c.mu.Lock()
		if n > 0 {
			if c.answered && len(c.pending) == 0 {
				c.turns.Add(1)
				c.answered = false
			}
			c.pending = append(c.pending, buf[:n]...)
		}
		if err != nil {
			c.err = err
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Read returns what the background reader received.
func (c *countingConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) == 0 && c.err == nil {
		c.cond.Wait()
	}
	if len(c.pending) == 0 {
		return 0, c.err
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	c.fresh = true
	return n, nil
}

// Write holds the first answer of a turn for c.hold, then writes.
func (c *countingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	first := c.fresh
	c.fresh = false
	c.mu.Unlock()
	if first {
		time.Sleep(c.hold)
	}
	// Marked before the write: the client may read the answer and send its next command before Write returns.
	c.mu.Lock()
	c.answered = true
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// SetReadDeadline is ignored: the background reader owns the socket's reads.
func (c *countingConn) SetReadDeadline(time.Time) error { return nil }

// SetDeadline sets the write deadline only, for the same reason.
func (c *countingConn) SetDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(t) }
