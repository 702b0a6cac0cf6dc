package mail

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"
)

// TestSendWithoutReplyAfterData: a server that takes the whole message and drops the connection before its verdict
// leaves the outcome open; Send must say so (ErrMaybeSent) rather than "not sent", or the user sends it twice.
func TestSendWithoutReplyAfterData(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		say := func(s string) { c.Write([]byte(s + "\r\n")) }
		say("220 test ESMTP")
		inData := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case inData && line == ".":
				return // the message is in; no verdict
			case inData:
			case strings.HasPrefix(line, "EHLO"):
				say("250-test")
				say("250 AUTH OAUTHBEARER")
			case strings.HasPrefix(line, "AUTH"):
				say("235 2.7.0 ok")
			case strings.HasPrefix(line, "MAIL"), strings.HasPrefix(line, "RCPT"):
				say("250 ok")
			case line == "DATA":
				say("354 go ahead")
				inData = true
			default:
				say("500 what")
			}
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)
	err = Send(ctxT(t), Server{Host: "127.0.0.1", Port: addr.Port, TLS: TLSNone, Mechanism: MechOAuthBearer},
		Credentials{Address: alice, Token: aliceToken}, alice, []string{"bob@example.test"}, strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
	if !errors.Is(err, ErrMaybeSent) {
		t.Fatalf("Send() = %v, want ErrMaybeSent", err)
	}
}
