package bridge

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/mail"
)

// benchEnv is an env whose alice has a folder "Big" with one 10 MB message and "Many" with 1,000 small ones, and
// a direct TLS listener at the mail server (e.directPort), so that every side of a comparison speaks TLS to the
// client.
func benchEnv(b *testing.B) *env {
	e := newEnv(b, Options{MaxConnsPerDevice: 1000, MaxConns: 2000})
	addr, err := e.stack.Mail.ListenIMAPS("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	e.directPort = addr.(*net.TCPAddr).Port
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
	return e
}

// benchDial connects to addr over TLS and logs in as alice: directly at the mail server with AUTHENTICATE
// OAUTHBEARER and her token, or at a bridge with LOGIN and her device password.
func (e *env) benchDial(b *testing.B, addr string, direct bool) *imapclient.Client {
	b.Helper()
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: e.client})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if direct {
		cr, _ := e.auth.grants["grant-alice"].Token(b.Context())
		sc, err := mail.NewSASLClient(mail.MechOAuthBearer, cr)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Authenticate(sc); err != nil {
			b.Fatal(err)
		}
	} else if err := c.Login(alice, alicePW).Wait(); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkSessions holds 200 sessions that each logged in, SELECTed INBOX and answered a NOOP, all open at once,
// and reports what the bridge adds per session: heap and stacks, and goroutines, of 200 bridged sessions minus
// those of 200 direct ones (the client and the in-process mail server are on both sides, so they cancel out).
func BenchmarkSessions(b *testing.B) {
	const n = 200
	e := benchEnv(b)
	direct := "127.0.0.1:" + strconv.Itoa(e.directPort)
	inUse := func() (uint64, int) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc + m.StackInuse, runtime.NumGoroutine()
	}
	var perConn, goroutines float64
	for b.Loop() {
		hold := func(addr string, isDirect bool) (uint64, int) {
			base, g0 := inUse()
			var cs []*imapclient.Client
			for range n {
				c := e.benchDial(b, addr, isDirect)
				if _, err := c.Select("INBOX", nil).Wait(); err != nil {
					b.Fatal(err)
				}
				cs = append(cs, c)
			}
			// Every session is still alive once all are open.
			for _, c := range cs {
				if err := c.Noop().Wait(); err != nil {
					b.Fatalf("NOOP with %d sessions open: %v", n, err)
				}
			}
			used, g := inUse()
			if !isDirect && e.bridge.Conns() < n {
				b.Fatalf("bridge holds %d connections, want %d", e.bridge.Conns(), n)
			}
			for _, c := range cs {
				c.Close()
			}
			return used - base, g - g0
		}
		d, dg := hold(direct, true)
		br, bg := hold(e.imaps, false)
		perConn = (float64(br) - float64(d)) / n
		goroutines = float64(bg-dg) / n
	}
	b.ReportMetric(perConn, "B/bridged-session")
	b.ReportMetric(goroutines, "goroutines/bridged-session")
}

// benchArm is one way to reach alice's mailbox: directly at the mail server, or through a bridge.
type benchArm struct {
	name string
	dial func(b *testing.B) *imapclient.Client
}

// benchArms are the sides of the comparison. Every arm speaks TLS to the client, as every real client does (the
// bridge takes no password in cleartext, and a client reaching Stalwart directly uses port 993), so the client's
// decryption and one encryption of the message are on both sides:
//
//   - direct: client ⇄TLS⇄ mail server;
//   - bridge: client ⇄TLS⇄ bridge ⇄TCP⇄ mail server (Postern beside the mail server, the deployment in
//     docs/deploy.md): the extra hop costs a loopback write and read of every byte;
//   - bridge-tls-upstream: client ⇄TLS⇄ bridge ⇄TLS⇄ mail server (a mail server elsewhere): the extra hop also
//     costs one more encryption and decryption of every byte.
func (e *env) benchArms(b *testing.B) []benchArm {
	b.Helper()
	// A second bridge whose upstream is the mail server's implicit-TLS listener.
	opts := e.bridge.opts
	opts.IMAP = mail.Server{Host: "127.0.0.1", Port: e.directPort, TLS: mail.TLSImplicit, TLSConfig: e.client, DialTimeout: 5 * time.Second}
	tb, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tb.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go tb.ServeIMAPS(ln)
	direct := "127.0.0.1:" + strconv.Itoa(e.directPort)
	return []benchArm{
		{"direct", func(b *testing.B) *imapclient.Client { return e.benchDial(b, direct, true) }},
		{"bridge", func(b *testing.B) *imapclient.Client { return e.benchDial(b, e.imaps, false) }},
		{"bridge-tls-upstream", func(b *testing.B) *imapclient.Client { return e.benchDial(b, ln.Addr().String(), false) }},
	}
}

// fetchCase is one of the two measured commands.
type fetchCase struct {
	name, box string
	fetch     func(b *testing.B, c *imapclient.Client)
}

var fetchCases = []fetchCase{
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
}

// BenchmarkFetch runs each command on one arm at a time, for -cpuprofile and -benchmem of one side. Its ns/op of
// different arms come from different moments of a shared machine: compare them with BenchmarkFetchInterleaved.
func BenchmarkFetch(b *testing.B) {
	e := benchEnv(b)
	for _, arm := range e.benchArms(b) {
		for _, fc := range fetchCases {
			b.Run(fc.name+"/"+arm.name, func(b *testing.B) {
				c := arm.dial(b)
				if _, err := c.Select(fc.box, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
					b.Fatal(err)
				}
				if fc.name == "10MB" {
					b.SetBytes(10 << 20)
				}
				b.ReportAllocs()
				for b.Loop() {
					fc.fetch(b, c)
				}
			})
		}
	}
}

// BenchmarkFetchInterleaved runs the arms side by side: every iteration (a round) runs the command once on each
// arm, in an order that rotates from round to round, so that all arms meet the same load of a shared machine. It
// reports each arm's median time and allocations per command and the median of the rounds' ratios to direct. The
// allocations count the whole process (client, bridge and mail server are all in it); the bridge's own are the
// difference to direct.
func BenchmarkFetchInterleaved(b *testing.B) {
	e := benchEnv(b)
	arms := e.benchArms(b)
	for _, fc := range fetchCases {
		b.Run(fc.name, func(b *testing.B) {
			cs := make([]*imapclient.Client, len(arms))
			for i, arm := range arms {
				cs[i] = arm.dial(b)
				if _, err := cs[i].Select(fc.box, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
					b.Fatal(err)
				}
			}
			times := make([][]float64, len(arms))  // ms per round
			cpu := make([][]float64, len(arms))    // process CPU ms (user + system) per round
			allocs := make([][]float64, len(arms)) // mallocs per round
			var ms runtime.MemStats
			round := 0
			for b.Loop() {
				for k := range arms {
					i := (k + round) % len(arms)
					runtime.ReadMemStats(&ms)
					m0 := ms.Mallocs
					c0 := cpuTime()
					t0 := time.Now()
					fc.fetch(b, cs[i])
					d := time.Since(t0)
					c1 := cpuTime()
					runtime.ReadMemStats(&ms)
					times[i] = append(times[i], float64(d.Microseconds())/1000)
					cpu[i] = append(cpu[i], float64((c1-c0).Microseconds())/1000)
					allocs[i] = append(allocs[i], float64(ms.Mallocs-m0))
				}
				round++
			}
			for i, arm := range arms {
				b.ReportMetric(median(times[i]), arm.name+"-ms")
				b.ReportMetric(median(cpu[i]), arm.name+"-cpu-ms")
				b.ReportMetric(median(allocs[i]), arm.name+"-allocs")
				if i > 0 {
					ratios, cpuRatios := make([]float64, len(times[i])), make([]float64, len(times[i]))
					for r := range ratios {
						ratios[r] = times[i][r] / times[0][r]
						cpuRatios[r] = cpu[i][r] / cpu[0][r]
					}
					b.ReportMetric(median(ratios), arm.name+"-ratio")
					b.ReportMetric(median(cpuRatios), arm.name+"-cpu-ratio")
				}
			}
		})
	}
}

// cpuTime is the CPU time the process has used (user and system, all threads). On a shared machine it measures
// the work a command costs, which wall time mixes with the other tenants' load.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
