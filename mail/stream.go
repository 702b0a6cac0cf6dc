package mail

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// MaxStreamSize bounds a part that WritePart streams; unlike Part it holds no copy in memory, so the bound is only
// there to stop a runaway download.
const MaxStreamSize = 1 << 30

// errStartRefused wraps the error of WritePart's start callback: nothing was fetched yet, so the connection is fine.
var errStartRefused = errors.New("mail: part refused by the caller")

// WritePart streams the decoded content of one part (RFC 9051 §6.4.5 BODY.PEEK[section]; transfer encoding and, for
// text, charset undone) into the writer that start returns. start sees the part first — type, name, and as Size the
// encoded size the server reports — so the caller can choose headers or refuse (its error is returned wrapped, and
// the connection stays usable). Nothing is buffered beyond the IMAP client's literal reader, so an attachment's size
// does not become Postern's memory. An error after start returned means the writer got part of the content.
func (s *Session) WritePart(ctx context.Context, box string, uid uint32, path string, start func(Part) (io.Writer, error)) error {
	nums, err := parsePartPath(path)
	if err != nil {
		return err
	}
	return s.run(ctx, fmt.Sprintf("stream part %s of message %d of %q", path, uid, box), func() error {
		set, hdr, size, err := s.locatePart(box, uid, nums, path, MaxStreamSize)
		if err != nil {
			return err
		}
		bufs, err := s.c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{hdr}}).Collect()
		if err != nil {
			return err
		}
		b := findUID(bufs, uid)
		if b == nil {
			return fmt.Errorf("%w: uid %d", ErrNoMessage, uid)
		}
		h, err := textproto.ReadHeader(bufioReader(b.FindBodySection(hdr)))
		if err != nil {
			h = textproto.Header{} // a broken part header: the bytes go out undecoded, as octets
		}
		p := newLeaf(path, message.Header{Header: h}).part()
		p.Size = size
		w, err := start(p)
		if err != nil {
			return fmt.Errorf("%w: %w", errStartRefused, err)
		}

		content := &imap.FetchItemBodySection{Peek: true, Part: nums}
		cmd := s.c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{content}})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			for item := msg.Next(); item != nil; item = msg.Next() {
				bs, ok := item.(imapclient.FetchItemDataBodySection)
				if !ok || bs.Literal == nil {
					continue
				}
				e, _ := message.New(message.Header{Header: h}, bs.Literal)
				body := io.Reader(bs.Literal)
				if e != nil {
					body = e.Body
				}
				if _, err := io.Copy(w, body); err != nil {
					// The literal is only partly read: the connection is out of step and must not be reused,
					// which run sees from this error not being an IMAP status.
					cmd.Close()
					return fmt.Errorf("copy part: %w", err)
				}
			}
		}
		return cmd.Close()
	})
}
