package mail

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// stored returns the stored messages of box by UID.
func stored(t *testing.T, e *env, box string) map[uint32]mailserver.StoredMessage {
	t.Helper()
	msgs, err := e.srv.Messages(alice, box)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32]mailserver.StoredMessage{}
	for _, m := range msgs {
		out[m.UID] = m
	}
	return out
}

func hasFlag(m mailserver.StoredMessage, f Flag) bool {
	return slices.ContainsFunc(m.Flags, func(s string) bool { return strings.EqualFold(s, string(f)) })
}

func TestSetFlag(t *testing.T) {
	e, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	uids := []uint32{1, 2, 3}
	for _, f := range []Flag{FlagFlagged, FlagSeen, FlagAnswered, "$Junk"} {
		if err := s.SetFlag(ctx, "Receipts", uids, f, true); err != nil {
			t.Fatalf("SetFlag(%s, on) error = %v", f, err)
		}
		for _, u := range uids {
			if m := stored(t, e, "Receipts")[u]; !hasFlag(m, f) {
				t.Errorf("uid %d flags = %v, want %s", u, m.Flags, f)
			}
		}
		if err := s.SetFlag(ctx, "Receipts", uids[:2], f, false); err != nil {
			t.Fatalf("SetFlag(%s, off) error = %v", f, err)
		}
		got := stored(t, e, "Receipts")
		if hasFlag(got[1], f) || hasFlag(got[2], f) || !hasFlag(got[3], f) {
			t.Errorf("after clearing %s on 1,2: %v %v %v", f, got[1].Flags, got[2].Flags, got[3].Flags)
		}
	}
	// Gone UIDs are ignored; no UIDs is a no-op.
	if err := s.SetFlag(ctx, "Receipts", []uint32{999}, FlagSeen, true); err != nil {
		t.Errorf("SetFlag(gone uid) error = %v", err)
	}
	if err := s.SetFlag(ctx, "Receipts", nil, FlagSeen, true); err != nil {
		t.Errorf("SetFlag(no uids) error = %v", err)
	}
	for _, f := range []Flag{"", `\`, "has space", "paren(", "a\r\nb", `\Seen)`} {
		if err := s.SetFlag(ctx, "Receipts", uids, f, true); err == nil {
			t.Errorf("SetFlag(%q) succeeded", f)
		}
	}
	if err := s.SetFlag(ctx, "Receipts", []uint32{0}, FlagSeen, true); err == nil {
		t.Error("SetFlag(uid 0) succeeded")
	}
	if err := s.SetFlag(ctx, "Nope", uids, FlagSeen, true); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("SetFlag(missing box) error = %v, want ErrNoMailbox", err)
	}
}

// moveVariants are the server capability sets for Move and Expunge.
var moveVariants = []struct {
	name    string
	disable []string
}{
	{"MOVE", nil},
	{"COPY and UID EXPUNGE", []string{"MOVE"}},
	{"COPY and EXPUNGE without UIDPLUS", []string{"MOVE", "UIDPLUS"}},
}

func TestMove(t *testing.T) {
	for _, v := range moveVariants {
		t.Run(v.name, func(t *testing.T) {
			e, s := seededSession(t, mailserver.Options{DisableCaps: v.disable})
			ctx := ctxT(t)
			if err := e.srv.AppendBulk(alice, "Src", 6, bulkMessage); err != nil {
				t.Fatal(err)
			}
			// A message the user marked \Deleted elsewhere must survive.
			if err := s.SetFlag(ctx, "Src", []uint32{5}, FlagDeleted, true); err != nil {
				t.Fatal(err)
			}
			if err := s.Move(ctx, "Src", []uint32{2, 4, 6}, "Archive"); err != nil {
				t.Fatalf("Move() error = %v", err)
			}
			src := stored(t, e, "Src")
			if len(src) != 3 || src[1].Raw == nil || src[3].Raw == nil || !hasFlag(src[5], FlagDeleted) {
				t.Errorf("Src after move = %v, want UIDs 1, 3 and 5 (still \\Deleted)", src)
			}
			var subjects []string
			for _, m := range stored(t, e, "Archive") {
				if strings.Contains(string(m.Raw), "Subject: Bulk message") {
					subjects = append(subjects, string(m.Raw[strings.Index(string(m.Raw), "Subject: "):][:len("Subject: Bulk message 1")]))
					if hasFlag(m, FlagDeleted) {
						t.Errorf("moved message has \\Deleted: %v", m.Flags)
					}
				}
			}
			slices.Sort(subjects)
			if want := []string{"Subject: Bulk message 1", "Subject: Bulk message 3", "Subject: Bulk message 5"}; !slices.Equal(subjects, want) {
				t.Errorf("moved = %q, want %q", subjects, want)
			}

			if err := s.Move(ctx, "Src", []uint32{1}, "No such folder"); !errors.Is(err, ErrNoMailbox) {
				t.Errorf("Move(to missing) error = %v, want ErrNoMailbox", err)
			}
			if err := s.Move(ctx, "No such folder", []uint32{1}, "Archive"); !errors.Is(err, ErrNoMailbox) {
				t.Errorf("Move(from missing) error = %v, want ErrNoMailbox", err)
			}
			if got := len(stored(t, e, "Src")); got != 3 {
				t.Errorf("Src has %d messages after failed moves, want 3", got)
			}
			if err := s.Move(ctx, "Src", []uint32{999}, "Archive"); err != nil {
				t.Errorf("Move(gone uid) error = %v", err)
			}
			if err := s.Move(ctx, "Src", []uint32{1}, "Src"); err != nil {
				t.Errorf("Move(same box) error = %v", err)
			}
			if err := s.Noop(ctx); err != nil {
				t.Errorf("session unusable after failed moves: %v", err)
			}
		})
	}
}

func TestExpunge(t *testing.T) {
	for _, v := range moveVariants[1:] {
		t.Run(v.name, func(t *testing.T) {
			e, s := seededSession(t, mailserver.Options{DisableCaps: v.disable})
			ctx := ctxT(t)
			if err := e.srv.AppendBulk(alice, "Src", 5, bulkMessage); err != nil {
				t.Fatal(err)
			}
			if err := s.SetFlag(ctx, "Src", []uint32{1, 3}, FlagDeleted, true); err != nil {
				t.Fatal(err)
			}
			if err := s.Expunge(ctx, "Src", []uint32{3, 4}); err != nil {
				t.Fatalf("Expunge() error = %v", err)
			}
			src := stored(t, e, "Src")
			var uids []uint32
			for u := range src {
				uids = append(uids, u)
			}
			slices.Sort(uids)
			if !slices.Equal(uids, []uint32{1, 2, 5}) || !hasFlag(src[1], FlagDeleted) || hasFlag(src[2], FlagDeleted) {
				t.Errorf("after Expunge(3, 4): UIDs %v, flags of 1: %v; want 1 (still \\Deleted), 2, 5", uids, src[1].Flags)
			}
			if err := s.Expunge(ctx, "Src", []uint32{3}); err != nil {
				t.Errorf("Expunge(gone uid) error = %v", err)
			}
			if err := s.Expunge(ctx, "Nope", []uint32{1}); !errors.Is(err, ErrNoMailbox) {
				t.Errorf("Expunge(missing box) error = %v, want ErrNoMailbox", err)
			}
		})
	}
}

func TestMailboxAdmin(t *testing.T) {
	e, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	names := func() []string {
		boxes, err := s.Mailboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range boxes {
			out = append(out, b.Name)
		}
		return out
	}
	if err := s.CreateMailbox(ctx, "Clients"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, "Clients/ACME"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, "Reisen – Überblick"); err != nil { // modified UTF-7 on the wire (RFC 3501 5.1.3)
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, "Clients"); err == nil || errors.Is(err, ErrNoMailbox) {
		t.Errorf("CreateMailbox(existing) error = %v, want a NO", err)
	}
	if got := names(); !slices.Contains(got, "Clients/ACME") || !slices.Contains(got, "Reisen – Überblick") {
		t.Errorf("Mailboxes() = %v", got)
	}
	if err := e.srv.AppendBulk(alice, "Clients/ACME", 2, bulkMessage); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(ctx, "Clients/ACME", "Clients/Acme Corp"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.List(ctx, "Clients/Acme Corp", 0, 10); err != nil || p.Total != 2 {
		t.Errorf("List(renamed) = %+v, %v; want the 2 messages", p, err)
	}
	if err := s.RenameMailbox(ctx, "Nope", "Nope2"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("RenameMailbox(missing) error = %v, want ErrNoMailbox", err)
	}
	// Deleting the selected mailbox.
	if err := s.DeleteMailbox(ctx, "Clients/Acme Corp"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, "Clients/Acme Corp"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("DeleteMailbox(missing) error = %v, want ErrNoMailbox", err)
	}
	if err := s.DeleteMailbox(ctx, "INBOX"); err == nil {
		t.Error("DeleteMailbox(INBOX) succeeded")
	}
	if got := names(); slices.Contains(got, "Clients/Acme Corp") {
		t.Errorf("Mailboxes() after delete = %v", got)
	}
	for _, bad := range []string{"", "a\r\nb", "tab\there", "nul\x00"} {
		if err := s.CreateMailbox(ctx, bad); err == nil {
			t.Errorf("CreateMailbox(%q) succeeded", bad)
		}
		if _, err := s.List(ctx, bad, 0, 1); err == nil {
			t.Errorf("List(%q) succeeded", bad)
		}
	}
	if err := s.Noop(ctx); err != nil {
		t.Errorf("session unusable after refused names: %v", err)
	}
}

func TestAppend(t *testing.T) {
	e, s := seededSession(t, mailserver.Options{QuotaBytes: 200_000})
	ctx := ctxT(t)
	msg := bulkMessage(1)
	if err := s.Append(ctx, "Drafts", []Flag{FlagDraft, FlagSeen}, msg); err != nil {
		t.Fatalf("Append() error = %v", err)
	}
	var found bool
	for _, m := range stored(t, e, "Drafts") {
		if string(m.Raw) == string(msg) {
			found = true
			if !hasFlag(m, FlagDraft) || !hasFlag(m, FlagSeen) {
				t.Errorf("appended flags = %v", m.Flags)
			}
		}
	}
	if !found {
		t.Error("appended message not stored verbatim")
	}
	if err := s.Append(ctx, "Nope", nil, msg); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("Append(missing box) error = %v, want ErrNoMailbox", err)
	}
	if err := s.Append(ctx, "Drafts", []Flag{"bad flag"}, msg); err == nil {
		t.Error("Append(bad flag) succeeded")
	}
	if err := s.Append(ctx, "Drafts", nil, nil); err == nil {
		t.Error("Append(empty) succeeded")
	}

	big := fmt.Appendf(nil, "Subject: big\r\n\r\n%s\r\n", strings.Repeat("x", 250_000))
	before := len(stored(t, e, "Sent"))
	if err := s.Append(ctx, "Sent", []Flag{FlagSeen}, big); !errors.Is(err, ErrQuota) {
		t.Errorf("Append(over quota) error = %v, want ErrQuota", err)
	}
	if got := len(stored(t, e, "Sent")); got != before {
		t.Errorf("Sent has %d messages after a refused append, want %d", got, before)
	}
	if err := s.Append(ctx, "Sent", []Flag{FlagSeen}, msg); err != nil {
		t.Errorf("Append() after ErrQuota: %v", err)
	}
}

// MoveUIDs returns where the messages went (COPYUID), so that moving those UIDs back undoes the move.
func TestMoveUIDsUndo(t *testing.T) {
	for _, v := range moveVariants {
		t.Run(v.name, func(t *testing.T) {
			e, s := seededSession(t, mailserver.Options{DisableCaps: v.disable})
			ctx := ctxT(t)
			if err := e.srv.AppendBulk(alice, "Src", 4, bulkMessage); err != nil {
				t.Fatal(err)
			}
			before := len(stored(t, e, "Archive"))
			dest, err := s.MoveUIDs(ctx, "Src", []uint32{2, 3}, "Archive")
			if err != nil {
				t.Fatalf("MoveUIDs() error = %v", err)
			}
			archive := stored(t, e, "Archive")
			if len(dest) != 2 || len(archive) != before+2 {
				t.Fatalf("MoveUIDs() = %v with %d messages in Archive, want 2 new UIDs and %d", dest, len(archive), before+2)
			}
			for _, u := range dest {
				if _, ok := archive[u]; !ok {
					t.Errorf("MoveUIDs() names UID %d, not in Archive %v", u, archive)
				}
			}
			back, err := s.MoveUIDs(ctx, "Archive", dest, "Src")
			if err != nil || len(back) != 2 {
				t.Fatalf("moving back = %v, %v", back, err)
			}
			if got := len(stored(t, e, "Src")); got != 4 {
				t.Errorf("Src holds %d messages after the undo, want 4", got)
			}
			if got := len(stored(t, e, "Archive")); got != before {
				t.Errorf("Archive holds %d messages after the undo, want %d", got, before)
			}
		})
	}
}

// AppendUID names the stored copy (APPENDUID), so that a draft saved again can replace exactly it.
func TestAppendUID(t *testing.T) {
	e, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	msg := bulkMessage(2)
	uid, err := s.AppendUID(ctx, "Drafts", []Flag{FlagDraft}, msg)
	if err != nil || uid == 0 {
		t.Fatalf("AppendUID() = %d, %v; want a UID", uid, err)
	}
	if m, ok := stored(t, e, "Drafts")[uid]; !ok || string(m.Raw) != string(msg) {
		t.Errorf("UID %d does not hold the appended message", uid)
	}
}
