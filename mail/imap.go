package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
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
	// broken is set once the connection is known to be unusable (I/O error,
	// context cancellation mid-command); the Pool then discards the session.
	broken atomic.Bool
}

// logoutTimeout bounds the polite LOGOUT in Close.
const logoutTimeout = 5 * time.Second

// wordDecoder decodes RFC 2047 encoded words in any charset go-message knows
// (ISO-2022-JP, windows-1252, ...), not only UTF-8 and ISO-8859-1.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// Dial connects to the IMAP server, sets up TLS as srv.TLS says and
// authenticates with the bearer token in c (AUTHENTICATE, RFC 9051 section
// 6.2.2). A refused token gives an error wrapping ErrAuthFailed, a temporary
// failure one wrapping ErrAuthUnavailable; on either the connection is closed.
func Dial(ctx context.Context, srv Server, c Credentials) (*Session, error) {
	sc, err := NewSASLClient(srv.Mechanism, c)
	if err != nil {
		return nil, err
	}
	mechName, _ := srv.Mechanism.saslName()

	dctx, cancel := context.WithTimeout(ctx, srv.dialTimeout())
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(dctx, "tcp", srv.addr())
	if err != nil {
		return nil, fmt.Errorf("mail: imap dial %s: %w", srv.addr(), err)
	}
	// Until Dial returns, a cancelled ctx aborts whatever I/O is in flight.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	opts := &imapclient.Options{WordDecoder: wordDecoder}
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
			return nil, fmt.Errorf("mail: imap starttls with %s: %w", srv.addr(), ctxErr(ctx, err))
		}
	case TLSNone:
		client = imapclient.New(conn, opts)
	default:
		conn.Close()
		return nil, fmt.Errorf("mail: unknown tls mode %q", srv.TLS)
	}
	s := &Session{c: client, conn: conn}

	if err := client.WaitGreeting(); err != nil {
		client.Close()
		return nil, fmt.Errorf("mail: imap greeting from %s: %w", srv.addr(), ctxErr(ctx, err))
	}
	if client.State() != imap.ConnStateNotAuthenticated {
		client.Close()
		return nil, fmt.Errorf("mail: imap server %s did not ask for authentication", srv.addr())
	}
	caps := client.Caps()
	if caps == nil {
		client.Close()
		return nil, fmt.Errorf("mail: imap capability from %s: %w", srv.addr(), ctxErr(ctx, errors.New("no response")))
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
		if errors.As(err, &ie) && ctx.Err() == nil {
			// The exchange ended with a tagged response, so the connection
			// is in a known state: log out politely.
			s.Close()
		} else {
			client.Close()
		}
		return nil, ctxErr(ctx, authErr)
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
	err := f()
	if !stop() {
		return fmt.Errorf("mail: imap %s: %w", what, ctx.Err())
	}
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if !errors.As(err, &ie) {
		s.broken.Store(true)
	}
	return fmt.Errorf("mail: imap %s: %w", what, err)
}

// Noop sends NOOP (RFC 9051 section 6.1.2), which checks that the
// connection is alive and lets the server send pending updates.
func (s *Session) Noop(ctx context.Context) error {
	return s.run(ctx, "noop", func() error { return s.c.Noop().Wait() })
}

// Mailboxes lists every mailbox with its message and unseen counts, in
// display order: Inbox, Drafts, Sent, Archive, Junk, Trash, then the rest
// by name. Counts come from LIST-STATUS (RFC 5819) in one round trip when the
// server has it, else from one STATUS per mailbox.
func (s *Session) Mailboxes(ctx context.Context) ([]Mailbox, error) {
	var out []Mailbox
	err := s.run(ctx, "list", func() error {
		caps := s.c.Caps()
		opts := &imap.ListOptions{}
		statusOpts := &imap.StatusOptions{NumMessages: true, NumUnseen: true}
		// Return options need LIST-EXTENDED (RFC 5258); IMAP4rev2 implies it.
		if caps.Has(imap.CapListExtended) && caps.Has(imap.CapSpecialUse) {
			opts.ReturnSpecialUse = true
		}
		if caps.Has(imap.CapListStatus) {
			opts.ReturnStatus = statusOpts
		}
		list, err := s.c.List("", "*", opts).Collect()
		if err != nil {
			return err
		}
		out = make([]Mailbox, 0, len(list))
		for _, ld := range list {
			mb := Mailbox{Name: ld.Mailbox}
			if ld.Delim != 0 {
				mb.Delimiter = string(ld.Delim)
			}
			for _, a := range ld.Attrs {
				if a == imap.MailboxAttrNoSelect || a == imap.MailboxAttrNonExistent {
					mb.NoSelect = true
				}
			}
			if !mb.NoSelect {
				st := ld.Status
				if st == nil {
					if st, err = s.c.Status(ld.Mailbox, statusOpts).Wait(); err != nil {
						return err
					}
				}
				if st.NumMessages != nil {
					mb.Messages = *st.NumMessages
				}
				if st.NumUnseen != nil {
					mb.Unseen = *st.NumUnseen
				}
			}
			out = append(out, mb)
		}
		assignSpecialUse(out, list)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortMailboxes(out)
	return out, nil
}

// specialOrder is the display order of special-use mailboxes.
var specialOrder = map[string]int{
	SpecialInbox: 0, SpecialDrafts: 1, SpecialSent: 2, SpecialArchive: 3, SpecialJunk: 4, SpecialTrash: 5,
}

// specialAttrs maps RFC 6154 attributes to roles.
var specialAttrs = map[imap.MailboxAttr]string{
	imap.MailboxAttrDrafts:  SpecialDrafts,
	imap.MailboxAttrSent:    SpecialSent,
	imap.MailboxAttrArchive: SpecialArchive,
	imap.MailboxAttrJunk:    SpecialJunk,
	imap.MailboxAttrTrash:   SpecialTrash,
}

// specialNames recognises the usual folder names of servers without
// SPECIAL-USE (compared case-insensitively with the last hierarchy level).
var specialNames = map[string]string{
	"drafts": SpecialDrafts, "draft": SpecialDrafts,
	"sent": SpecialSent, "sent items": SpecialSent, "sent messages": SpecialSent, "sent mail": SpecialSent,
	"archive": SpecialArchive, "archives": SpecialArchive,
	"junk": SpecialJunk, "spam": SpecialJunk, "junk e-mail": SpecialJunk, "junk email": SpecialJunk, "bulk mail": SpecialJunk,
	"trash": SpecialTrash, "deleted items": SpecialTrash, "deleted messages": SpecialTrash, "bin": SpecialTrash,
}

// assignSpecialUse gives each role to at most one mailbox: attributes first
// (RFC 6154), then, for roles no attribute claimed, the first mailbox in name
// order with a well-known name.
func assignSpecialUse(boxes []Mailbox, list []*imap.ListData) {
	taken := map[string]bool{}
	for i, ld := range list {
		if strings.EqualFold(ld.Mailbox, "INBOX") {
			boxes[i].Special = SpecialInbox
			taken[SpecialInbox] = true
			continue
		}
		// Attributes arrive canonicalised by imapclient (RFC 9051 7.3.1:
		// they are case-insensitive).
		for _, a := range ld.Attrs {
			if role, ok := specialAttrs[a]; ok && !taken[role] {
				boxes[i].Special = role
				taken[role] = true
				break
			}
		}
	}
	idx := make([]int, len(boxes))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(boxes[a].Name, boxes[b].Name) })
	for _, i := range idx {
		b := &boxes[i]
		if b.Special != "" || b.NoSelect {
			continue
		}
		leaf := b.Name
		if b.Delimiter != "" {
			if j := strings.LastIndex(leaf, b.Delimiter); j >= 0 {
				leaf = leaf[j+len(b.Delimiter):]
			}
		}
		if role, ok := specialNames[strings.ToLower(leaf)]; ok && !taken[role] {
			b.Special = role
			taken[role] = true
		}
	}
}

func sortMailboxes(boxes []Mailbox) {
	slices.SortStableFunc(boxes, func(a, b Mailbox) int {
		oa, aok := specialOrder[a.Special]
		ob, bok := specialOrder[b.Special]
		switch {
		case aok && bok:
			return oa - ob
		case aok:
			return -1
		case bok:
			return 1
		}
		if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
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
		sel, err := s.c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return err
		}
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
		switch {
		case disp == "attachment":
			found = true
		case disp == "inline" || single.ID != "":
			// Shown in place or referenced by cid:.
		case single.Filename() != "" && strings.ToLower(single.Type) != "text":
			found = true
		case strings.ToLower(single.Type) == "application":
			found = true
		}
		return !found
	})
	return found
}
