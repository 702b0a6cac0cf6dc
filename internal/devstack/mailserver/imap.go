package mailserver

import (
	"net"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
)

// delim is imapmemserver's hierarchy delimiter.
const delim = '/'

// imapSession is one IMAP connection. Before authentication the embedded
// UserSession is nil; imapserver only calls authenticated-state methods
// after AUTHENTICATE succeeded.
type imapSession struct {
	*imapmemserver.UserSession

	s        *Server
	conn     *trackedConn
	acct     *account
	failures int
	counted  bool // a network connection, counted in Stats.Sessions
}

var (
	_ imapserver.SessionSASL      = (*imapSession)(nil)
	_ imapserver.SessionIMAP4rev2 = (*imapSession)(nil)
)

func (s *Server) newIMAPSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	sess := &imapSession{s: s}
	if p, ok := c.NetConn().(*pipeConn); ok {
		// In-process inspection connection (see Messages): pre-authenticated
		// (RFC 9051 section 7.1.4 PREAUTH).
		sess.acct = p.acct
		sess.UserSession = imapmemserver.NewUserSession(p.acct.user)
		return sess, &imapserver.GreetingData{PreAuth: true}, nil
	}
	s.imapConns.Add(1)
	s.sessions.Add(1)
	sess.counted = true
	sess.conn = tracked(c.NetConn())
	s.live.Store(sess, liveConn{conn: c.NetConn()})
	return sess, nil, nil
}

// Idle implements imapserver.Session: the memory server's IDLE, counted in Stats.IdleCommands.
func (sess *imapSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	sess.s.idles.Add(1)
	return sess.UserSession.Idle(w, stop)
}

// Close implements imapserver.Session.
func (sess *imapSession) Close() error {
	if sess.counted {
		sess.s.sessions.Add(-1)
		sess.s.live.Delete(sess)
	}
	if sess.UserSession != nil {
		return sess.UserSession.Close()
	}
	return nil
}

// Login refuses LOGIN: an OIDC-backed account has no password (Stalwart
// 0.13.2+ accepts app passwords only).
func (sess *imapSession) Login(username, password string) error {
	return imapserver.ErrAuthFailed
}

// AuthenticateMechanisms implements imapserver.SessionSASL.
func (sess *imapSession) AuthenticateMechanisms() []string { return sess.s.mechs }

// Authenticate implements imapserver.SessionSASL.
func (sess *imapSession) Authenticate(mech string) (sasl.Server, error) {
	mech = strings.ToUpper(mech)
	if !slices.Contains(sess.s.mechs, mech) {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeCannot,
			Text: "Authentication mechanism not supported.",
		}
	}
	unavailable := &imap.Error{
		// Stalwart maps every auth error to AUTHENTICATIONFAILED, even an
		// identity provider outage; Dovecot says UNAVAILABLE (RFC 5530).
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeAuthenticationFailed,
		Text: "Authentication failed: identity provider unavailable.",
	}
	if sess.s.opts.ErrorChallenge {
		unavailable = &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeUnavailable,
			Text: "Temporary authentication failure.",
		}
	}
	return &bearerServer{
		s:        sess.s,
		mech:     mech,
		conn:     sess.conn,
		failures: &sess.failures,
		replies: authReplies{
			failed: &imap.Error{
				Type: imap.StatusResponseTypeNo,
				Code: imap.ResponseCodeAuthenticationFailed,
				Text: "Authentication failed.",
			},
			unavailable: unavailable,
			malformed: &imap.Error{
				Type: imap.StatusResponseTypeNo,
				Code: imap.ResponseCodeAuthenticationFailed,
				Text: "Invalid SASL payload.",
			},
			badAck: &imap.Error{
				Type: imap.StatusResponseTypeBad,
				Text: "Invalid base64 data in continued response",
			},
		},
		onSuccess: func(email string) {
			sess.acct = sess.s.account(email, true)
			sess.UserSession = imapmemserver.NewUserSession(sess.acct.user)
			if v, ok := sess.s.live.Load(sess); ok {
				sess.s.live.Store(sess, liveConn{conn: v.(liveConn).conn, email: sess.acct.email})
			}
		},
	}, nil
}

// List implements LIST (RFC 9051 section 6.3.9) with the LIST-EXTENDED
// selection and return options (RFC 5258), LIST-STATUS (RFC 5819) and
// special-use attributes (RFC 6154), which imapmemserver cannot report.
// Special-use attributes are always returned, as Stalwart and Dovecot do.
func (sess *imapSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// RFC 9051 section 6.3.9: an empty pattern asks for the delimiter.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	type entry struct {
		name string
		info boxInfo
	}
	a := sess.acct
	a.mu.Lock()
	entries := make([]entry, 0, len(a.boxes))
	for name, info := range a.boxes {
		entries = append(entries, entry{name, *info})
	}
	a.mu.Unlock()
	slices.SortFunc(entries, func(x, y entry) int { return strings.Compare(x.name, y.name) })

	for _, e := range entries {
		match := false
		for _, p := range patterns {
			if imapserver.MatchList(e.name, delim, ref, p) {
				match = true
				break
			}
		}
		if !match ||
			(options.SelectSubscribed && !e.info.subscribed) ||
			(options.SelectSpecialUse && e.info.special == "") {
			continue
		}
		data := imap.ListData{Mailbox: e.name, Delim: delim}
		if e.info.subscribed && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if e.info.special != "" {
			data.Attrs = append(data.Attrs, e.info.special)
		}
		if options.ReturnStatus != nil {
			st, err := a.user.Status(e.name, options.ReturnStatus)
			if err != nil {
				continue // deleted meanwhile
			}
			data.Status = st
		}
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}
	return nil
}

// Create implements CREATE, with the USE option of RFC 6154 section 3.
func (sess *imapSession) Create(name string, options *imap.CreateOptions) error {
	name = strings.TrimRight(name, string(delim))
	if err := sess.acct.user.Create(name, options); err != nil {
		return err
	}
	info := &boxInfo{}
	if options != nil && len(options.SpecialUse) > 0 {
		info.special = options.SpecialUse[0]
	}
	sess.acct.mu.Lock()
	sess.acct.boxes[name] = info
	sess.acct.mu.Unlock()
	return nil
}

// Delete implements DELETE.
func (sess *imapSession) Delete(name string) error {
	if strings.EqualFold(name, "INBOX") {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "INBOX cannot be deleted"}
	}
	if err := sess.acct.user.Delete(name); err != nil {
		return err
	}
	sess.acct.mu.Lock()
	delete(sess.acct.boxes, name)
	sess.acct.mu.Unlock()
	return nil
}

// Rename implements RENAME; the special-use attribute moves with the box.
func (sess *imapSession) Rename(oldName, newName string, options *imap.RenameOptions) error {
	if strings.EqualFold(oldName, "INBOX") {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "renaming INBOX is not supported"}
	}
	newName = strings.TrimRight(newName, string(delim))
	if err := sess.acct.user.Rename(oldName, newName, options); err != nil {
		return err
	}
	a := sess.acct
	a.mu.Lock()
	if info, ok := a.boxes[oldName]; ok {
		a.boxes[newName] = info
		delete(a.boxes, oldName)
	}
	a.mu.Unlock()
	return nil
}

// Subscribe implements SUBSCRIBE.
func (sess *imapSession) Subscribe(name string) error { return sess.setSubscribed(name, true) }

// Unsubscribe implements UNSUBSCRIBE.
func (sess *imapSession) Unsubscribe(name string) error { return sess.setSubscribed(name, false) }

func (sess *imapSession) setSubscribed(name string, on bool) error {
	a := sess.acct
	a.mu.Lock()
	defer a.mu.Unlock()
	info, ok := a.boxes[name]
	if !ok {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	}
	info.subscribed = on
	return nil
}

// DropConnections closes every network IMAP connection authenticated as email, as a server restart or a network
// failure would, and reports how many it closed: tests of reconnecting clients (IDLE watches, the pool) use it.
func (s *Server) DropConnections(email string) int {
	n := 0
	s.live.Range(func(_, v any) bool {
		if lc := v.(liveConn); lc.email == strings.ToLower(email) {
			lc.conn.Close()
			n++
		}
		return true
	})
	return n
}

// liveConn is a network IMAP connection and, once authenticated, its account.
type liveConn struct {
	conn  net.Conn
	email string
}
