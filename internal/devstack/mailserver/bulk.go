package mailserver

import (
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// AppendBulk stores n messages, msg(0) to msg(n-1), in mailbox of the
// account email, creating both if needed, without going through IMAP: ten
// thousand messages take well under a second, for benchmarks of large
// folders. Internal dates ascend by one minute per message, ending now.
func (s *Server) AppendBulk(email, mailbox string, n int, msg func(i int) []byte) error {
	email = strings.ToLower(strings.TrimSpace(email))
	if !strings.Contains(email, "@") {
		return fmt.Errorf("mailserver: bulk append: invalid address %q", email)
	}
	a := s.account(email, true)
	a.create(mailbox, "")
	start := time.Now().Add(-time.Duration(n) * time.Minute)
	for i := range n {
		if err := a.append(mailbox, msg(i), nil, start.Add(time.Duration(i)*time.Minute)); err != nil {
			return fmt.Errorf("mailserver: bulk append to %s: %w", mailbox, err)
		}
	}
	return nil
}

// usage is the total size of the account's messages, as STATUS SIZE (RFC
// 8438) reports it per mailbox.
func (a *account) usage() int64 {
	a.mu.Lock()
	names := make([]string, 0, len(a.boxes))
	for name := range a.boxes {
		names = append(names, name)
	}
	a.mu.Unlock()
	var total int64
	for _, name := range names {
		if st, err := a.user.Status(name, &imap.StatusOptions{Size: true}); err == nil && st.Size != nil {
			total += *st.Size
		}
	}
	return total
}

// Append implements APPEND (RFC 9051 section 6.3.12) with the optional
// quota of Options.QuotaBytes.
func (sess *imapSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if q := sess.s.opts.QuotaBytes; q > 0 && sess.acct.usage()+r.Size() > q {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeOverQuota,
			Text: "Quota exceeded.",
		}
	}
	return sess.UserSession.Append(mailbox, r, options)
}

// Copy implements COPY (RFC 9051 section 6.4.7). When no message matches,
// it answers a plain OK like Dovecot and Stalwart: imapmemserver would send
// COPYUID with empty sets, which RFC 4315 section 3 does not allow and
// imapclient cannot parse.
func (sess *imapSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, err := sess.UserSession.Copy(numSet, dest)
	if err == nil && data != nil && len(data.SourceUIDs) == 0 {
		return nil, nil
	}
	return data, err
}

// Move implements MOVE (RFC 6851), with the same care as Copy for a set
// that matches no message.
func (sess *imapSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	crit := &imap.SearchCriteria{}
	kind := imapserver.NumKindSeq
	switch set := numSet.(type) {
	case imap.UIDSet:
		crit.UID, kind = []imap.UIDSet{set}, imapserver.NumKindUID
	case imap.SeqSet:
		crit.SeqNum = []imap.SeqSet{set}
	}
	data, err := sess.UserSession.Search(kind, crit, &imap.SearchOptions{})
	if err == nil && data.Count == 0 {
		if _, err := sess.acct.user.Status(dest, &imap.StatusOptions{}); err != nil {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
		}
		return nil
	}
	return sess.UserSession.Move(w, numSet, dest)
}
