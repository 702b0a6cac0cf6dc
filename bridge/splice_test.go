package bridge

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestPipelinedAfterLogin sends the login and the commands after it in one write, as a pipelining client may
// (RFC 9051 section 5.5): the bytes the bridge's reader took in with the login must reach the upstream, in order,
// and the upstream's answers must all come back — none lost at the change from the bridge's own parser to the
// splice. The last command carries a non-synchronizing literal (RFC 7888), so its octets cross the change too.
func TestPipelinedAfterLogin(t *testing.T) {
	e := newEnv(t, Options{})
	msg := "Subject: pipelined\r\n\r\nsent right after the login\r\n"
	after := "b SELECT INBOX\r\nc NOOP\r\nd APPEND INBOX {" + itoa(len(msg)) + "+}\r\n" + msg + "\r\ne STATUS INBOX (MESSAGES)\r\nf LOGOUT\r\n"
	for _, tc := range []struct{ name, login string }{
		{"LOGIN", "a LOGIN " + alice + " " + alicePW + "\r\n"},
		{"AUTHENTICATE PLAIN", "a AUTHENTICATE PLAIN " + plainB64("", alice, alicePW) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := e.rawIMAPS(t)
			if _, err := io.WriteString(conn, tc.login+after); err != nil {
				t.Fatal(err)
			}
			// Read to the end (LOGOUT closes the connection) and keep the tagged answers and the STATUS count. The
			// deadline turns lost bytes (a client waiting for answers that never come) into a failure, not a hang.
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			all, err := io.ReadAll(conn.r)
			if err != nil && !strings.Contains(err.Error(), "closed") {
				t.Fatalf("reading: %v", err)
			}
			var tagged []string
			status := ""
			for _, l := range strings.Split(string(all), "\r\n") {
				if strings.HasPrefix(l, "* STATUS") {
					status = l
				}
				if l != "" && !strings.HasPrefix(l, "* ") {
					tagged = append(tagged, strings.Join(strings.Fields(l)[:2], " "))
				}
			}
			if got, want := strings.Join(tagged, ", "), "a OK, b OK, c OK, d OK, e OK, f OK"; got != want {
				t.Fatalf("tagged answers = %q, want %q\n%s", got, want, all)
			}
			if status == "" {
				t.Errorf("no STATUS answer in %q", all)
			}
		})
	}
}

// TestLargeAnswerByteForByte fetches messages of sizes around the splice's chunk and buffer bounds through the
// bridge and compares every byte with what was stored: the streaming path (large buffers, TLS records batched into
// one write) must neither drop, reorder nor repeat a byte, and small answers between large ones still arrive.
func TestLargeAnswerByteForByte(t *testing.T) {
	e := newEnv(t, Options{})
	sizes := []int{headSize - 1, headSize, headSize + 1, streamMin, spliceBufSize - 1, spliceBufSize + 1, 3<<20 + 7}
	bodies := make([][]byte, len(sizes))
	for i, n := range sizes {
		hdr := "Subject: size " + itoa(n) + "\r\n\r\n"
		b := []byte(hdr)
		for j := 0; len(b) < n; j++ {
			// Lines that differ, so that a reordered or repeated chunk shows.
			b = append(b, []byte(itoa(j)+" abcdefghijklmnopqrstuvwxyz\r\n")...)
		}
		bodies[i] = b
	}
	if err := e.stack.Mail.AppendBulk(alice, "Sizes", len(bodies), func(i int) []byte { return bodies[i] }); err != nil {
		t.Fatal(err)
	}
	c := e.dialIMAPS(t, alice, alicePW, nil)
	if _, err := c.Select("Sizes", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for i := range bodies {
			msgs, err := c.Fetch(imap.SeqSetNum(uint32(i+1)), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("round %d: FETCH %d = %d messages, %v", round, i+1, len(msgs), err)
			}
			var got []byte
			for _, b := range msgs[0].BodySection {
				got = b.Bytes
			}
			if !bytes.Equal(got, bodies[i]) {
				t.Errorf("round %d: message of %d bytes came back as %d bytes, differing", round, len(bodies[i]), len(got))
			}
		}
		if err := c.Noop().Wait(); err != nil {
			t.Fatalf("NOOP after the large answers: %v", err)
		}
	}
}
