package mail

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Mailboxes lists every mailbox with its message and unseen counts, in
// display order: Inbox, Drafts, Sent, Archive, Junk, Trash, then the rest
// by name. Counts come from LIST-STATUS (RFC 5819) in one round trip when the
// server has it, else from one STATUS per mailbox.
func (s *Session) Mailboxes(ctx context.Context) ([]Mailbox, error) {
	var out []Mailbox
	err := s.run(ctx, "list", func() error {
		var err error
		out, err = s.finishMailboxes(s.startMailboxes())
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// startMailboxes sends the LIST of Mailboxes without waiting for the answer, so that it can share a round trip
// with the commands sent after it (Overview).
func (s *Session) startMailboxes() *imapclient.ListCommand {
	caps := s.c.Caps()
	opts := &imap.ListOptions{}
	// Return options need LIST-EXTENDED (RFC 5258); IMAP4rev2 implies it.
	if caps.Has(imap.CapListExtended) && caps.Has(imap.CapSpecialUse) {
		opts.ReturnSpecialUse = true
	}
	if caps.Has(imap.CapListStatus) {
		opts.ReturnStatus = mailboxStatusItems
	}
	return s.c.List("", "*", opts)
}

var mailboxStatusItems = &imap.StatusOptions{NumMessages: true, NumUnseen: true}

// finishMailboxes collects the answer to startMailboxes, with one more (pipelined) round trip of STATUS commands
// on a server without LIST-STATUS. The result is sorted for display.
func (s *Session) finishMailboxes(cmd *imapclient.ListCommand) ([]Mailbox, error) {
	list, err := cmd.Collect()
	if err != nil {
		return nil, err
	}
	out := make([]Mailbox, len(list))
	// Without LIST-STATUS, the STATUS commands are pipelined (RFC 9051
	// section 5.5) rather than sent one round trip at a time.
	pending := map[int]*imapclient.StatusCommand{}
	for i, ld := range list {
		mb := &out[i]
		mb.Name = ld.Mailbox
		if ld.Delim != 0 {
			mb.Delimiter = string(ld.Delim)
		}
		for _, a := range ld.Attrs {
			if a == imap.MailboxAttrNoSelect || a == imap.MailboxAttrNonExistent {
				mb.NoSelect = true
			}
		}
		switch {
		case mb.NoSelect:
		case ld.Status != nil:
			setCounts(mb, ld.Status)
		default:
			pending[i] = s.c.Status(ld.Mailbox, mailboxStatusItems)
		}
	}
	var firstErr error
	for i, cmd := range pending {
		st, err := cmd.Wait()
		var ie *imap.Error
		switch {
		case err == nil:
			setCounts(&out[i], st)
		case errors.As(err, &ie):
			// The mailbox vanished between LIST and STATUS: show it
			// without counts rather than fail the whole list.
		case firstErr == nil:
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	assignSpecialUse(out, list)
	sortMailboxes(out)
	return out, nil
}

func setCounts(mb *Mailbox, st *imap.StatusData) {
	if st.NumMessages != nil {
		mb.Messages = *st.NumMessages
	}
	if st.NumUnseen != nil {
		mb.Unseen = *st.NumUnseen
	}
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
