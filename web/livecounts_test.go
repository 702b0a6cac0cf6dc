package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/mail"
)

// TestEventsCarryCounts: after a change in the watched folder the live stream sends every folder's unread count, in
// the side bar's URLs, so that app.js can update the counts without a reload.
func TestEventsCarryCounts(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.ts.URL+"/events/INBOX", nil)
	hc := *u.b.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events/INBOX = %d", resp.StatusCode)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended before %s", what)
			}
			return l
		case <-ctx.Done():
			t.Fatalf("no %s on the stream", what)
		}
		return ""
	}
	for next(": watching") != ": watching" {
	}

	bob := signedInAs(t, s, "bob")
	tok, err := s.keeper.Token(ctx, bob.grant)
	if err != nil {
		t.Fatal(err)
	}
	host, port := splitHostPort(t, s.smtp.String())
	err = mail.Send(ctx, mail.Server{Host: host, Port: port, TLS: mail.TLSNone}, mail.Credentials{Address: bob.addr, Token: tok.Access},
		bob.addr, []string{u.addr}, bytes.NewReader(testMessage(bob.addr, u.addr, "live", "x")))
	if err != nil {
		t.Fatal(err)
	}
	for next("event: counts") != "event: counts" {
	}
	data := next("the counts' data")
	var got []folderCount
	if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &got); err != nil {
		t.Fatalf("counts data %q: %v", data, err)
	}
	var boxes []mail.Mailbox
	u.imap(t, func(ctx context.Context, ms *mail.Session) error {
		boxes, err = ms.Mailboxes(ctx)
		return err
	})
	want := map[string]uint32{}
	for _, l := range folderLinks(boxes, "") {
		want[l.URL] = l.Unseen
	}
	if len(got) != len(want) {
		t.Errorf("counts name %d folders, want %d: %s", len(got), len(want), data)
	}
	for _, c := range got {
		if w, ok := want[c.URL]; !ok || w != c.Unseen {
			t.Errorf("counts say %s has %d unread, the server says %d (known: %v)", c.URL, c.Unseen, w, ok)
		}
	}
	if want["/mail/INBOX"] == 0 {
		t.Error("the Inbox has no unread message after a delivery")
	}
}
