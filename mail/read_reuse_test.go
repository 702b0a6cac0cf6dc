package mail

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// commandProxy passes a connection through to upstream and records the name of every command the client sends
// (the second word of its line, after the tag; "UID FETCH" for UID commands), for tests of what a call asks for.
func commandProxy(t *testing.T, upstream string) (port int, commands func() []string) {
	t.Helper()
	var (
		mu   sync.Mutex
		seen []string
	)
	record := func(line string) string {
		if f := strings.Fields(line); len(f) >= 2 {
			name := strings.ToUpper(f[1])
			if name == "UID" && len(f) >= 3 {
				name += " " + strings.ToUpper(f[2])
			}
			mu.Lock()
			seen = append(seen, name)
			mu.Unlock()
		}
		return line
	}
	same := func(line string) string { return line }
	port = lineProxy(t, upstream, func() (func(string) string, func(string) string) { return record, same })
	return port, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(seen)
		seen = seen[:0]
		return out
	}
}

// dialVia dials alice's session through a proxy on port (commandProxy, threadingProxy) to e's IMAP server; it is
// closed when the test ends.
func dialVia(t *testing.T, e *env, port int) *Session {
	t.Helper()
	srv := e.imapServer(TLSNone, MechOAuthBearer)
	srv.Port = port
	s, err := Dial(ctxT(t), srv, Credentials{alice, aliceToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestReadReusesSelection: a message read on a session that has its folder open, in a mode that will do, sends no
// SELECT (re-opening a large mailbox is what costs Dovecot most), only a NOOP first when the folder counts are read
// with it; one that needs \Seen set on a folder opened read-only SELECTs it; and the folder counts follow another
// client's change, as the NOOP brings the session's view up to date first.
func TestReadReusesSelection(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	if err := e.srv.AppendBulk(alice, "Bulk", 20, bulkMessage); err != nil {
		t.Fatal(err)
	}
	port, commands := commandProxy(t, fmt.Sprintf("127.0.0.1:%d", e.imap))
	s := dialVia(t, e, port)
	ctx := ctxT(t)
	other, err := Dial(ctx, e.imapServer(TLSNone, MechOAuthBearer), Credentials{alice, aliceToken})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	unseen := func(boxes []Mailbox) int {
		for _, b := range boxes {
			if b.Name == "Bulk" {
				return int(b.Unseen)
			}
		}
		t.Fatal("no Bulk in the folder list")
		return 0
	}
	commands()
	for _, step := range []struct {
		name   string
		before func()
		uid    uint32
		opt    ReadOptions
		opens  string // the SELECT or EXAMINE sent, "" for none (NOOP)
		unseen int    // Bulk's unseen count read with the message, when opt.Mailboxes
	}{
		{name: "folder not open", uid: 1, opens: "EXAMINE"},
		{name: "open read-only, read without marking", uid: 2, opens: ""},
		{name: "open read-only, read and mark", uid: 3, opt: ReadOptions{MarkSeen: true, Mailboxes: true}, opens: "SELECT", unseen: 19},
		{name: "open read-write, read and mark", uid: 4, opt: ReadOptions{MarkSeen: true, Mailboxes: true}, opens: "", unseen: 18},
		{name: "open read-write, read without marking", uid: 5, opt: ReadOptions{Mailboxes: true}, opens: "", unseen: 18},
		{name: "another client read one", before: func() {
			if _, err := other.open("Bulk", false); err != nil {
				t.Fatal(err)
			}
			if err := other.c.Store(imap.UIDSetNum(10), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
		}, uid: 6, opt: ReadOptions{MarkSeen: true, Mailboxes: true}, opens: "", unseen: 16},
		{name: "after a list elsewhere", before: func() {
			if _, err := s.List(ctx, "INBOX", 0, 10); err != nil {
				t.Fatal(err)
			}
			commands()
		}, uid: 7, opt: ReadOptions{MarkSeen: true}, opens: "SELECT"},
	} {
		if step.before != nil {
			step.before()
		}
		r, err := s.Read(ctx, "Bulk", step.uid, step.opt)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if r.Message.UID != step.uid {
			t.Errorf("%s: read UID %d, want %d", step.name, r.Message.UID, step.uid)
		}
		sent := commands()
		opens := ""
		for _, c := range sent {
			if c == "SELECT" || c == "EXAMINE" {
				opens = c
			}
		}
		// Without SELECT, a NOOP first exactly when the folder counts are read with the message.
		if opens != step.opens || (opens == "" && slices.Contains(sent, "NOOP") != step.opt.Mailboxes) {
			t.Errorf("%s: sent %v, want %q to open the folder (none: NOOP first if the counts are read)", step.name, sent, step.opens)
		}
		if step.opt.Mailboxes {
			if got := unseen(r.Mailboxes); got != step.unseen {
				t.Errorf("%s: Bulk unseen %d, want %d", step.name, got, step.unseen)
			}
		}
		if step.opt.MarkSeen {
			msgs, err := e.srv.Messages(alice, "Bulk")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(msgs[step.uid-1].Flags, string(imap.FlagSeen)) {
				t.Errorf("%s: message %d not marked read at the server", step.name, step.uid)
			}
		}
	}
}
