package web

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/mail"
)

// bigMessage is a message whose part 2 is an attachment of n bytes: big enough that its download fills every
// socket buffer between Postern and a client that does not read.
func bigMessage(to string, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: big@example.test\r\nTo: %s\r\nSubject: Big\r\nDate: Fri, 04 Dec 2026 12:00:00 +0000\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"+
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\n\r\n", to)
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < n {
		b.WriteString(line)
	}
	b.WriteString("--b--\r\n")
	return []byte(b.String())
}

// stalledDownload requests path with u's session cookie over a connection with a tiny receive buffer, and never
// reads the response: the slow-client scenario of issue 10, finding 2. Closing the returned connection ends it.
func stalledDownload(t *testing.T, s *stack, u *mailUser, path string) net.Conn {
	t.Helper()
	base, _ := url.Parse(s.ts.URL)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", base.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var cookies []string
	for _, c := range u.b.hc.Jar.Cookies(base) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n\r\n", path, base.Host, strings.Join(cookies, "; "))
	return conn
}

// busy is the number of pooled IMAP connections in use (or being dialled).
func busy(s *stack) int64 { st := s.pool.Stats(); return st.Open - st.Idle }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// TestStalledDownloadsCannotStarveOthers: one user with many sign-ins (grants) and many downloads that never read
// holds at most MaxPerUser of the pool's connections, so another user's inbox still opens (issue 10, finding 2).
// Before, the cap was per grant: three sign-ins took the whole pool of 4 here and bob's page waited for ever.
func TestStalledDownloadsCannotStarveOthers(t *testing.T) {
	s := newStack(t, withPool(mail.PoolOptions{MaxPerUser: 2, MaxTotal: 4}), withStallTimeout(time.Hour))
	var alices []*mailUser
	for range 3 {
		alices = append(alices, signedInAs(t, s, "alice"))
	}
	bob := signedInAs(t, s, "bob")
	if err := s.mail.AppendBulk("alice@example.test", "INBOX", 1, func(int) []byte { return bigMessage("alice@example.test", 16<<20) }); err != nil {
		t.Fatal(err)
	}
	var uid uint32
	alices[0].imap(t, func(ctx context.Context, ms *mail.Session) error {
		p, err := ms.List(ctx, "INBOX", 0, 1)
		if err == nil {
			uid = p.Summaries[0].UID
		}
		return err
	})
	part := messagePath("INBOX", uid) + "/part/2"
	for i := range 6 {
		stalledDownload(t, s, alices[i%len(alices)], part)
	}
	waitUntil(t, "alice's downloads to take her share of the pool", func() bool { return busy(s) >= 2 })

	for i := range 3 {
		if r := bob.b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
			t.Fatalf("bob's inbox #%d while alice's downloads stall = %d", i+1, r.status)
		}
	}
	if n := busy(s); n != 2 {
		t.Errorf("%d pooled connections busy with alice's stalled downloads, want her cap of 2", n)
	}
}

// TestStalledDownloadReleasesItsConnection: a download the client stops reading is cut after StallTimeout, and the
// IMAP connection it held goes back: with a cap of one connection, the same user's next page view would otherwise
// wait for ever.
func TestStalledDownloadReleasesItsConnection(t *testing.T) {
	s := newStack(t, withPool(mail.PoolOptions{MaxPerUser: 1}), withStallTimeout(200*time.Millisecond))
	alice := signedInAs(t, s, "alice")
	if err := s.mail.AppendBulk("alice@example.test", "INBOX", 1, func(int) []byte { return bigMessage("alice@example.test", 16<<20) }); err != nil {
		t.Fatal(err)
	}
	var uid uint32
	alice.imap(t, func(ctx context.Context, ms *mail.Session) error {
		p, err := ms.List(ctx, "INBOX", 0, 1)
		if err == nil {
			uid = p.Summaries[0].UID
		}
		return err
	})
	conn := stalledDownload(t, s, alice, messagePath("INBOX", uid)+"/part/2")
	// The response has started (the status line is out) before the client stops reading.
	br := bufio.NewReaderSize(conn, 64)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("download status = %q, %v", status, err)
	}
	logins := s.pool.Stats().Logins
	if r := alice.b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
		t.Fatalf("alice's inbox while her download stalls = %d", r.status)
	}
	if st := s.pool.Stats(); st.Logins != logins+1 {
		t.Errorf("Stats() = %+v: want one new login (the stalled stream's connection discarded, not reused)", st)
	}
	// The stream was cut: the client never gets the whole part.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got int64
	for {
		n, err := br.Read(make([]byte, 32<<10))
		got += int64(n)
		if err != nil {
			break
		}
	}
	if got >= 16<<20 {
		t.Errorf("the stalled download delivered %s bytes, want it cut short", strconv.FormatInt(got, 10))
	}
}

// TestRefusedIMAPTokenRetriedOnce: through web's adapter of the keeper (grantTokens), a page view whose IMAP login
// is refused (the grant's access token went stale behind our back) is retried once with the replaced token and
// succeeds; the mail server sees exactly one refusal.
func TestRefusedIMAPTokenRetriedOnce(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	ctx := context.Background()
	g, err := s.store.Grant(ctx, u.grant)
	if err != nil {
		t.Fatal(err)
	}
	g.AccessToken = "stale-token"
	if _, err := s.store.UpdateGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	s.pool.CloseKey(u.grant) // no authenticated connection to ride on: the view must log in
	before := s.mail.Stats()
	if r := u.b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
		t.Fatalf("inbox with a stale token = %d", r.status)
	}
	after := s.mail.Stats()
	if n := after.AuthFailures - before.AuthFailures; n != 1 {
		t.Errorf("mail server refused %d logins, want exactly 1 (then one retry with the replaced token)", n)
	}
	if n := after.AuthSuccesses - before.AuthSuccesses; n != 1 {
		t.Errorf("mail server accepted %d logins, want 1", n)
	}
}
