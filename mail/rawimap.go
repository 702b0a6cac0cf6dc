package mail

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// maxRawLine bounds one response line read by DialIMAPConn: greeting, CAPABILITY and the tagged answers are short.
const maxRawLine = 64 << 10

// DialIMAPConn connects to the IMAP server and authenticates like Dial, then hands over the raw connection instead
// of a Session, for a proxy that splices bytes between its client and the server (the bridge). caps are the
// server's capabilities after authentication (RFC 9051 section 6.2.2: a server may change them), from the tagged
// OK's [CAPABILITY] code or else from a CAPABILITY command.
//
// Errors are those of Dial: a refused token wraps ErrAuthFailed, a temporary failure ErrAuthUnavailable, so that
// WithToken retries a refused token once. The exchange is written here rather than with imapclient because
// imapclient reads ahead into its own buffer, which would swallow the first bytes meant for the proxy's client.
func DialIMAPConn(ctx context.Context, srv Server, c Credentials) (conn net.Conn, caps []string, err error) {
	sc, err := NewSASLClient(srv.Mechanism, c)
	if err != nil {
		return nil, nil, err
	}
	mechName, _ := srv.Mechanism.saslName()

	dctx, cancel := context.WithTimeout(ctx, srv.dialTimeout())
	defer cancel()
	d := net.Dialer{}
	raw, err := d.DialContext(dctx, "tcp", srv.addr())
	if err != nil {
		return nil, nil, fmt.Errorf("mail: imap dial %s: %w", srv.addr(), err)
	}
	actx, acancel := context.WithTimeout(ctx, srv.dialTimeout()+authTimeout)
	defer acancel()
	stop := context.AfterFunc(actx, func() { raw.Close() })
	defer stop()
	defer func() {
		if err != nil {
			raw.Close()
			err = ctxErr(actx, err)
		}
	}()

	conn = raw
	switch srv.TLS {
	case TLSImplicit, "":
		tc := tls.Client(raw, srv.tlsConfig("imap"))
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, nil, fmt.Errorf("mail: imap tls handshake with %s: %w", srv.addr(), err)
		}
		conn = tc
	case TLSStartTLS, TLSNone:
	default:
		return nil, nil, fmt.Errorf("mail: unknown tls mode %q", srv.TLS)
	}
	rc := newRawConn(conn)
	greeting, err := rc.line()
	if err != nil {
		return nil, nil, fmt.Errorf("mail: imap greeting from %s: %w", srv.addr(), err)
	}
	if !strings.HasPrefix(strings.ToUpper(greeting), "* OK") {
		// PREAUTH on an unauthenticated connection is refused as in Dial (RFC 9051 section 7.1.4); BYE ends it.
		return nil, nil, fmt.Errorf("mail: imap server %s did not ask for authentication", srv.addr())
	}
	caps = capsOf(greeting)
	if srv.TLS == TLSStartTLS {
		if _, err := rc.command("S0", "STARTTLS"); err != nil {
			return nil, nil, fmt.Errorf("mail: imap starttls with %s: %w", srv.addr(), err)
		}
		// Anything the server sent after its OK would have been injected before TLS (RFC 9051 section 6.2.1).
		if rc.r.Buffered() > 0 {
			return nil, nil, fmt.Errorf("mail: imap starttls with %s: data after the OK", srv.addr())
		}
		tc := tls.Client(conn, srv.tlsConfig(""))
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, nil, fmt.Errorf("mail: imap starttls with %s: %w", srv.addr(), err)
		}
		rc = newRawConn(tc)
		caps = nil
	}
	if caps == nil {
		if caps, err = rc.capability("C0"); err != nil {
			return nil, nil, fmt.Errorf("mail: imap capability from %s: %w", srv.addr(), err)
		}
	}
	if !hasCap(caps, "AUTH="+mechName) {
		return nil, nil, fmt.Errorf("mail: imap server %s does not offer AUTH=%s", srv.addr(), mechName)
	}

	_, ir, _ := sc.Start()
	cmd := "AUTHENTICATE " + mechName
	if hasCap(caps, "SASL-IR") {
		// RFC 4959: the initial response on the command line saves a round trip.
		cmd += " " + base64.StdEncoding.EncodeToString(ir)
		ir = nil
	}
	tagged, err := rc.exchange("A0", cmd, func(challenge string) (string, error) {
		if ir != nil {
			resp := base64.StdEncoding.EncodeToString(ir)
			ir = nil
			return resp, nil
		}
		ch, err := base64.StdEncoding.DecodeString(strings.TrimSpace(challenge))
		if err != nil {
			return "", fmt.Errorf("mail: imap authenticate: undecodable challenge")
		}
		resp, err := sc.Next(ch)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(resp), nil
	})
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			return nil, nil, imapAuthError(err, sc, c.Token)
		}
		return nil, nil, fmt.Errorf("mail: imap authenticate with %s: %w", srv.addr(), err)
	}
	if caps = capsOf(tagged); caps == nil {
		if caps, err = rc.capability("C1"); err != nil {
			return nil, nil, fmt.Errorf("mail: imap capability from %s: %w", srv.addr(), err)
		}
	}
	return rc, caps, nil
}

// rawConn is a connection whose reads go through the buffer that read the exchange, so nothing read ahead is lost.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

// newRawConn buffers conn's reads. The buffer hides conn's own WriteTo (net.TCPConn has one, which copies through
// a fresh 32 KiB buffer that a proxy's idle connection would hold for ever): io.Copy from a rawConn then goes
// through this one buffer only.
func newRawConn(conn net.Conn) *rawConn {
	return &rawConn{Conn: conn, r: bufio.NewReaderSize(struct{ io.Reader }{conn}, rawBufSize)}
}

// rawBufSize is one TLS record's worth of plaintext (RFC 8446 section 5.1), so a spliced download is re-encrypted
// in full records.
const rawBufSize = 16 << 10

func (c *rawConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// WriteTo lets io.Copy drain the buffer and then the connection through the same buffer, with no other.
func (c *rawConn) WriteTo(w io.Writer) (int64, error) { return c.r.WriteTo(w) }

// line reads one CRLF-terminated line without its ending, bounded by maxRawLine.
func (c *rawConn) line() (string, error) {
	var b []byte
	for {
		frag, err := c.r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > maxRawLine {
			return "", errors.New("response line too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

// command sends one command and returns its tagged OK line; NO and BAD become *imap.Error.
func (c *rawConn) command(tag, cmd string) (string, error) {
	return c.exchange(tag, cmd, nil)
}

// capability sends CAPABILITY and returns the untagged list (RFC 9051 section 6.1.1).
func (c *rawConn) capability(tag string) ([]string, error) {
	var caps []string
	if _, err := c.exchangeUntagged(tag, "CAPABILITY", nil, func(l string) {
		if rest, ok := cutPrefixFold(l, "* CAPABILITY "); ok {
			caps = append(caps, strings.Fields(rest)...)
		}
	}); err != nil {
		return nil, err
	}
	if caps == nil {
		return nil, errors.New("no CAPABILITY response")
	}
	return caps, nil
}

func (c *rawConn) exchange(tag, cmd string, cont func(string) (string, error)) (string, error) {
	return c.exchangeUntagged(tag, cmd, cont, nil)
}

// exchangeUntagged sends tag cmd, answers continuation requests with cont and hands untagged lines to untagged,
// until the tagged response.
func (c *rawConn) exchangeUntagged(tag, cmd string, cont func(string) (string, error), untagged func(string)) (string, error) {
	if _, err := io.WriteString(c.Conn, tag+" "+cmd+"\r\n"); err != nil {
		return "", err
	}
	for {
		l, err := c.line()
		if err != nil {
			return "", err
		}
		switch {
		case strings.HasPrefix(l, "+"):
			if cont == nil {
				return "", errors.New("unexpected continuation request")
			}
			resp, err := cont(strings.TrimPrefix(strings.TrimPrefix(l, "+"), " "))
			if err != nil {
				// RFC 9051 section 6.2.2: "*" cancels the exchange; the server then answers BAD.
				io.WriteString(c.Conn, "*\r\n")
				return "", err
			}
			if _, err := io.WriteString(c.Conn, resp+"\r\n"); err != nil {
				return "", err
			}
		case strings.HasPrefix(l, "* "):
			if untagged != nil {
				untagged(l)
			}
		case strings.HasPrefix(l, tag+" "):
			return l, taggedError(strings.TrimPrefix(l, tag+" "))
		default:
			return "", errors.New("unexpected response line")
		}
	}
}

// taggedError turns "NO [CODE] text" or "BAD …" into an *imap.Error; OK is nil.
func taggedError(rest string) error {
	status, text, _ := strings.Cut(rest, " ")
	var typ imap.StatusResponseType
	switch strings.ToUpper(status) {
	case "OK":
		return nil
	case "NO":
		typ = imap.StatusResponseTypeNo
	case "BAD":
		typ = imap.StatusResponseTypeBad
	default:
		return errors.New("unexpected tagged response")
	}
	ie := &imap.Error{Type: typ, Text: text}
	if code, after, ok := strings.Cut(text, "]"); ok && strings.HasPrefix(code, "[") {
		name, _, _ := strings.Cut(code[1:], " ")
		ie.Code = imap.ResponseCode(strings.ToUpper(name))
		ie.Text = strings.TrimSpace(after)
	}
	return ie
}

// capsOf returns the [CAPABILITY …] response code of a status line (RFC 9051 section 7.1), or nil.
func capsOf(l string) []string {
	i := strings.Index(strings.ToUpper(l), "[CAPABILITY ")
	if i < 0 {
		return nil
	}
	rest := l[i+len("[CAPABILITY "):]
	end := strings.IndexByte(rest, ']')
	if end < 0 {
		return nil
	}
	return strings.Fields(rest[:end])
}

func hasCap(caps []string, c string) bool {
	for _, have := range caps {
		if strings.EqualFold(have, c) {
			return true
		}
	}
	return false
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}
