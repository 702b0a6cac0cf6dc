//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/mail"
)

// htmlMessage is an HTML newsletter-like message with a script and a remote image, which the reading path must
// render inert.
func htmlMessage(from, to, subject string) string {
	return strings.ReplaceAll(fmt.Sprintf(`From: Bob Tester <%s>
To: %s
Subject: %s
Date: %s
Message-ID: <%s@e2e.postern.test>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Quarterly numbers are in.
--b1
Content-Type: text/html; charset=utf-8

<html><body><h1>Quarterly numbers</h1><p>They are in.</p>
<script>document.title="PWNED"</script><img src="https://tracker.example/pixel.gif">
</body></html>
--b1--
`, from, to, subject, time.Now().Format(time.RFC1123Z), randomString()), "\n", "\r\n")
}

// rowUID finds the UID of the list row that shows subject.
func rowUID(page, subject string) string {
	for _, row := range strings.Split(page, "<tr") {
		if strings.Contains(row, subject) {
			if m := regexp.MustCompile(`data-uid="(\d+)"`).FindStringSubmatch(row); m != nil {
				return m[1]
			}
		}
	}
	return ""
}

// maildirHas reports whether a message containing needle is stored in the maildir folder dir (new/ or cur/).
func maildirHas(dir, needle string) bool {
	for _, sub := range []string{"new", "cur"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(needle)) {
				return true
			}
		}
	}
	return false
}

// postMultipart submits a form with one file, as the compose page does.
func (b *browser) postMultipart(ctx context.Context, t *testing.T, u string, fields map[string]string, file, fileName string) (*http.Response, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		w.WriteField(k, v)
	}
	fw, err := w.CreateFormFile("attach", fileName)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte(file))
	w.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	return b.do(t, req)
}

// TestWebmailReadAndReply: alice reads an HTML message from bob through Postern (sanitised, framed, remote image
// blocked) and replies with an attachment; the reply goes out over Dovecot submission and Postfix into bob's maildir,
// and a copy lands in alice's Sent.
func TestWebmailReadAndReply(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	bobTok := tb.directLogin(t, tb.postern(), "bob", "bob-password")
	subject := "e2e html " + randomString()[:8]
	if err := sendRaw(ctx, tb, bobTok.Access, htmlMessage(bob, alice, subject)); err != nil {
		t.Fatalf("deliver an HTML message as bob: %v", err)
	}
	p := startPostern(t, tb, posternOptions{Listen: "127.0.0.1:18080", Client: tb.postern()})
	b := newBrowser(t)
	if resp, page := b.signInForm(ctx, t, p.URL+"/mail/INBOX", "alice", "alice-password"); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in ended with %d: %.300s", resp.StatusCode, visibleText(page))
	}
	var uid string
	err := eventually(15*time.Second, 300*time.Millisecond, func() error {
		if uid = rowUID(p.inbox(ctx, t, b), subject); uid == "" {
			return fmt.Errorf("%q not listed yet", subject)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	resp, page := b.get(ctx, t, p.URL+"/msg/INBOX/"+uid)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="msg-html"`) || !strings.Contains(page, `id="remote-blocked"`) {
		t.Fatalf("message page = %d; want the HTML frame and the remote-content notice: %.400s", resp.StatusCode, visibleText(page))
	}
	resp, frame := b.get(ctx, t, p.URL+"/msg/INBOX/"+uid+"/html")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("frame CSP = %q, want default-src 'none'", csp)
	}
	if !strings.Contains(frame, "Quarterly numbers") || strings.Contains(frame, "<script") || strings.Contains(frame, "tracker.example") {
		t.Errorf("frame document is not the sanitised message: %.400s", frame)
	}

	reply := "Re: " + subject
	resp, page = b.postMultipart(ctx, t, p.URL+"/send", map[string]string{
		"to": bob, "subject": reply, "body": "Thanks, Bob. Notes attached.",
	}, "page 1 of the notes\n", "notes.txt")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path == "/send" {
		t.Fatalf("POST /send ended at %s with %d: %.400s", resp.Request.URL, resp.StatusCode, visibleText(page))
	}
	err = eventually(15*time.Second, 200*time.Millisecond, func() error {
		if !maildirHas(filepath.Join(tb.Dir, "mail", bob, "Maildir"), reply) {
			return fmt.Errorf("the reply is not in bob's INBOX maildir")
		}
		if !maildirHas(filepath.Join(tb.Dir, "mail", alice, "Maildir", ".Sent"), reply) {
			return fmt.Errorf("the reply is not in alice's Sent")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !maildirHas(filepath.Join(tb.Dir, "mail", bob, "Maildir"), "notes.txt") {
		t.Error("the attachment did not arrive with the reply")
	}
}

// sendRaw submits raw from bob to alice over Dovecot submission (implicit TLS) with bob's token.
func sendRaw(ctx context.Context, tb *testbed, token, raw string) error {
	return mail.Send(ctx, tb.mailServer(tb.SubmissionPort, mail.TLSImplicit, mail.MechOAuthBearer),
		mail.Credentials{Address: bob, Token: token}, bob, []string{alice}, strings.NewReader(raw))
}
