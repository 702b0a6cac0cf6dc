package web

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"
)

// invoiceMail is the case of issue 15: three lines of HTML and a PDF.
func invoiceMail(pdfBytes int) string {
	pdf := base64.StdEncoding.EncodeToString([]byte("%PDF-1.4\n" + strings.Repeat("0", pdfBytes)))
	var b strings.Builder
	for len(pdf) > 76 {
		b.WriteString(pdf[:76] + "\n")
		pdf = pdf[76:]
	}
	b.WriteString(pdf + "\n")
	return `From: ACME Billing <billing@acme.example>
To: Alice <alice@example.test>
Date: Fri, 4 Dec 2026 09:00:00 +0000
Subject: Your invoice 2026-117
Message-ID: <invoice-117@acme.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8

Hello Alice,
please find invoice 2026-117 attached.
Kind regards, ACME
--alt
Content-Type: text/html; charset=utf-8

<p>Hello Alice,</p><p>please find invoice 2026-117 attached.</p><p>Kind regards, ACME</p>
--alt--
--mixed
Content-Type: application/pdf; name="invoice-2026-117.pdf"
Content-Disposition: attachment; filename="invoice-2026-117.pdf"
Content-Transfer-Encoding: base64

` + b.String() + `--mixed--
`
}

// TestMessagePageRoundTripOnWarmPool: opening a message on a pooled connection waits for the mail server once: the
// SELECT, the FETCH of the message (structure, flags, envelope and its content), the STORE that marks it read and
// the folder list with counts go out pipelined (mail.Session.Read). When the folder is still open read-write, a
// NOOP replaces the SELECT and is waited for first (mail.Session.syncOpen: the counts must include other clients'
// changes), one more round trip but no re-opening of the folder. The frame that shows its HTML body is one more
// (the FETCH, behind an EXAMINE unless the folder is open), as is an attachment's download.
func TestMessagePageRoundTripOnWarmPool(t *testing.T) {
	rd := newReader(t)
	// Counting holds the first answer of every turn 20 ms, so that commands pipelined by a goroutine paused on this
	// loaded machine still arrive within the turn (mailserver.CountRoundTrips). It applies to connections made
	// from now on: the pool's first one is made by deliver.
	rd.s.mail.CountRoundTrips(20 * time.Millisecond)
	small := rd.deliver(t, "INBOX", []byte(invoiceMail(40<<10)))
	big := rd.deliver(t, "INBOX", []byte(invoiceMail(3<<20)))
	view := func(path string) (int64, string) {
		t.Helper()
		start := rd.s.mail.Stats().RoundTrips
		r := rd.get(t, path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %d", path, r.status)
		}
		return rd.s.mail.Stats().RoundTrips - start, r.body
	}
	view("/mail/INBOX") // warms the pool
	for _, c := range []struct {
		name string
		uid  uint32
		page int64
	}{
		// Up to mail.SpeculativeBytes, the first answer holds the whole message.
		{"invoice with a 40 kB PDF", small, 1},
		// Bigger: a second round trip fetches the structure, a third only the text parts.
		{"invoice with a 3 MB PDF", big, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			self := messagePath("INBOX", c.uid)
			trips, body := view(self)
			if trips != c.page && trips != c.page+1 {
				t.Errorf("message page (unread): %d round trips, want %d (%d with a NOOP first)", trips, c.page, c.page+1)
			}
			if !strings.Contains(body, "invoice-2026-117.pdf") || !strings.Contains(body, "PDF document") {
				t.Error("the page does not list the PDF")
			}
			if !rd.summary(t, "INBOX", c.uid).Seen {
				t.Error("reading did not mark the message \\Seen")
			}
			if trips, _ := view(self); trips != c.page && trips != c.page+1 {
				t.Errorf("message page (read): %d round trips, want %d (%d with a NOOP first)", trips, c.page, c.page+1)
			}
			trips, frame := view(self + "/html")
			if trips != c.page {
				t.Errorf("HTML frame: %d round trips, want %d", trips, c.page)
			}
			if !strings.Contains(frame, "please find invoice 2026-117 attached.") {
				t.Errorf("frame lacks the body:\n%s", frame)
			}
		})
	}
	if p := rd.s.pool.Stats(); p.Logins != 1 {
		t.Errorf("%d IMAP logins, want 1", p.Logins)
	}
}
