package mailserver

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// StoredMessage is a message as stored in a mailbox, for tests.
type StoredMessage struct {
	UID          uint32
	Flags        []string
	InternalDate time.Time
	Raw          []byte
}

// Messages returns the messages of a mailbox in order. It reads them over
// an in-process, pre-authenticated IMAP connection (no token, no userinfo
// call), so it sees exactly what a client would.
func (s *Server) Messages(email, mailbox string) ([]StoredMessage, error) {
	a := s.account(email, false)
	if a == nil {
		return nil, fmt.Errorf("mailserver: no account %q", email)
	}
	s.pipeOnce.Do(func() {
		s.pipe = newPipeListener()
		go s.imap.Serve(s.pipe)
	})
	if s.pipe == nil {
		return nil, errors.New("mailserver: server closed")
	}
	client, server := net.Pipe()
	if err := s.pipe.push(&pipeConn{Conn: server, acct: a}); err != nil {
		client.Close()
		return nil, err
	}
	c := imapclient.New(client, nil)
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		return nil, fmt.Errorf("mailserver: inspect greeting: %w", err)
	}
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("mailserver: inspect select %q: %w", mailbox, err)
	}
	if sel.NumMessages == 0 {
		c.Logout().Wait()
		return nil, nil
	}
	var set imap.SeqSet
	set.AddRange(1, sel.NumMessages)
	bufs, err := c.Fetch(set, &imap.FetchOptions{
		UID:          true,
		Flags:        true,
		InternalDate: true,
		BodySection:  []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		return nil, fmt.Errorf("mailserver: inspect fetch: %w", err)
	}
	out := make([]StoredMessage, 0, len(bufs))
	for _, b := range bufs {
		m := StoredMessage{UID: uint32(b.UID), InternalDate: b.InternalDate}
		for _, f := range b.Flags {
			m.Flags = append(m.Flags, string(f))
		}
		if len(b.BodySection) > 0 {
			m.Raw = b.BodySection[0].Bytes
		}
		out = append(out, m)
	}
	c.Logout().Wait()
	return out, nil
}

// pipeConn is the server end of an inspection connection.
type pipeConn struct {
	net.Conn
	acct *account
}

// pipeListener hands in-process connections to imapserver.Serve.
type pipeListener struct {
	ch       chan net.Conn
	done     chan struct{}
	doneOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) push(c net.Conn) error {
	select {
	case l.ch <- c:
		return nil
	case <-l.done:
		return errors.New("mailserver: server closed")
	}
}

// Accept implements net.Listener.
func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *pipeListener) Close() error {
	l.doneOnce.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

// Network implements net.Addr.
func (pipeAddr) Network() string { return "pipe" }

// String implements net.Addr.
func (pipeAddr) String() string { return "inspect" }
