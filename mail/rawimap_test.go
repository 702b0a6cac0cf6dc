package mail

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/internal/devstack/mailserver"
)

func TestDialIMAPConn(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	for _, mode := range []TLSMode{TLSImplicit, TLSStartTLS, TLSNone} {
		t.Run(string(mode), func(t *testing.T) {
			before := e.srv.Stats().AuthAttempts
			conn, caps, err := DialIMAPConn(t.Context(), e.imapServer(mode, MechOAuthBearer), Credentials{Address: alice, Token: aliceToken})
			if err != nil {
				t.Fatalf("DialIMAPConn: %v", err)
			}
			defer conn.Close()
			if got := e.srv.Stats().AuthAttempts - before; got != 1 {
				t.Errorf("upstream AUTHENTICATEs = %d, want 1", got)
			}
			if slices.ContainsFunc(caps, func(c string) bool { return strings.HasPrefix(strings.ToUpper(c), "AUTH=") }) || !slices.Contains(caps, "IDLE") {
				t.Errorf("caps = %v, want post-login capabilities with IDLE and no AUTH=", caps)
			}
			// The connection is authenticated and nothing was read ahead: a command gets its answer.
			io.WriteString(conn, "x1 SELECT INBOX\r\n")
			r := bufio.NewReader(conn)
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("reading SELECT response: %v", err)
				}
				if strings.HasPrefix(l, "x1 ") {
					if !strings.HasPrefix(l, "x1 OK") {
						t.Errorf("SELECT = %q, want OK", l)
					}
					break
				}
			}
		})
	}
}

func TestDialIMAPConnRefusedToken(t *testing.T) {
	e := newEnv(t, mailserver.Options{})
	_, _, err := DialIMAPConn(t.Context(), e.imapServer(TLSImplicit, MechOAuthBearer), Credentials{Address: alice, Token: "wrong"})
	if !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("DialIMAPConn with a wrong token = %v, want ErrAuthFailed", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q contains the token", err)
	}
	e.idp.down.Store(true)
	e2 := newEnv(t, mailserver.Options{ErrorChallenge: true})
	e2.idp.down.Store(true)
	_, _, err = DialIMAPConn(t.Context(), e2.imapServer(TLSImplicit, MechOAuthBearer), Credentials{Address: alice, Token: aliceToken})
	if !errors.Is(err, ErrAuthUnavailable) {
		t.Fatalf("DialIMAPConn with the IdP down (Dovecot mode) = %v, want ErrAuthUnavailable", err)
	}
}
