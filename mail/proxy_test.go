package mail

import (
	"bufio"
	"io"
	"net"
	"testing"
)

// lineProxy stands between a client and upstream, line by line, for tests of what goes over an IMAP connection.
// For every connection it asks conn for two functions, which see (and may rewrite) each line the client sends and
// each line the server sends; a connection's state lives in their closure. It returns the port to dial.
func lineProxy(t *testing.T, upstream string, conn func() (fromClient, fromServer func(string) string)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pipe := func(from, to net.Conn, rewrite func(string) string) {
		defer to.Close()
		r := bufio.NewReader(from)
		for {
			line, err := r.ReadString('\n')
			if _, werr := io.WriteString(to, rewrite(line)); werr != nil || err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				// Refused at once rather than left to hang until the test's deadline; the proxy keeps accepting.
				t.Logf("test proxy: dial %s: %v", upstream, err)
				c.Close()
				continue
			}
			fromClient, fromServer := conn()
			go pipe(c, u, fromClient)
			go pipe(u, c, fromServer)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
