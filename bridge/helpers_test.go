package bridge

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawClient speaks IMAP by hand, for the pre-login conversation.
type rawClient struct {
	net.Conn
	r *bufio.Reader
}

// rawIMAPS connects to the implicit-TLS listener and reads the greeting.
func (e *env) rawIMAPS(t *testing.T) *rawClient {
	t.Helper()
	c, err := tls.Dial("tcp", e.imaps, e.client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{Conn: c, r: bufio.NewReader(c)}
	if l, err := rc.r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting = %q, %v", l, err)
	}
	return rc
}

// cmd sends line and returns the tagged answer, skipping untagged lines.
func (c *rawClient) cmd(t *testing.T, line string) string {
	t.Helper()
	if _, err := io.WriteString(c, line+"\r\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the answer to %q: %v", strings.Fields(line)[0], err)
		}
		if !strings.HasPrefix(l, "* ") {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

func plainB64(authz, user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pw))
}

func itoa(n int) string { return strconv.Itoa(n) }

type recorder struct {
	mu     sync.Mutex
	device string
	from   netip.Addr
	client string
}

func (r *recorder) Used(device string, from netip.Addr, client string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.device, r.from, r.client = device, from, client
}

// waitFor polls cond until it holds; the bound is against a hang, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
