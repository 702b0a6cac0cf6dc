package mail

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// TestReadByStructureMatchesWhole: a message over SpeculativeBytes is read from its structure and its text parts
// only; for every message of the MIME corpus, that must give what parsing the whole message gives (the sizes of
// attachments excepted, which are estimated from the encoded size).
func TestReadByStructureMatchesWhole(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	if err := s.CreateMailbox(ctx, "Corpus"); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "mime", "*.eml"))
	for _, f := range files {
		if err := s.Append(ctx, "Corpus", nil, readCorpus(t, filepath.Base(f))); err != nil {
			t.Fatal(err)
		}
	}
	old := speculativeBytes
	speculativeBytes = 64 // every message is "big": the header is cut, the structure path runs
	t.Cleanup(func() { speculativeBytes = old })
	tested := 0
	for i, f := range files {
		name := filepath.Base(f)
		switch name {
		case "truncated-multipart.eml", "corrupt-base64.eml", "no-boundary.eml", "broken-boundary.eml":
			continue // the server's structure of broken input differs from go-message's reading, or breaks
		}
		raw := readCorpus(t, name)
		if len(raw) <= 64 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			want := parseMessage(raw)
			if want.Malformed {
				t.Skip("malformed: read whole")
			}
			r, err := s.Read(ctx, "Corpus", uint32(i+1), ReadOptions{})
			if err != nil {
				t.Fatalf("Read = %v", err)
			}
			got := r.Message
			if got.Subject != want.Subject || !got.Date.Equal(want.Date) || len(got.From) != len(want.From) {
				t.Errorf("header: Subject %q, Date %v, From %v; want %q, %v, %v", got.Subject, got.Date, got.From, want.Subject, want.Date, want.From)
			}
			if got.Text != want.Text {
				t.Errorf("Text = %q, want %q", got.Text, want.Text)
			}
			if got.HTML != want.HTML {
				t.Errorf("HTML = %q, want %q", got.HTML, want.HTML)
			}
			same := func(what string, g, w []Part) {
				t.Helper()
				if len(g) != len(w) {
					t.Fatalf("%s = %+v, want %+v", what, g, w)
				}
				for j := range w {
					a, b := g[j], w[j]
					a.Size, b.Size = 0, 0
					if a != b {
						t.Errorf("%s[%d] = %+v, want %+v", what, j, a, b)
					}
					// base64 overhead is estimated from full lines of 76; short or odd lines make it inexact.
					if d := g[j].Size - w[j].Size; d < -w[j].Size/4-64 || d > w[j].Size/4+64 {
						t.Errorf("%s[%d].Size = %d, want about %d", what, j, g[j].Size, w[j].Size)
					}
				}
			}
			same("Attachments", got.Attachments, want.Attachments)
			same("Inline", got.Inline, want.Inline)
			tested++
		})
	}
	if tested < 5 {
		t.Errorf("only %d corpus messages went down the structure path", tested)
	}
}

// TestReadMarksSeenAndLists: Read with MarkSeen sets \Seen (the message shows as read in the answer, and to the
// folder counts listed in the same round trip); without it the message stays unread.
func TestReadMarksSeenAndLists(t *testing.T) {
	_, s := seededSession(t, mailserver.Options{})
	ctx := ctxT(t)
	if err := s.Append(ctx, "INBOX", nil, readCorpus(t, "nested-alternative.eml")); err != nil {
		t.Fatal(err)
	}
	p, err := s.List(ctx, "INBOX", 0, 1)
	if err != nil || len(p.Summaries) != 1 {
		t.Fatalf("List = %v, %v", p, err)
	}
	uid := p.Summaries[0].UID
	unseen := func(boxes []Mailbox) uint32 {
		b, _ := findBox(boxes, "INBOX")
		return b.Unseen
	}
	r, err := s.Read(ctx, "INBOX", uid, ReadOptions{Mailboxes: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Message.Seen || len(r.Mailboxes) == 0 {
		t.Fatalf("Read without MarkSeen: Seen = %v, %d mailboxes", r.Message.Seen, len(r.Mailboxes))
	}
	before := unseen(r.Mailboxes)
	r, err = s.Read(ctx, "INBOX", uid, ReadOptions{MarkSeen: true, Mailboxes: true})
	if err != nil || r.MarkErr != nil {
		t.Fatalf("Read = %v, MarkErr %v", err, r.MarkErr)
	}
	if !r.Message.Seen {
		t.Error("Read with MarkSeen: Seen = false")
	}
	if got := unseen(r.Mailboxes); got != before-1 {
		t.Errorf("INBOX unseen listed with the read = %d, want %d", got, before-1)
	}
	if _, err := s.Read(ctx, "INBOX", uid+100, ReadOptions{MarkSeen: true}); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Read of a missing UID = %v, want ErrNoMessage", err)
	}
	if _, err := s.Read(ctx, "Nope", uid, ReadOptions{MarkSeen: true}); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("Read in a missing mailbox = %v, want ErrNoMailbox", err)
	}
}
