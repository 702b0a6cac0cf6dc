package mail

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestSnippetFetchInterleaved: a list path pipelines the snippet FETCH behind the FETCH of its rows and reads the rows
// first. A server may run pipelined FETCHes concurrently and interleave their answers (Dovecot does, RFC 9051 section
// 5.5): here the first snippet, with its literal, comes before the rows are complete. imapclient hands a literal over
// and waits until it is read, so unless the snippet FETCH is drained while the rows are read, the rows never finish.
// That hung the first inbox page after a cold sign-in in scripts/bench until the client gave up (issue 14).
func TestSnippetFetchInterleaved(t *testing.T) {
	s := fakeFetches(t, func(send func(string), tags []string) {
		text := "Hello from the first message"
		env := `ENVELOPE ("Sat, 5 Dec 2026 12:00:00 +0000" "Hi" NIL NIL NIL NIL NIL NIL NIL NIL)`
		send("* 1 FETCH (UID 1 FLAGS (\\Seen) " + env + ")\r\n")
		send(fmt.Sprintf("* 1 FETCH (UID 1 BODY[TEXT]<0> {%d}\r\n%s)\r\n", len(text), text)) // the snippet, early
		send("* 2 FETCH (UID 2 FLAGS () " + env + ")\r\n")
		send(tags[0] + " OK FETCH done\r\n")
		send(fmt.Sprintf("* 2 FETCH (UID 2 BODY[TEXT]<0> {%d}\r\n%s)\r\n", len(text), text))
		send(tags[1] + " OK FETCH done\r\n")
	})
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		rows, err := s.fetchSeq(1, 2)
		done <- result{len(rows), err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.n != 2 {
			t.Errorf("fetchSeq(1, 2) = %d rows, %v; want 2 rows", r.n, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fetchSeq did not return in 5 s: the rows wait behind the snippet FETCH's unread literal")
	}
}

// TestSnippetAnswerBeforeItsRow: when a message's snippet answer comes before its row answer, imapclient hands the
// snippet to the row FETCH (the first pending FETCH that asked for that message) and the row to the snippet FETCH.
// collectSnippets sorts them out by what they hold; without it the page lacked the row and cached an empty snippet.
func TestSnippetAnswerBeforeItsRow(t *testing.T) {
	const text = "Hello from the message"
	s := fakeFetches(t, func(send func(string), tags []string) {
		bs := fmt.Sprintf(`BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" %d 1 NIL NIL NIL NIL)`, len(text))
		env := `ENVELOPE ("Sat, 5 Dec 2026 12:00:00 +0000" "Hi" NIL NIL NIL NIL NIL NIL NIL NIL)`
		snippet := func(seq int) string {
			return fmt.Sprintf("* %d FETCH (UID %d %s BODY[TEXT]<0> {%d}\r\n%s)\r\n", seq, seq, bs, len(text), text)
		}
		send("* 1 FETCH (UID 1 FLAGS (\\Seen) " + env + ")\r\n")
		send(snippet(2)) // before row 2: imapclient gives it to the row FETCH
		send("* 2 FETCH (UID 2 FLAGS () " + env + ")\r\n")
		send(tags[0] + " OK FETCH done\r\n")
		send(snippet(1))
		send(tags[1] + " OK FETCH done\r\n")
	})
	rows, err := s.fetchSeq(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for _, b := range rows {
		uids = append(uids, uint32(b.UID))
	}
	if len(uids) != 2 || uids[0] != 1 || uids[1] != 2 {
		t.Errorf("rows = UIDs %v, want [1 2], each with its envelope", uids)
	}
	for _, uid := range []uint32{1, 2} {
		if got := s.snippets.got[uid]; got != text {
			t.Errorf("snippet of UID %d = %q, want %q", uid, got, text)
		}
	}
	if s.snippets.swapped != 1 {
		t.Errorf("swapped = %d, want 1", s.snippets.swapped)
	}
}

// fakeFetches returns a Session with snippets on, connected to a scripted server: once two FETCH commands have
// arrived, answer is called with a way to send raw lines and the two commands' tags.
func fakeFetches(t *testing.T, answer func(send func(string), tags []string)) *Session {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	go func() {
		w := bufio.NewWriter(server)
		r := bufio.NewReader(server)
		send := func(s string) { w.WriteString(s); w.Flush() }
		send("* OK [CAPABILITY IMAP4rev1] ready\r\n")
		var tags []string
		for len(tags) < 2 {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if tag, rest, ok := strings.Cut(line, " "); ok && strings.HasPrefix(rest, "FETCH ") {
				tags = append(tags, tag)
			}
		}
		answer(send, tags)
		r.ReadString('\n') // LOGOUT, if any
	}()
	return &Session{c: imapclient.New(client, nil), listOpt: ListOptions{Snippets: true}}
}

// TestFetchSeqStopsAtTheKnownEnd: after the server reported an expunge, a sequence range computed from the earlier
// count is cut to the messages the session knows of; Dovecot refuses a number past the end with BAD "Invalid
// messageset", which failed folder pages in scripts/bench while 50 users moved messages out of one folder.
func TestFetchSeqStopsAtTheKnownEnd(t *testing.T) {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	fetched := make(chan string, 1)
	go func() {
		w := bufio.NewWriter(server)
		r := bufio.NewReader(server)
		send := func(s string) { w.WriteString(s); w.Flush() }
		send("* OK [CAPABILITY IMAP4rev1] ready\r\n")
		env := `ENVELOPE ("Sat, 5 Dec 2026 12:00:00 +0000" "Hi" NIL NIL NIL NIL NIL NIL NIL NIL)`
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			verb, args, _ := strings.Cut(rest, " ")
			switch verb {
			case "EXAMINE":
				send("* 3 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n" + tag + " OK [READ-ONLY] done\r\n")
			case "NOOP":
				send("* 3 EXPUNGE\r\n" + tag + " OK done\r\n")
			case "FETCH":
				set, _, _ := strings.Cut(args, " ")
				fetched <- set
				send("* 1 FETCH (UID 1 FLAGS () " + env + ")\r\n* 2 FETCH (UID 2 FLAGS () " + env + ")\r\n" + tag + " OK done\r\n")
			default:
				send(tag + " OK done\r\n")
			}
		}
	}()
	s := &Session{c: imapclient.New(client, nil)}
	if _, err := s.c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	rows, err := s.fetchSeq(1, 3)
	if err != nil || len(rows) != 2 {
		t.Fatalf("fetchSeq(1, 3) = %d rows, %v; want 2", len(rows), err)
	}
	if set := <-fetched; set != "1:2" {
		t.Errorf("FETCH %s, want 1:2 (the session knows of 2 messages after the expunge)", set)
	}
}
