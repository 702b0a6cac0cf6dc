package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// ProbeResult is what Probe learnt about an IMAP server without signing in.
type ProbeResult struct {
	// TLS is the state of the verified TLS connection (implicit or after
	// STARTTLS); nil with TLSNone.
	TLS *tls.ConnectionState
	// Mechanisms are the SASL mechanisms the server offers (its AUTH=
	// capabilities, RFC 9051 section 6.2.2), upper case and sorted.
	Mechanisms []string
}

// Offers reports whether the server offers mech, the mechanism Postern
// would log in with.
func (r *ProbeResult) Offers(mech Mechanism) bool {
	name, err := mech.saslName()
	return err == nil && slices.Contains(r.Mechanisms, name)
}

// ProbeError is a failed Probe: Step says how far it got ("dial", "tls",
// "starttls", "greeting", "capability"), Err why.
type ProbeError struct {
	Addr, Step string
	Err        error
}

func (e *ProbeError) Error() string {
	return fmt.Sprintf("mail: imap probe of %s: %s: %v", e.Addr, e.Step, e.Err)
}

func (e *ProbeError) Unwrap() error { return e.Err }

// Probe checks that srv is an IMAP server Postern can talk to, without
// signing in: it connects, sets up TLS as srv.TLS says (verified like every
// connection Postern makes), reads the greeting (RFC 9051 section 7.1: OK
// or PREAUTH), asks for the capabilities and logs out. Readiness checks
// and the doctor share it; it never presents a token, so it neither depends
// on a user nor costs the mail server a call to the identity provider.
// ctx bounds the whole exchange (srv.DialTimeout the connect, when sooner).
func Probe(ctx context.Context, srv Server) (*ProbeResult, error) {
	addr := srv.addr()
	fail := func(step string, err error) (*ProbeResult, error) {
		return nil, &ProbeError{Addr: addr, Step: step, Err: ctxErr(ctx, err)}
	}
	dctx, cancel := context.WithTimeout(ctx, srv.dialTimeout())
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return fail("dial", err)
	}
	// A server that accepts and never speaks must not hold the probe: the
	// end of ctx closes the connection, and no read waits longer than
	// CommandTimeout (imapclient clears its own deadline between responses).
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	dc := &deadlineConn{Conn: conn}
	dc.arm(srv.commandTimeout())
	_ = conn.SetWriteDeadline(time.Now().Add(srv.commandTimeout()))
	conn = dc

	res := &ProbeResult{}
	proto := "imap" // ALPN for implicit TLS, as in Dial
	if srv.TLS == TLSStartTLS {
		proto = ""
	}
	cfg := srv.tlsConfig(proto)
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		res.TLS = &cs
		return nil
	}
	var c *imapclient.Client
	switch srv.TLS {
	case TLSImplicit, "":
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fail("tls", err)
		}
		c = imapclient.New(tc, nil)
	case TLSStartTLS:
		c, err = imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: cfg})
		if err != nil {
			conn.Close()
			return fail("starttls", err)
		}
	case TLSNone:
		c = imapclient.New(conn, nil)
	default:
		conn.Close()
		return nil, fmt.Errorf("mail: unknown tls mode %q", srv.TLS)
	}
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		return fail("greeting", err)
	}
	caps := c.Caps()
	if caps == nil {
		return fail("capability", errors.New("no answer"))
	}
	for capa := range caps {
		if m, ok := strings.CutPrefix(string(capa), "AUTH="); ok {
			res.Mechanisms = append(res.Mechanisms, strings.ToUpper(m))
		}
	}
	slices.Sort(res.Mechanisms)
	_ = c.Logout().Wait()
	return res, nil
}
