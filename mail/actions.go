package mail

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
)

var (
	// ErrNoMessage means a message (or a part of it) does not exist: its
	// UID was expunged, or never existed. UID FETCH of such a UID succeeds
	// with no data (RFC 9051 section 6.4.9), so it is detected by absence.
	ErrNoMessage = errors.New("mail: no such message")
	// ErrNoMailbox means a mailbox does not exist: IMAP NO [NONEXISTENT]
	// (RFC 5530 section 3) or [TRYCREATE] (RFC 9051 section 7.1).
	ErrNoMailbox = errors.New("mail: no such mailbox")
	// ErrQuota means the account is over its storage quota: IMAP NO
	// [OVERQUOTA] (RFC 9208 section 4.3, RFC 5530 section 3).
	ErrQuota = errors.New("mail: over quota")
)

// Flag is an IMAP flag (RFC 9051 section 2.3.2): a system flag such as
// \Seen or a keyword such as $Junk (RFC 5788).
type Flag string

// The flags the webmail sets.
const (
	FlagSeen     Flag = `\Seen`
	FlagFlagged  Flag = `\Flagged`
	FlagAnswered Flag = `\Answered`
	FlagDraft    Flag = `\Draft`
	FlagDeleted  Flag = `\Deleted`
)

// valid reports whether f can be sent as a flag: an optional backslash and
// an atom (RFC 9051 section 9, flag-keyword and flag-extension).
func (f Flag) valid() bool {
	s := strings.TrimPrefix(string(f), `\`)
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// examine opens box read-only (EXAMINE, RFC 9051 section 6.3.3).
func (s *Session) examine(box string) (*imap.SelectData, error) {
	return s.open(box, true)
}

// open selects box; a missing one gives an error wrapping ErrNoMailbox.
func (s *Session) open(box string, readOnly bool) (*imap.SelectData, error) {
	if err := checkMailboxName(box); err != nil {
		return nil, err
	}
	sel, err := s.sendSelect(box, readOnly).Wait()
	if err != nil {
		return nil, mapErr(err)
	}
	s.noteOpened(box, readOnly)
	s.noteValidity(box, sel.UIDValidity) // for the snippet cache (snippet.go)
	return sel, nil
}

// mapErr maps response codes onto the package's sentinels, keeping the
// *imap.Error in the chain (Session.run uses it to tell a NO from a broken
// connection).
func mapErr(err error) error {
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return err
	}
	switch ie.Code {
	case imap.ResponseCodeNonExistent, imap.ResponseCodeTryCreate:
		return fmt.Errorf("%w: %w", ErrNoMailbox, err)
	case imap.ResponseCodeOverQuota:
		return fmt.Errorf("%w: %w", ErrQuota, err)
	}
	return err
}

// checkMailboxName refuses names that cannot be a mailbox: empty, or with
// control characters (RFC 9051 section 5.1 asks clients not to create
// such names, and CR or LF cannot be sent in a quoted string).
func checkMailboxName(name string) error {
	if name == "" || len(name) > 1000 {
		return fmt.Errorf("%w %q", errMailboxName, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w %q", errMailboxName, name)
		}
	}
	return nil
}

var errMailboxName = errors.New("mail: invalid mailbox name")

func uidSet(uids []uint32) (imap.UIDSet, error) {
	var set imap.UIDSet
	for _, u := range uids {
		if u == 0 {
			return nil, errors.New("mail: invalid uid 0")
		}
		set.AddNum(imap.UID(u))
	}
	return set, nil
}

// SetFlag adds (on) or removes a flag on the messages uids of box with UID
// STORE ±FLAGS.SILENT (RFC 9051 section 6.4.6). UIDs that no longer exist
// are ignored, as the server ignores them, so a repeated action is
// harmless.
func (s *Session) SetFlag(ctx context.Context, box string, uids []uint32, f Flag, on bool) error {
	if !f.valid() {
		return fmt.Errorf("mail: invalid flag %q", f)
	}
	set, err := uidSet(uids)
	if err != nil || len(set) == 0 {
		return err
	}
	op := imap.StoreFlagsDel
	if on {
		op = imap.StoreFlagsAdd
	}
	return s.run(ctx, fmt.Sprintf("store %s in %q", f, box), func() error {
		if _, err := s.open(box, false); err != nil {
			return err
		}
		return s.c.Store(set, &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{imap.Flag(f)}}, nil).Close()
	})
}

// Move moves messages to another mailbox: UID MOVE (RFC 6851) when the
// server has MOVE (IMAP4rev2 includes it), else UID COPY, \Deleted and an
// expunge of exactly those UIDs (see Expunge). A missing source or target
// mailbox gives an error wrapping ErrNoMailbox ([TRYCREATE], RFC 9051
// section 6.4.7); UIDs that no longer exist are ignored.
func (s *Session) Move(ctx context.Context, box string, uids []uint32, to string) error {
	_, err := s.MoveUIDs(ctx, box, uids, to)
	return err
}

// MoveUIDs is Move that also returns the messages' UIDs in the destination,
// in no particular order, from the COPYUID response code (RFC 4315 section
// 3, part of IMAP4rev2; RFC 6851 section 4.3 has MOVE send it too), so that
// a move can be undone. It returns nil UIDs when the server does not say.
func (s *Session) MoveUIDs(ctx context.Context, box string, uids []uint32, to string) ([]uint32, error) {
	set, err := uidSet(uids)
	if err != nil || len(set) == 0 {
		return nil, err
	}
	if err := checkMailboxName(to); err != nil {
		return nil, err
	}
	if box == to {
		return nil, nil
	}
	var dest []uint32
	err = s.run(ctx, fmt.Sprintf("move from %q to %q", box, to), func() error {
		if _, err := s.open(box, false); err != nil {
			return err
		}
		if s.c.Caps().Has(imap.CapMove) {
			data, err := s.c.Move(set, to).Wait()
			if err != nil {
				return mapErr(err)
			}
			if data != nil {
				dest = numsOf(data.DestUIDs)
			}
			return nil
		}
		data, err := s.c.Copy(set, to).Wait()
		if err != nil {
			return mapErr(err)
		}
		if data != nil {
			dest = numsOf(data.DestUIDs)
		}
		return s.expunge(set)
	})
	return dest, err
}

// numsOf lists the UIDs of a COPYUID set; nil for anything else (a dynamic
// or empty set says nothing usable).
func numsOf(set imap.NumSet) []uint32 {
	us, ok := set.(imap.UIDSet)
	if !ok {
		return nil
	}
	nums, ok := us.Nums()
	if !ok {
		return nil
	}
	out := make([]uint32, len(nums))
	for i, n := range nums {
		out[i] = uint32(n)
	}
	return out
}

// Expunge permanently deletes the messages uids of box, and only those:
// \Deleted and UID EXPUNGE (RFC 4315 section 2.1, part of IMAP4rev2). A
// server without UIDPLUS only has EXPUNGE, which removes every message
// marked \Deleted; there, other messages' \Deleted flags are taken off
// for the EXPUNGE and put back after it (RFC 4315 section 1 describes
// this).
func (s *Session) Expunge(ctx context.Context, box string, uids []uint32) error {
	set, err := uidSet(uids)
	if err != nil || len(set) == 0 {
		return err
	}
	return s.run(ctx, fmt.Sprintf("expunge in %q", box), func() error {
		if _, err := s.open(box, false); err != nil {
			return err
		}
		return s.expunge(set)
	})
}

// expunge deletes set from the selected mailbox.
func (s *Session) expunge(set imap.UIDSet) error {
	deleted := func(uids imap.UIDSet, op imap.StoreFlagsOp) error {
		return s.c.Store(uids, &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	}
	if err := deleted(set, imap.StoreFlagsAdd); err != nil {
		return err
	}
	if s.c.Caps().Has(imap.CapUIDPlus) {
		return s.c.UIDExpunge(set).Close()
	}
	data, err := s.c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return err
	}
	var others imap.UIDSet
	for _, u := range data.AllUIDs() {
		if !set.Contains(u) {
			others.AddNum(u)
		}
	}
	if len(others) > 0 {
		if err := deleted(others, imap.StoreFlagsDel); err != nil {
			return err
		}
	}
	errExpunge := s.c.Expunge().Close()
	if len(others) > 0 {
		if err := deleted(others, imap.StoreFlagsAdd); err != nil && errExpunge == nil {
			errExpunge = err
		}
	}
	return errExpunge
}

// CreateMailbox creates a mailbox (RFC 9051 section 6.3.4). Use the
// server's hierarchy delimiter (Mailbox.Delimiter) for a child.
func (s *Session) CreateMailbox(ctx context.Context, name string) error {
	if err := checkMailboxName(name); err != nil {
		return err
	}
	return s.run(ctx, fmt.Sprintf("create %q", name), func() error {
		return mapErr(s.c.Create(name, nil).Wait())
	})
}

// RenameMailbox renames a mailbox (RFC 9051 section 6.3.6). A missing
// mailbox gives an error wrapping ErrNoMailbox.
func (s *Session) RenameMailbox(ctx context.Context, from, to string) error {
	if err := checkMailboxName(from); err != nil {
		return err
	}
	if err := checkMailboxName(to); err != nil {
		return err
	}
	return s.run(ctx, fmt.Sprintf("rename %q to %q", from, to), func() error {
		return mapErr(s.c.Rename(from, to, nil).Wait())
	})
}

// DeleteMailbox deletes a mailbox and the messages in it (RFC 9051 section
// 6.3.5). A missing mailbox gives an error wrapping ErrNoMailbox.
func (s *Session) DeleteMailbox(ctx context.Context, name string) error {
	if err := checkMailboxName(name); err != nil {
		return err
	}
	return s.run(ctx, fmt.Sprintf("delete %q", name), func() error {
		if mb := s.c.Mailbox(); mb != nil && mb.Name == name {
			// Leave it first: some servers refuse to delete the selected
			// mailbox. UNSELECT (RFC 3691, in IMAP4rev2) closes it without
			// the implicit expunge of CLOSE.
			var err error
			if s.c.Caps().Has(imap.CapUnselect) {
				s.opened = opened{}
				err = s.c.Unselect().Wait()
			} else {
				_, err = s.open("INBOX", true)
			}
			if err != nil {
				return err
			}
		}
		return mapErr(s.c.Delete(name).Wait())
	})
}

// Append stores msg in box with flags (APPEND, RFC 9051 section 6.3.12),
// e.g. a sent message in Sent with \Seen or a draft in Drafts with \Draft.
// NO [OVERQUOTA] gives an error wrapping ErrQuota (RFC 9208 section 4.3),
// a missing mailbox ([TRYCREATE]) one wrapping ErrNoMailbox.
func (s *Session) Append(ctx context.Context, box string, flags []Flag, msg []byte) error {
	_, err := s.AppendUID(ctx, box, flags, msg)
	return err
}

// AppendUID is Append that also returns the stored message's UID, from the
// APPENDUID response code (RFC 4315 section 3, part of IMAP4rev2); 0 when
// the server does not say. A draft saved again replaces the copy by UID.
func (s *Session) AppendUID(ctx context.Context, box string, flags []Flag, msg []byte) (uint32, error) {
	if err := checkMailboxName(box); err != nil {
		return 0, err
	}
	if len(msg) == 0 {
		return 0, errors.New("mail: append: empty message")
	}
	opts := &imap.AppendOptions{}
	for _, f := range flags {
		if !f.valid() {
			return 0, fmt.Errorf("mail: invalid flag %q", f)
		}
		opts.Flags = append(opts.Flags, imap.Flag(f))
	}
	var uid uint32
	err := s.run(ctx, fmt.Sprintf("append to %q", box), func() error {
		cmd := s.c.Append(box, int64(len(msg)), opts)
		_, werr := cmd.Write(msg)
		cerr := cmd.Close()
		data, err := cmd.Wait()
		if err != nil {
			return mapErr(err)
		}
		if data != nil {
			uid = uint32(data.UID)
		}
		return errors.Join(werr, cerr)
	})
	return uid, err
}
