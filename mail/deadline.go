package mail

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineConn bounds the silence of the IMAP server while one of our commands runs.
//
// imapclient sets its own read deadlines, but only within a response (30s, 5 minutes for a literal); while it waits
// for a response to begin it clears them, because an idle connection may rightly hear nothing for 30 minutes (RFC
// 9051 section 5.4). So a command whose answer never begins — a server that stopped answering — would hold its
// pooled connection for ever. Session.run arms this wrapper for the length of a command: every read then has a
// deadline of at most timeout from now (renewed by each read, so a long download that makes progress goes on),
// or the earlier one imapclient asked for. Disarmed, imapclient's own deadline applies unchanged.
type deadlineConn struct {
	net.Conn
	mu      sync.Mutex
	timeout time.Duration // > 0 while armed
	asked   time.Time     // the read deadline imapclient set last
	// expired is set when a read ran into a deadline: imapclient reports
	// that only as text, so run uses it to say what happened.
	expired atomic.Bool
}

// SetReadDeadline records imapclient's deadline and applies the effective one.
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = t
	return c.Conn.SetReadDeadline(c.effectiveLocked())
}

// SetDeadline sets both; the read side goes through SetReadDeadline.
func (c *deadlineConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// Read renews the armed deadline before reading.
func (c *deadlineConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.timeout > 0 {
		_ = c.Conn.SetReadDeadline(c.effectiveLocked())
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.expired.Store(true)
	}
	return n, err
}

func (c *deadlineConn) effectiveLocked() time.Time {
	if c.timeout <= 0 {
		return c.asked
	}
	ours := time.Now().Add(c.timeout)
	if !c.asked.IsZero() && c.asked.Before(ours) {
		return c.asked
	}
	return ours
}

// arm bounds every read from now on, including one already waiting (imapclient's reader goroutine is parked in
// Read between responses).
func (c *deadlineConn) arm(timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timeout = timeout
	_ = c.Conn.SetReadDeadline(c.effectiveLocked())
}

// disarm gives the reads back to imapclient's own deadline.
func (c *deadlineConn) disarm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timeout = 0
	_ = c.Conn.SetReadDeadline(c.asked)
}
