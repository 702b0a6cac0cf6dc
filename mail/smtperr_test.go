package mail

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"
)

// scriptedSMTP serves one submission on 127.0.0.1 and answers MAIL, each RCPT (in order) and the end of data as
// the script says ("" means 250); it returns the server to Send to.
func scriptedSMTP(t *testing.T, mail string, rcpts []string, end string) Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		say := func(s string) {
			if s == "" {
				s = "250 2.0.0 ok"
			}
			c.Write([]byte(s + "\r\n"))
		}
		say("220 test ESMTP")
		inData, n := false, 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case inData && line == ".":
				inData = false
				say(end)
			case inData:
			case strings.HasPrefix(line, "EHLO"):
				say("250-test")
				say("250-ENHANCEDSTATUSCODES")
				say("250 AUTH OAUTHBEARER")
			case strings.HasPrefix(line, "AUTH"):
				say("235 2.7.0 ok")
			case strings.HasPrefix(line, "MAIL"):
				say(mail)
			case strings.HasPrefix(line, "RCPT"):
				reply := ""
				if n < len(rcpts) {
					reply = rcpts[n]
				}
				n++
				say(reply)
			case line == "DATA":
				say("354 go ahead")
				inData = true
			case line == "QUIT":
				say("221 bye")
				return
			default:
				say("500 what")
			}
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)
	return Server{Host: "127.0.0.1", Port: addr.Port, TLS: TLSNone, Mechanism: MechOAuthBearer}
}

// TestSendOutcomes: every refusal comes back as one of mail's outcomes, with the refused recipient named, so that
// callers never read an SMTP reply.
func TestSendOutcomes(t *testing.T) {
	to := []string{"ana@example.test", "bo@example.test"}
	tests := []struct {
		name       string
		mail       string
		rcpts      []string
		end        string
		want       error
		wantRcpt   string
		wantCode   int
		wantDetail [3]int
	}{
		{"accepted", "", nil, "", nil, "", 0, [3]int{}},
		{"unknown user", "", []string{"", "550 5.1.1 no such user"}, "", ErrRecipientRefused, "bo@example.test", 550, [3]int{5, 1, 1}},
		{"relaying denied", "", []string{"554 5.7.1 relaying denied"}, "", ErrRecipientRefused, "ana@example.test", 554, [3]int{5, 7, 1}},
		{"recipient full", "", []string{"552 5.2.2 mailbox full"}, "", ErrRecipientFull, "ana@example.test", 552, [3]int{5, 2, 2}},
		{"recipient greylisted", "", []string{"451 4.7.1 try later"}, "", ErrSubmitBusy, "ana@example.test", 451, [3]int{4, 7, 1}},
		{"sender not allowed", "501 5.5.4 not your address", nil, "", ErrSenderRefused, "", 501, [3]int{5, 5, 4}},
		{"sender policy", "553 5.7.1 sender rejected", nil, "", ErrSenderRefused, "", 553, [3]int{5, 7, 1}},
		{"too big at end", "", nil, "552 5.3.4 message too big", ErrMessageTooBig, "", 552, [3]int{5, 3, 4}},
		{"full after data", "", nil, "552 5.2.2 over quota", ErrRecipientFull, "", 552, [3]int{5, 2, 2}},
		{"busy after data", "", nil, "451 4.3.0 try again", ErrSubmitBusy, "", 451, [3]int{4, 3, 0}},
		{"spam", "", nil, "554 5.7.1 looks like spam", ErrMessageRefused, "", 554, [3]int{5, 7, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := scriptedSMTP(t, tt.mail, tt.rcpts, tt.end)
			err := Send(ctxT(t), srv, Credentials{Address: alice, Token: aliceToken}, alice, to, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Send() = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Send() = %v, want %v", err, tt.want)
			}
			for _, other := range []error{ErrRecipientRefused, ErrRecipientFull, ErrSenderRefused, ErrMessageTooBig, ErrSubmitBusy, ErrMessageRefused, ErrServerUnavailable, ErrMaybeSent, ErrAuthFailed} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("Send() = %v is also %v", err, other)
				}
			}
			var se *SendError
			if !errors.As(err, &se) {
				t.Fatalf("Send() = %T, want *SendError", err)
			}
			if se.Recipient != tt.wantRcpt || se.Code != tt.wantCode || se.Enhanced != tt.wantDetail {
				t.Errorf("SendError = %+v, want recipient %q, %d %v", se, tt.wantRcpt, tt.wantCode, tt.wantDetail)
			}
		})
	}
}

func TestSendUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	err = Send(ctxT(t), Server{Host: "127.0.0.1", Port: port, TLS: TLSNone}, Credentials{alice, aliceToken}, alice, []string{bobAddr}, strings.NewReader("x"))
	var ne net.Error
	if !errors.Is(err, ErrServerUnavailable) || !errors.As(err, &ne) {
		t.Errorf("Send() to a closed port = %v, want ErrServerUnavailable wrapping the network error", err)
	}
}
