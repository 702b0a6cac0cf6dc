package mail

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/postern/postern/internal/devstack/mailserver"
)

func TestProbe(t *testing.T) {
	e := newEnv(t, mailserver.Options{Mechanisms: []string{"OAUTHBEARER"}})
	for _, mode := range []TLSMode{TLSNone, TLSStartTLS, TLSImplicit} {
		t.Run(string(mode), func(t *testing.T) {
			res, err := Probe(ctxT(t), e.imapServer(mode, MechOAuthBearer))
			if err != nil {
				t.Fatalf("Probe() = %v", err)
			}
			if !slices.Equal(res.Mechanisms, []string{"OAUTHBEARER"}) || !res.Offers(MechOAuthBearer) || res.Offers(MechXOAuth2) {
				t.Errorf("Mechanisms = %v, want [OAUTHBEARER] only", res.Mechanisms)
			}
			if (res.TLS != nil) != (mode != TLSNone) {
				t.Errorf("TLS state = %v with %s", res.TLS, mode)
			}
		})
	}
	if got := e.srv.Stats().AuthAttempts; got != 0 {
		t.Errorf("the probe presented %d tokens, want none", got)
	}
}

func TestProbeFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepts, never greets
		}
	}()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	silent := ln.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name string
		srv  Server
		step string
	}{
		{"closed port", Server{Host: "127.0.0.1", Port: closedPort, TLS: TLSNone}, "dial"},
		{"silent server", Server{Host: "127.0.0.1", Port: silent, TLS: TLSNone, CommandTimeout: 50e6}, "greeting"},
		{"silent server, tls", Server{Host: "127.0.0.1", Port: silent, TLS: TLSImplicit, CommandTimeout: 50e6}, "tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Probe(context.Background(), tt.srv)
			var pe *ProbeError
			if !errors.As(err, &pe) || pe.Step != tt.step {
				t.Errorf("Probe() = %v, want a ProbeError at step %q", err, tt.step)
			}
		})
	}
}
