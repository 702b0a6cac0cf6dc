package bridge

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/mail"
)

// benchEnv is an env whose alice has a folder "Big" with one 10 MB message and "Many" with 1,000 small ones, and
// a direct TLS listener at the mail server, so that both sides of a comparison speak TLS to the client.
func benchEnv(b *testing.B) (e *env, direct string) {
	e = newEnv(b, Options{MaxConnsPerDevice: 1000, MaxConns: 2000})
	addr, err := e.stack.Mail.ListenIMAPS("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	big := "From: carol@example.test\r\nTo: alice@example.test\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 76)+"\r\n", 10<<20/78)
	if err := e.stack.Mail.AppendBulk(alice, "Big", 1, func(int) []byte { return []byte(big) }); err != nil {
		b.Fatal(err)
	}
	if err := e.stack.Mail.AppendBulk(alice, "Many", 1000, func(i int) []byte {
		return fmt.Appendf(nil, "From: Sender %d <s%d@example.test>\r\nTo: alice@example.test\r\nSubject: message %d\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <%d@example.test>\r\n\r\nbody %d\r\n", i, i, i, i, i)
	}); err != nil {
		b.Fatal(err)
	}
	return e, addr.String()
}

// dial connects either directly to the mail server (AUTHENTICATE OAUTHBEARER with alice's token) or through the
// bridge (LOGIN with her device password).
func (e *env) benchDial(b *testing.B, direct string) *imapclient.Client {
	b.Helper()
	addr := e.imaps
	if direct != "" {
		addr = direct
	}
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: e.client})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if direct != "" {
		cr, _ := e.auth.grants["grant-alice"].Token(b.Context())
		sc, err := mail.NewSASLClient(mail.MechOAuthBearer, cr)
		if err != nil {
			b.Fatal(err)
		}
		err = c.Authenticate(sc)
		if err != nil {
			b.Fatal(err)
		}
	} else if err := c.Login(alice, alicePW).Wait(); err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkFetch(b *testing.B) {
	e, direct := benchEnv(b)
	for _, side := range []struct{ name, direct string }{{"direct", direct}, {"bridge", ""}} {
		b.Run("10MB/"+side.name, func(b *testing.B) {
			c := e.benchDial(b, side.direct)
			if _, err := c.Select("Big", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(10 << 20)
			for b.Loop() {
				cmd := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
				n := int64(0)
				for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
					for item := msg.Next(); item != nil; item = msg.Next() {
						if bs, ok := item.(imapclient.FetchItemDataBodySection); ok {
							m, _ := io.Copy(io.Discard, bs.Literal)
							n += m
						}
					}
				}
				if err := cmd.Close(); err != nil || n < 10<<20 {
					b.Fatalf("UID FETCH = %d bytes, %v", n, err)
				}
			}
		})
		b.Run("1000envelopes/"+side.name, func(b *testing.B) {
			c := e.benchDial(b, side.direct)
			if _, err := c.Select("Many", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
				b.Fatal(err)
			}
			all := imap.SeqSet{}
			all.AddRange(1, 0)
			for b.Loop() {
				msgs, err := c.Fetch(all, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
				if err != nil || len(msgs) != 1000 {
					b.Fatalf("FETCH 1:* = %d messages, %v", len(msgs), err)
				}
			}
		})
	}
}

// BenchmarkIdleSplicedMemory holds 200 idle logged-in connections and reports the memory the bridge adds per
// connection: the heap and stacks of 200 bridged connections minus those of 200 direct ones (the client and the
// in-process mail server are on both sides, so they cancel out).
func BenchmarkIdleSplicedMemory(b *testing.B) {
	const n = 200
	e, direct := benchEnv(b)
	inUse := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc + m.StackInuse
	}
	var perConn float64
	for b.Loop() {
		hold := func(addr string) uint64 {
			base := inUse()
			var cs []*imapclient.Client
			for range n {
				c := e.benchDial(b, addr)
				if _, err := c.Select("INBOX", nil).Wait(); err != nil {
					b.Fatal(err)
				}
				cs = append(cs, c)
			}
			used := inUse() - base
			if addr == "" && e.bridge.Conns() < n {
				b.Fatalf("bridge holds %d connections, want %d", e.bridge.Conns(), n)
			}
			for _, c := range cs {
				c.Close()
			}
			return used
		}
		d := hold(direct)
		br := hold("")
		perConn = (float64(br) - float64(d)) / n
	}
	b.ReportMetric(perConn, "B/bridged-conn")
}

// BenchmarkFetchInterleaved alternates the direct and the bridged fetch in every iteration, so that both meet the
// same load on a shared machine, and reports each side's mean time and their ratio.
func BenchmarkFetchInterleaved(b *testing.B) {
	e, directAddr := benchEnv(b)
	for _, tc := range []struct {
		name, box string
		fetch     func(b *testing.B, c *imapclient.Client)
	}{
		{"10MB", "Big", func(b *testing.B, c *imapclient.Client) {
			cmd := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
			n := int64(0)
			for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
				for item := msg.Next(); item != nil; item = msg.Next() {
					if bs, ok := item.(imapclient.FetchItemDataBodySection); ok {
						m, _ := io.Copy(io.Discard, bs.Literal)
						n += m
					}
				}
			}
			if err := cmd.Close(); err != nil || n < 10<<20 {
				b.Fatalf("UID FETCH = %d bytes, %v", n, err)
			}
		}},
		{"1000envelopes", "Many", func(b *testing.B, c *imapclient.Client) {
			all := imap.SeqSet{}
			all.AddRange(1, 0)
			msgs, err := c.Fetch(all, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
			if err != nil || len(msgs) != 1000 {
				b.Fatalf("FETCH 1:* = %d messages, %v", len(msgs), err)
			}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			direct, bridged := e.benchDial(b, directAddr), e.benchDial(b, "")
			for _, c := range []*imapclient.Client{direct, bridged} {
				if _, err := c.Select(tc.box, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
					b.Fatal(err)
				}
			}
			var td, tb time.Duration
			for b.Loop() {
				t0 := time.Now()
				tc.fetch(b, direct)
				t1 := time.Now()
				tc.fetch(b, bridged)
				td, tb = td+t1.Sub(t0), tb+time.Since(t1)
			}
			b.ReportMetric(float64(td.Microseconds())/float64(b.N)/1000, "direct-ms/op")
			b.ReportMetric(float64(tb.Microseconds())/float64(b.N)/1000, "bridge-ms/op")
			b.ReportMetric(float64(tb)/float64(td), "ratio")
		})
	}
}
