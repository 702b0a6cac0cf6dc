package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"
)

// Session is an authenticated IMAP connection. It is not safe for concurrent
// use: IMAP has one selected mailbox per connection (RFC 9051 section 3), so
// the Pool hands a session to one caller at a time.
type Session struct {
	c    *imapclient.Client
	conn net.Conn
	// dc bounds the server's silence during a command (run); timeout is
	// Server.CommandTimeout.
	dc      *deadlineConn
	timeout time.Duration
	// broken is set once the connection is known to be unusable (I/O error,
	// context cancellation mid-command); the Pool then discards the session.
	broken atomic.Bool
	// newest remembers, per mailbox, the UID from which Overview's speculative fetch of the newest page starts.
	newest map[string]imap.UID
	// listOpt is what OverviewWith asks of the current Overview; snippets are the preview snippets seen (snippet.go).
	listOpt  ListOptions
	snippets snippetCache
	// rows are the list rows fetched before, whose flags are all a warm view asks for (rowcache.go).
	rows rowCache
	// threads is the last THREAD answer of a warm newest page (rowcache.go).
	threads threadCache
	// opened is the mailbox this session knows it has selected (isOpen).
	opened opened
	// changes counts the EXISTS and EXPUNGE responses the server sent outside SELECT, and the SELECTs: every change
	// of the open mailbox's set of messages this session was told of (countChanges, sendSelect).
	changes *atomic.Int64
}

// countChanges returns h (nil: none) with its EXISTS and EXPUNGE handlers also counting into n. imapclient calls both
// from its reader before it reads the next response, so once a command's answer has been read, n includes every
// change the server reported before it (the FETCH handler, which imapclient runs on a goroutine of its own, could not
// promise that).
func countChanges(h *imapclient.UnilateralDataHandler, n *atomic.Int64) *imapclient.UnilateralDataHandler {
	out := &imapclient.UnilateralDataHandler{}
	if h != nil {
		*out = *h
	}
	expunge, mailbox := out.Expunge, out.Mailbox
	out.Expunge = func(seq uint32) {
		n.Add(1)
		if expunge != nil {
			expunge(seq)
		}
	}
	out.Mailbox = func(d *imapclient.UnilateralDataMailbox) {
		if d.NumMessages != nil {
			n.Add(1)
		}
		if mailbox != nil {
			mailbox(d)
		}
	}
	return out
}

// opened is the mailbox a SELECT or EXAMINE of the session opened, and whether read-write. It is cleared when one is
// sent and set when its answer is OK: imapclient keeps the previous mailbox's name after a refused SELECT, although
// the server then has none selected (RFC 9051 section 6.3.2), and it does not record the mode.
type opened struct {
	box      string
	writable bool
}

// sendSelect sends SELECT, or EXAMINE when readOnly, without waiting; noteOpened records its success. It counts as a
// change (Session.changes): what was added to or expunged from a mailbox while it was not open is reported by the
// SELECT's answer, which imapclient does not pass to the handler that counts.
func (s *Session) sendSelect(box string, readOnly bool) *imapclient.SelectCommand {
	s.opened = opened{}
	s.changes.Add(1)
	return s.c.Select(box, &imap.SelectOptions{ReadOnly: readOnly})
}

func (s *Session) noteOpened(box string, readOnly bool) {
	s.opened = opened{box: box, writable: !readOnly}
}

// syncOpen brings the session's view of its open mailbox up to date (NOOP: the server reports EXISTS, EXPUNGE and
// other clients' flag changes, RFC 9051 section 6.1.2) and waits for the answer before anything else is sent.
// Waiting costs a round trip, and it is needed: Dovecot runs the commands pipelined behind a NOOP before the NOOP's
// own sync (it defers the sync until no other command is running), so a FETCH or LIST-STATUS sent with it describes
// the mailbox as it was before (new mail missing, another client's flags and counts one view late; the trace is in
// docs/protocol-notes.md, A.5). It still costs a server far less than opening a large mailbox again: at Dovecot a
// NOOP round trip is 0.3 ms, an EXAMINE of 10,000 messages 3 ms.
func (s *Session) syncOpen() error { return s.c.Noop().Wait() }

// isOpen reports whether box is selected, read-write if write: then a command on it needs no SELECT first. A
// read-write selection serves a read-only use as well, as every fetch here uses BODY.PEEK and sets \Seen only by an
// explicit STORE (RFC 9051 section 6.4.5).
func (s *Session) isOpen(box string, write bool) bool {
	mb := s.c.Mailbox()
	return mb != nil && mb.Name == box && s.opened.box == box && (s.opened.writable || !write)
}

const (
	// logoutTimeout bounds the polite LOGOUT in Close.
	logoutTimeout = 5 * time.Second
	// authTimeout bounds greeting, STARTTLS and AUTHENTICATE in Dial.
	authTimeout = 30 * time.Second
)

// wordDecoder decodes RFC 2047 encoded words in any charset go-message knows
// (ISO-2022-JP, windows-1252, ...), not only UTF-8 and ISO-8859-1.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// Dial connects to the IMAP server, sets up TLS as srv.TLS says and
// authenticates with the bearer token in c (AUTHENTICATE, RFC 9051 section
// 6.2.2). A refused token gives an error wrapping ErrAuthFailed, a temporary
// failure one wrapping ErrAuthUnavailable; on either the connection is closed.
func Dial(ctx context.Context, srv Server, c Credentials) (*Session, error) {
	return dial(ctx, srv, c, nil)
}

// dial is Dial with a handler for unilateral server data (EXISTS, EXPUNGE,
// FETCH), which Pool.Watch needs and which imapclient takes only at
// construction.
func dial(ctx context.Context, srv Server, c Credentials, unilateral *imapclient.UnilateralDataHandler) (*Session, error) {
	sc, err := NewSASLClient(srv.Mechanism, c)
	if err != nil {
		return nil, err
	}
	mechName, _ := srv.Mechanism.saslName()

	dctx, cancel := context.WithTimeout(ctx, srv.dialTimeout())
	defer cancel()
	d := net.Dialer{}
	raw, err := d.DialContext(dctx, "tcp", srv.addr())
	if err != nil {
		return nil, fmt.Errorf("mail: imap dial %s: %w", srv.addr(), err)
	}
	// Until Dial returns, the end of ctx (or of the overall bound: the
	// server validates the token with the identity provider, which Stalwart
	// allows 30s) aborts whatever I/O is in flight by closing the socket.
	actx, acancel := context.WithTimeout(ctx, srv.dialTimeout()+authTimeout)
	defer acancel()
	stop := context.AfterFunc(actx, func() { raw.Close() })
	defer stop()
	dc := &deadlineConn{Conn: raw}
	conn := net.Conn(dc)

	changes := new(atomic.Int64)
	opts := &imapclient.Options{WordDecoder: wordDecoder, UnilateralDataHandler: countChanges(unilateral, changes)}
	var client *imapclient.Client
	switch srv.TLS {
	case TLSImplicit, "":
		tc := tls.Client(conn, srv.tlsConfig("imap"))
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("mail: imap tls handshake with %s: %w", srv.addr(), err)
		}
		conn = tc
		client = imapclient.New(conn, opts)
	case TLSStartTLS:
		opts.TLSConfig = srv.tlsConfig("")
		// NewStartTLS waits for the greeting, sends STARTTLS and refuses a
		// PREAUTH greeting on the cleartext connection (RFC 9051 section 7.1.4).
		client, err = imapclient.NewStartTLS(conn, opts)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("mail: imap starttls with %s: %w", srv.addr(), ctxErr(actx, err))
		}
	case TLSNone:
		client = imapclient.New(conn, opts)
	default:
		conn.Close()
		return nil, fmt.Errorf("mail: unknown tls mode %q", srv.TLS)
	}
	s := &Session{c: client, conn: conn, dc: dc, timeout: srv.commandTimeout(), changes: changes}

	if err := client.WaitGreeting(); err != nil {
		client.Close()
		return nil, fmt.Errorf("mail: imap greeting from %s: %w", srv.addr(), ctxErr(actx, err))
	}
	if client.State() != imap.ConnStateNotAuthenticated {
		client.Close()
		return nil, fmt.Errorf("mail: imap server %s did not ask for authentication", srv.addr())
	}
	caps := client.Caps()
	if caps == nil {
		client.Close()
		return nil, fmt.Errorf("mail: imap capability from %s: %w", srv.addr(), ctxErr(actx, errors.New("no response")))
	}
	// A server that does not offer the mechanism would answer NO, which
	// would look like a bad token and send the user round a sign-in loop.
	if !caps.Has(imap.AuthCap(mechName)) {
		s.Close()
		return nil, fmt.Errorf("mail: imap server %s does not offer AUTH=%s", srv.addr(), mechName)
	}
	// imapclient sends the initial response inline when the server has
	// SASL-IR (RFC 4959), else after the empty continuation request.
	if err := client.Authenticate(sc); err != nil {
		authErr := imapAuthError(err, sc, c.Token)
		var ie *imap.Error
		if errors.As(err, &ie) && actx.Err() == nil {
			// The exchange ended with a tagged response, so the connection
			// is in a known state: log out politely.
			s.Close()
		} else {
			client.Close()
		}
		return nil, ctxErr(actx, authErr)
	}
	return s, nil
}

// imapAuthError maps the result of AUTHENTICATE onto the package's
// sentinels. Only NO [UNAVAILABLE] (RFC 5530) is temporary; any other NO is
// a refused token. The server's text is kept for the logs, minus the token
// should a server ever echo it.
func imapAuthError(err error, sc *SASLClient, token string) error {
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return fmt.Errorf("mail: imap authenticate: %w", err)
	}
	detail := string(ie.Type)
	if ie.Code != "" {
		detail += " [" + string(ie.Code) + "]"
	}
	if ie.Text != "" {
		detail += " " + strings.ReplaceAll(ie.Text, token, "[redacted]")
	}
	if st := sc.ErrorStatus(); st != "" {
		detail += " (error challenge status " + st + ")"
	}
	switch {
	case ie.Type == imap.StatusResponseTypeNo && ie.Code == imap.ResponseCodeUnavailable:
		return fmt.Errorf("%w: imap %s", ErrAuthUnavailable, detail)
	case ie.Type == imap.StatusResponseTypeNo:
		return fmt.Errorf("%w: imap %s", ErrAuthFailed, detail)
	}
	return fmt.Errorf("mail: imap authenticate: %s", detail)
}

// ctxErr prefers the context's error when the context ended, because a
// cancelled operation shows up as a closed connection.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// Close logs out (RFC 9051 section 6.1.3) and closes the connection.
func (s *Session) Close() error {
	if !s.broken.Load() {
		done := make(chan struct{})
		t := time.AfterFunc(logoutTimeout, func() { s.conn.Close() })
		go func() {
			s.c.Logout().Wait()
			close(done)
		}()
		<-done
		t.Stop()
	}
	s.broken.Store(true)
	if err := s.c.Close(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("mail: imap close: %w", err)
	}
	return nil
}

// usable reports whether the session can be handed out again.
func (s *Session) usable() bool {
	if s.broken.Load() {
		return false
	}
	select {
	case <-s.c.Closed():
		return false
	default:
		return true
	}
}

// run executes f, aborting it by closing the connection when ctx ends. Any
// error that is not a tagged NO/BAD (an *imap.Error) means the connection
// can no longer be trusted.
func (s *Session) run(ctx context.Context, what string, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !s.usable() {
		return fmt.Errorf("mail: imap %s: %w", what, net.ErrClosed)
	}
	stop := context.AfterFunc(ctx, func() {
		s.broken.Store(true)
		s.conn.Close()
	})
	s.dc.arm(s.timeout)
	err := f()
	s.dc.disarm()
	if !stop() {
		return fmt.Errorf("mail: imap %s: %w", what, ctx.Err())
	}
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if !errors.As(err, &ie) && !keepsConnection(err) {
		s.broken.Store(true)
		if s.dc.expired.Load() {
			// imapclient flattens the read error into text; say it was the server's silence, as a net.Error
			// (os.ErrDeadlineExceeded), so that callers see a connection failure.
			return fmt.Errorf("mail: imap %s: the server stopped answering: %w (%v)", what, os.ErrDeadlineExceeded, err)
		}
	}
	return fmt.Errorf("mail: imap %s: %w", what, err)
}

// keepsConnection reports whether err is one of ours that says nothing
// about the connection: the server answered, with no data (a UID that is
// gone) or with a message we would not read.
func keepsConnection(err error) bool {
	return errors.Is(err, ErrNoMessage) || errors.Is(err, ErrTooLarge) || errors.Is(err, errMailboxName) || errors.Is(err, errStartRefused)
}

// Noop sends NOOP (RFC 9051 section 6.1.2), which checks that the
// connection is alive and lets the server send pending updates.
func (s *Session) Noop(ctx context.Context) error {
	return s.run(ctx, "noop", func() error { return s.c.Noop().Wait() })
}

// DefaultSummaries is the number of summaries returned when n <= 0.
const DefaultSummaries = 50

// Summaries returns the newest n messages of box, newest first (by arrival,
// i.e. sequence number). The mailbox is opened read-only with EXAMINE (RFC
// 9051 section 6.3.3) so that listing never changes \Seen or \Recent.
func (s *Session) Summaries(ctx context.Context, box string, n int) ([]Summary, error) {
	if n <= 0 {
		n = DefaultSummaries
	}
	var bufs []*imapclient.FetchMessageBuffer
	err := s.run(ctx, fmt.Sprintf("fetch summaries of %q", box), func() error {
		sel, err := s.sendSelect(box, true).Wait()
		if err != nil {
			return err
		}
		s.noteOpened(box, true)
		s.noteValidity(box, sel.UIDValidity) // for the snippet cache (snippet.go)
		total := sel.NumMessages
		if total == 0 {
			return nil
		}
		first := uint32(1)
		if total > uint32(n) {
			first = total - uint32(n) + 1
		}
		var set imap.SeqSet
		set.AddRange(first, total)
		bufs, err = s.c.Fetch(set, &imap.FetchOptions{
			UID:           true,
			Envelope:      true,
			Flags:         true,
			BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
			RFC822Size:    true,
			InternalDate:  true,
		}).Collect()
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(bufs, func(a, b *imapclient.FetchMessageBuffer) int {
		return int(int64(b.SeqNum) - int64(a.SeqNum))
	})
	out := make([]Summary, 0, len(bufs))
	for _, b := range bufs {
		out = append(out, summaryOf(b))
	}
	return out, nil
}

func summaryOf(b *imapclient.FetchMessageBuffer) Summary {
	sum := Summary{
		UID:  uint32(b.UID),
		Date: b.InternalDate,
		Size: b.RFC822Size,
	}
	if env := b.Envelope; env != nil {
		sum.Subject = env.Subject
		sum.From = addresses(env.From)
		sum.To = addresses(env.To)
		if !env.Date.IsZero() {
			sum.Date = env.Date
		}
	}
	// imapclient canonicalises the case of system flags.
	for _, f := range b.Flags {
		switch f {
		case imap.FlagSeen:
			sum.Seen = true
		case imap.FlagFlagged:
			sum.Flagged = true
		case imap.FlagAnswered:
			sum.Answered = true
		}
	}
	sum.HasAttachment = hasAttachment(b.BodyStructure)
	threadFields(&sum, b)
	return sum
}

func addresses(in []imap.Address) []Address {
	if len(in) == 0 {
		return nil
	}
	out := make([]Address, 0, len(in))
	for _, a := range in {
		if a.IsGroupStart() || a.IsGroupEnd() {
			continue
		}
		out = append(out, Address{Name: a.Name, Email: a.Addr()})
	}
	return out
}

// hasAttachment reports whether any leaf part is an attachment: declared so
// (Content-Disposition, RFC 2183), or a named non-text part that is not an
// inline resource referenced by Content-ID (RFC 2392) from an HTML body.
func hasAttachment(bs imap.BodyStructure) bool {
	if bs == nil {
		return false
	}
	found := false
	bs.Walk(func(path []int, part imap.BodyStructure) bool {
		single, ok := part.(*imap.BodyStructureSinglePart)
		if !ok {
			return !found
		}
		disp := ""
		if d := single.Disposition(); d != nil {
			disp = strings.ToLower(d.Value)
		}
		mt := single.MediaType()
		switch {
		case disp == "attachment":
			found = true
		case mt == "application/pgp-signature" || mt == "application/pkcs7-signature" || mt == "application/x-pkcs7-signature":
			// Signatures (RFC 3156, RFC 8551) are not something to open.
		case disp == "inline" || single.ID != "":
			// Shown in place or referenced by cid:.
		case mt == "message/rfc822" || strings.HasPrefix(mt, "application/"):
			found = true
		case single.Filename() != "" && !strings.HasPrefix(mt, "text/"):
			found = true
		}
		return !found
	})
	return found
}
