package mailserver

import (
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestCountRoundTrips: commands sent one after the other's answer are one round trip each; the same commands
// pipelined (issued before the first Wait) are one.
func TestCountRoundTrips(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.CountRoundTrips(20 * time.Millisecond)
	c := dialIMAP(t, s) // greeting, AUTHENTICATE
	if err := c.Authenticate(bearer{"OAUTHBEARER", "rt@example.test", "good-rt@example.test"}); err != nil {
		t.Fatal(err)
	}
	// imapclient asks for CAPABILITY after AUTHENTICATE on its own; let that settle first.
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	opts := &imap.StatusOptions{NumMessages: true}
	boxes := []string{"INBOX", "Sent", "Trash"}

	before := s.Stats().RoundTrips
	for _, b := range boxes {
		if _, err := c.Status(b, opts).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Stats().RoundTrips - before; got != 3 {
		t.Errorf("3 sequential STATUS: %d round trips, want 3", got)
	}

	before = s.Stats().RoundTrips
	var cmds []*imapclient.StatusCommand
	for _, b := range boxes {
		cmds = append(cmds, c.Status(b, opts))
	}
	for _, cmd := range cmds {
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Stats().RoundTrips - before; got != 1 {
		t.Errorf("3 pipelined STATUS: %d round trips, want 1", got)
	}
}
