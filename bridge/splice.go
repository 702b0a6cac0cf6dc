package bridge

import (
	"io"
	"net"
	"sync"
	"time"
)

// After login the bridge splices bytes, the pattern of Dovecot's and Stalwart's proxies: nothing is parsed or
// buffered whole. The client side is always TLS (the bridge takes no password in cleartext), so the kernel's
// splice(2) (net.TCPConn.ReadFrom) cannot be used for either direction: every byte from the mail server is read
// into the bridge, encrypted and written again. What the code below keeps small is the number of system calls
// per byte, which docs/benchmarks.md ("Bridge") measured as the whole of the bridge's overhead on a 10 MB fetch:
//
//   - reads from the mail server take up to spliceBufSize at a time (not the 16 KiB of the upstream connection's
//     read buffer, which made 640 reads of a 10 MB message);
//   - the TLS records of one such chunk (crypto/tls writes one record, at most 16 KiB, per write to the
//     connection below it) leave in one write, not one write per record;
//   - the large buffers come from a pool and are held only while an answer keeps them full: an idle connection
//     waits with no buffer of its own (see BenchmarkSessions).

// spliceBufSize is the largest chunk read from the mail server in one call: 16 TLS records.
const spliceBufSize = 256 << 10

// streamMin is the read below which the mail server is no longer keeping the bridge busy: the bridge returns the
// large buffers and waits with a small one again.
const streamMin = 16 << 10

// headSize is what an idle connection reads with (on its goroutine's stack): most IMAP answers fit in it whole.
const headSize = 512

// spliceBuf holds a chunk read from the mail server and the TLS records made of it.
type spliceBuf struct {
	read, records []byte
}

var spliceBufs = sync.Pool{New: func() any {
	// A TLS 1.3 record adds at most 22 bytes to its 16 KiB of plaintext (RFC 8446 section 5.2), TLS 1.2 with
	// AES-GCM 29; 64 bytes per record is ample.
	return &spliceBuf{read: make([]byte, spliceBufSize), records: make([]byte, 0, spliceBufSize+spliceBufSize/(16<<10)*64)}
}}

// splice copies bytes both ways until either side ends, then closes both. What the client pipelined after its
// login, still in c.r, goes first; what the mail server sent after its OK, still in up's read buffer, likewise.
// One direction runs on this goroutine, the other on one more: an idle connection costs two goroutines.
func (c *imapConn) splice(up net.Conn) {
	c.conn.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Client to mail server: commands, and APPENDs through c.r's buffer (bufio.Reader.WriteTo).
		io.Copy(up, c.r)
		// The client is gone or the mail server refused a write: end both. The client's TLS connection is closed
		// underneath, as crypto/tls does itself when a write is in flight: copyDown may be writing to it.
		up.Close()
		c.lc.conn.Close()
	}()
	c.copyDown(up)
	c.conn.Close() // no write in flight: crypto/tls sends close_notify
	up.Close()
	<-done
}

// copyDown copies the mail server's answers to the client until either ends.
func (c *imapConn) copyDown(up io.Reader) error {
	var head [headSize]byte
	for {
		n, err := up.Read(head[:])
		if n == len(head) && err == nil {
			// The answer is larger than head: stream it with the large buffers while it lasts.
			err = c.stream(up, head[:n])
		} else if n > 0 {
			if _, werr := c.conn.Write(head[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

// stream copies a large answer (a FETCH of a big message, a long FETCH 1:*) in chunks of up to spliceBufSize,
// starting with head, and returns once the mail server sends less than streamMin per read.
func (c *imapConn) stream(up io.Reader, head []byte) error {
	sb := spliceBufs.Get().(*spliceBuf)
	defer spliceBufs.Put(sb)
	n := copy(sb.read, head)
	for first := true; ; first = false {
		// The first read takes what up's own read buffer still holds; the next ones read from the socket straight
		// into sb.read.
		m, err := up.Read(sb.read[n:])
		n += m
		if n > 0 {
			if werr := c.writeChunk(sb, sb.read[:n]); werr != nil {
				return werr
			}
		}
		if err != nil || (!first && m < streamMin) {
			return err
		}
		n = 0
	}
}

// writeChunk writes p to the client as TLS records that leave in one write.
func (c *imapConn) writeChunk(sb *spliceBuf, p []byte) error {
	if c.batch == nil {
		_, err := c.conn.Write(p)
		return err
	}
	c.batch.start(sb.records[:0])
	_, err := c.conn.Write(p)
	if ferr := c.batch.flush(); err == nil {
		err = ferr
	}
	return err
}

// recordBatcher is the client connection under crypto/tls. Between start and flush it gathers the records
// crypto/tls writes and flush sends them in one write. The lock keeps records in the order crypto/tls made them,
// also when the reading side writes one of its own meanwhile (a TLS 1.3 KeyUpdate answer, RFC 8446 section 4.6.3):
// that record goes after the gathered ones, never before them.
type recordBatcher struct {
	net.Conn
	mu  sync.Mutex
	on  bool
	buf []byte
}

func (b *recordBatcher) start(buf []byte) {
	b.mu.Lock()
	b.on, b.buf = true, buf
	b.mu.Unlock()
}

// Write gathers p while batching, else writes it through.
func (b *recordBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.on {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *recordBatcher) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = false
	out := b.buf
	b.buf = nil // the pool's buffer is not kept
	if len(out) == 0 {
		return nil
	}
	_, err := b.Conn.Write(out)
	return err
}
