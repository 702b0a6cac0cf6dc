package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/postern/postern/mail"
)

// TestReplyWithAttachmentArrives is the daily path: alice replies to bob with a file; bob gets it, alice's Sent
// has it, and the original is marked answered.
func TestReplyWithAttachmentArrives(t *testing.T) {
	s := newStack(t)
	alice := signedInAs(t, s, "alice")
	orig := alice.appendMsg(t, "INBOX", "Bob Marley <bob@example.test>", "Lunch on Friday?", "Shall we?")
	signedInAs(t, s, "bob") // bob's account exists at the mail server

	r := alice.b.get(s.ts.URL + "/compose?reply=" + url.QueryEscape("INBOX/"+strconv.Itoa(int(orig))))
	if r.status != http.StatusOK {
		t.Fatalf("GET /compose?reply = %d: %s", r.status, r.body)
	}
	f := formFields(t, r.body)
	if !strings.Contains(f["to"], "bob@example.test") || f["subject"] != "Re: Lunch on Friday?" || f["in_reply_to"] == "" || !strings.Contains(f["body"], "> Shall we?") {
		t.Fatalf("reply form = %+v", f)
	}
	f["body"] = "Yes, noon.\n" + f["body"]
	file := formFile{name: "menu.txt", ctype: "text/plain", data: []byte("soup of the day")}
	before := len(stored(t, s, "bob@example.test", "INBOX"))
	r = alice.b.postMultipart(s.ts.URL+"/send", append(fieldList(f), [2]string{"from", "bob@example.test"}), []formFile{file})
	if r.status != http.StatusSeeOther || r.location != "/mail/INBOX" {
		t.Fatalf("POST /send = %d to %q: %s", r.status, r.location, r.body)
	}
	got, ok := findBySubject(t, s, "bob@example.test", "INBOX", "Re: Lunch on Friday?")
	if !ok || len(stored(t, s, "bob@example.test", "INBOX")) != before+1 {
		t.Fatal("the reply did not arrive in bob's INBOX")
	}
	h := header(t, got.Raw)
	if from, _ := h.AddressList("From"); len(from) != 1 || from[0].Address != "alice@example.test" {
		t.Errorf("From = %v, want alice (never the form's)", h.Get("From"))
	}
	if h.Get("In-Reply-To") != "<"+f["in_reply_to"]+">" {
		t.Errorf("In-Reply-To = %q, want <%s>", h.Get("In-Reply-To"), f["in_reply_to"])
	}
	raw := string(got.Raw)
	if !strings.Contains(raw, "menu.txt") || !strings.Contains(raw, "c291cCBvZiB0aGUgZGF5") {
		t.Error("the attachment is not in the delivered message")
	}
	if !strings.Contains(raw, "Yes, noon.") {
		t.Error("the text is not in the delivered message")
	}
	sent, ok := findBySubject(t, s, alice.addr, "Sent", "Re: Lunch on Friday?")
	if !ok || !hasFlag(sent, `\Seen`) {
		t.Errorf("Sent copy found=%v flags=%v, want it with \\Seen", ok, sent.Flags)
	}
	if m, _ := storedByUID(t, s, alice.addr, "INBOX", orig); !hasFlag(m, `\Answered`) {
		t.Errorf("original flags = %v, want \\Answered", m.Flags)
	}
	// The confirmation is a flash of the session, not part of the address: shown once, then gone.
	if p := alice.b.get(s.ts.URL + r.location); !strings.Contains(p.body, "Your message was sent") {
		t.Error("the list does not confirm the send")
	}
	if p := alice.b.get(s.ts.URL + r.location); strings.Contains(p.body, "Your message was sent") {
		t.Error("the confirmation shows again on reload")
	}
}

func TestSendRefusals(t *testing.T) {
	s := newStack(t, withMaxUpload(64<<10))
	u := signedInAs(t, s, "alice")
	signedInAs(t, s, "bob")
	typed := "A long careful message\nwith two lines & <angle> brackets."
	base := func(to, subject string) [][2]string {
		return [][2]string{{"to", to}, {"cc", ""}, {"bcc", ""}, {"subject", subject}, {"body", typed}}
	}
	delivered := func() int { return len(stored(t, s, "bob@example.test", "INBOX")) }
	n := delivered()

	t.Run("bad address keeps the input and the file", func(t *testing.T) {
		r := u.b.postMultipart(s.ts.URL+"/send", base("bob@example.test, not an address", "Plans"), []formFile{{"plan.txt", "text/plain", []byte("step one")}})
		if r.status != http.StatusBadRequest {
			t.Fatalf("POST /send = %d: %s", r.status, r.body)
		}
		f := formFields(t, r.body)
		if f["body"] != typed || f["subject"] != "Plans" || f["to"] != "bob@example.test, not an address" {
			t.Errorf("form came back as %+v", f)
		}
		if !strings.Contains(html.UnescapeString(r.body), "“not an address” is not an email address") || !strings.Contains(r.body, `id="to" name="to" value="bob@example.test, not an address" spellcheck="false" aria-invalid="true"`) {
			t.Errorf("the problem is not named at the To field: %s", r.body)
		}
		keep := keepRe.FindAllStringSubmatch(r.body, -1)
		if len(keep) != 1 || !strings.Contains(r.body, "plan.txt") {
			t.Fatalf("the attachment is not kept: %s", r.body)
		}
		// Fixing the address sends, with the kept file.
		f["to"] = "bob@example.test"
		r = u.b.postMultipart(s.ts.URL+"/send", fieldList(f, keep[0][1]), nil)
		if r.status != http.StatusSeeOther {
			t.Fatalf("resend = %d: %s", r.status, r.body)
		}
		m, ok := findBySubject(t, s, "bob@example.test", "INBOX", "Plans")
		if !ok || !strings.Contains(string(m.Raw), "plan.txt") {
			t.Error("the corrected message did not arrive with its attachment")
		}
		n = delivered()
	})
	t.Run("header injection", func(t *testing.T) {
		for name, fields := range map[string][][2]string{
			"subject": base("bob@example.test", "Hi\r\nBcc: eve@example.test"),
			"to":      base("bob@example.test\r\nBcc: eve@example.test", "Hi"),
		} {
			r := u.b.postMultipart(s.ts.URL+"/send", fields, nil)
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, "line break") || formFields(t, r.body)["body"] != typed {
				t.Errorf("%s with CRLF = %d: %s", name, r.status, r.body)
			}
		}
		if delivered() != n {
			t.Error("a message with an injected header was delivered")
		}
	})
	t.Run("oversize upload", func(t *testing.T) {
		r := u.b.postMultipart(s.ts.URL+"/send", base("bob@example.test", "Big"), []formFile{{"big.bin", "application/octet-stream", bytes.Repeat([]byte("x"), 200<<10)}})
		if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "too big") {
			t.Fatalf("oversize = %d: %s", r.status, r.body)
		}
		if f := formFields(t, r.body); f["body"] != typed || f["subject"] != "Big" {
			t.Errorf("oversize form lost the text: %+v", f)
		}
		if delivered() != n {
			t.Error("an oversize message was delivered")
		}
	})
	t.Run("no recipient", func(t *testing.T) {
		r := u.b.postMultipart(s.ts.URL+"/send", base("", "Nobody"), nil)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "at least one recipient") {
			t.Errorf("no recipient = %d", r.status)
		}
	})
	t.Run("unknown recipient", func(t *testing.T) {
		r := u.b.postMultipart(s.ts.URL+"/send", base("someone@elsewhere.invalid", "Out"), nil)
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "refused a recipient") || formFields(t, r.body)["body"] != typed {
			t.Errorf("unknown recipient = %d: %s", r.status, r.body)
		}
		// The page names the refused address and marks the field that holds it (issue 15 item 1).
		fields := [][2]string{{"to", "bob@example.test"}, {"cc", "someone@elsewhere.invalid"}, {"bcc", ""}, {"subject", "Out"}, {"body", typed}}
		r = u.b.postMultipart(s.ts.URL+"/send", fields, nil)
		if !strings.Contains(r.body, "“someone@elsewhere.invalid”") || !strings.Contains(r.body, `id="cc" name="cc" value="someone@elsewhere.invalid" spellcheck="false" aria-invalid="true"`) {
			t.Errorf("refused Cc = %d, want the address named and the Cc field marked: %s", r.status, r.body)
		}
	})
	t.Run("cross-site POST refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, s.ts.URL+"/send", strings.NewReader(url.Values{"to": {"bob@example.test"}, "subject": {"csrf"}, "body": {"x"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if r := u.b.do(req); r.status != http.StatusForbidden {
			t.Errorf("cross-site POST /send = %d, want 403", r.status)
		}
		if delivered() != n {
			t.Error("a cross-site POST sent mail")
		}
	})
}

// failingSender fails every send with err.
type failingSender struct {
	err   error
	calls atomic.Int32
}

func (f *failingSender) Send(ctx context.Context, c mail.Credentials, from string, to []string, msg io.Reader) error {
	f.calls.Add(1)
	return f.err
}

func TestSendFailures(t *testing.T) {
	fields := [][2]string{{"to", "bob@example.test"}, {"subject", "Retry"}, {"body", "kept text"}}
	t.Run("refused token is retried once", func(t *testing.T) {
		s := newStack(t)
		u := signedInAs(t, s, "alice")
		signedInAs(t, s, "bob")
		// The pooled IMAP connection is up with the good token; then the grant's access token goes stale, as when
		// the IdP revoked it behind our back: only the SMTP login sees the refusal.
		if r := u.b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
			t.Fatalf("inbox = %d", r.status)
		}
		ctx := context.Background()
		g, err := s.store.Grant(ctx, u.grant)
		if err != nil {
			t.Fatal(err)
		}
		g.AccessToken = "stale-token"
		if _, err := s.store.UpdateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		before := s.mail.Stats()
		if r := u.b.postMultipart(s.ts.URL+"/send", fields, nil); r.status != http.StatusSeeOther {
			t.Fatalf("send = %d: %s", r.status, r.body)
		}
		after := s.mail.Stats()
		if n := after.AuthFailures - before.AuthFailures; n != 1 {
			t.Errorf("mail server refused %d logins, want exactly 1 (then one retry with a fresh token)", n)
		}
		if _, ok := findBySubject(t, s, "bob@example.test", "INBOX", "Retry"); !ok {
			t.Error("the message did not arrive after the retry")
		}
	})
	t.Run("server unreachable keeps the text", func(t *testing.T) {
		unreachableErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
		fs := &failingSender{err: unreachableErr}
		s := newStack(t, withSender(fs))
		u := signedInAs(t, s, "alice")
		r := u.b.postMultipart(s.ts.URL+"/send", fields, nil)
		if r.status != http.StatusBadGateway || !strings.Contains(r.body, "cannot be reached") || formFields(t, r.body)["body"] != "kept text" {
			t.Errorf("unreachable = %d: %s", r.status, r.body)
		}
		if strings.Contains(r.body, "connection refused") {
			t.Error("the page shows the library's error text")
		}
	})
}

func TestDraftSaveResumeSend(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	signedInAs(t, s, "bob")
	fields := [][2]string{{"to", "Bob <bob@example.test>"}, {"cc", ""}, {"bcc", "carol@example.test"}, {"subject", "Half-written"}, {"body", "first thoughts"}}
	r := u.b.postMultipart(s.ts.URL+"/drafts", fields, []formFile{{"notes.txt", "text/plain", []byte("draft notes")}})
	if r.status != http.StatusSeeOther || r.location != "/mail/Drafts" {
		t.Fatalf("POST /drafts = %d to %q: %s", r.status, r.location, r.body)
	}
	d, ok := findBySubject(t, s, u.addr, "Drafts", "Half-written")
	if !ok || !hasFlag(d, `\Draft`) {
		t.Fatalf("draft stored=%v flags=%v", ok, d.Flags)
	}
	list := u.b.get(s.ts.URL + "/mail/Drafts")
	if !strings.Contains(list.body, `href="/compose?draft=`+strconv.Itoa(int(d.UID))+`"`) {
		t.Error("a draft in the list does not open the editor")
	}
	r = u.b.get(s.ts.URL + "/compose?draft=" + strconv.Itoa(int(d.UID)))
	if r.status != http.StatusOK {
		t.Fatalf("resume = %d: %s", r.status, r.body)
	}
	f := formFields(t, r.body)
	if f["subject"] != "Half-written" || !strings.Contains(f["body"], "first thoughts") || !strings.Contains(f["to"], "bob@example.test") ||
		f["bcc"] != "carol@example.test" || f["draft"] != strconv.Itoa(int(d.UID)) {
		t.Fatalf("resumed form = %+v", f)
	}
	keep := keepRe.FindAllStringSubmatch(r.body, -1)
	if len(keep) != 1 || !strings.Contains(r.body, "notes.txt") {
		t.Fatalf("resumed draft lost its attachment: %s", r.body)
	}
	f["body"] = "final words"
	f["bcc"] = ""
	if r := u.b.postMultipart(s.ts.URL+"/send", fieldList(f, keep[0][1]), nil); r.status != http.StatusSeeOther {
		t.Fatalf("send draft = %d: %s", r.status, r.body)
	}
	got, ok := findBySubject(t, s, "bob@example.test", "INBOX", "Half-written")
	if !ok || !strings.Contains(string(got.Raw), "final words") || !strings.Contains(string(got.Raw), "notes.txt") {
		t.Error("the sent draft did not arrive with its text and attachment")
	}
	if _, ok := findBySubject(t, s, u.addr, "Drafts", "Half-written"); ok {
		t.Error("the draft is still in Drafts after sending")
	}
}

func TestForward(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	signedInAs(t, s, "bob")
	orig := u.appendMsg(t, "INBOX", "carol@example.test", "Minutes", "We agreed.")
	for _, as := range []string{"attachment", "inline"} {
		t.Run(as, func(t *testing.T) {
			r := u.b.get(s.ts.URL + "/compose?forward=" + url.QueryEscape("INBOX/"+strconv.Itoa(int(orig))) + "&as=" + as)
			if r.status != http.StatusOK {
				t.Fatalf("GET /compose?forward = %d: %s", r.status, r.body)
			}
			f := formFields(t, r.body)
			if f["subject"] != "Fwd: Minutes" || f["fwd_as"] != as || f["to"] != "" {
				t.Fatalf("forward form = %+v", f)
			}
			f["to"] = "bob@example.test"
			f["subject"] = "Fwd: Minutes (" + as + ")"
			if r := u.b.postMultipart(s.ts.URL+"/send", fieldList(f), nil); r.status != http.StatusSeeOther {
				t.Fatalf("send forward = %d: %s", r.status, r.body)
			}
			got, ok := findBySubject(t, s, "bob@example.test", "INBOX", "("+as+")")
			if !ok || !strings.Contains(string(got.Raw), "We agreed.") {
				t.Fatal("the forward did not arrive with the original text")
			}
			if as == "attachment" && !strings.Contains(string(got.Raw), "message/rfc822") {
				t.Error("the original is not attached as message/rfc822")
			}
		})
	}
	if r := u.b.get(s.ts.URL + "/compose?reply=INBOX/999999"); r.status != http.StatusNotFound {
		t.Errorf("reply to a missing message = %d, want 404", r.status)
	}
	if r := u.b.get(s.ts.URL + "/compose?reply=nonsense"); r.status != http.StatusBadRequest {
		t.Errorf("reply to a bad reference = %d, want 400", r.status)
	}
}

func TestComposePage(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	r := u.b.get(s.ts.URL + "/compose")
	if r.status != http.StatusOK {
		t.Fatalf("GET /compose = %d", r.status)
	}
	for _, want := range []string{`enctype="multipart/form-data"`, `<label for="to">To</label>`, `formaction="/drafts"`, `id="from">alice@example.test`, `id="to" name="to" value="" spellcheck="false" autofocus`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("compose page lacks %s", want)
		}
	}
	if strings.Contains(r.body, `name="from"`) {
		t.Error("the compose form has a From field; From must come from the grant")
	}
}

// TestOverQuota: with a full mailbox a draft cannot be saved (the form comes back whole), and a message still goes
// out but the list says its copy is missing from Sent.
func TestOverQuota(t *testing.T) {
	s := newStack(t, withQuota(1))
	u := signedInAs(t, s, "alice")
	signedInAs(t, s, "bob")
	fields := [][2]string{{"to", "bob@example.test"}, {"subject", "Full"}, {"body", "still here"}}
	r := u.b.postMultipart(s.ts.URL+"/drafts", fields, nil)
	if r.status != http.StatusInsufficientStorage || !strings.Contains(r.body, "mailbox is full") || formFields(t, r.body)["body"] != "still here" {
		t.Errorf("draft over quota = %d: %s", r.status, r.body)
	}
	r = u.b.postMultipart(s.ts.URL+"/send", fields, nil)
	if r.status != http.StatusSeeOther || r.location != "/mail/INBOX" {
		t.Fatalf("send over quota = %d to %q: %s", r.status, r.location, r.body)
	}
	if p := u.b.get(s.ts.URL + r.location); !strings.Contains(p.body, "copy for your Sent folder could not be saved") {
		t.Error("the list does not say that the Sent copy is missing")
	}
	if _, ok := findBySubject(t, s, "bob@example.test", "INBOX", "Full"); !ok {
		t.Error("the message was not delivered")
	}
}

// In the demo (issue 15 item 1), Reply works on mail from someone without an account here: the message is kept in
// the sender's Outbound folder, which the folder list shows, and every page says so on the demo banner; an address
// in .invalid is still refused, named, and its field marked.
func TestDemoReplyToStranger(t *testing.T) {
	s := newStack(t, withDemo())
	alice := signedInAs(t, s, "alice")
	orig := alice.appendMsg(t, "INBOX", "Björn Lindqvist <bjorn@example.org>", "Slides?", "Can you send the slides?")
	r := alice.b.get(s.ts.URL + "/compose?reply=" + url.QueryEscape("INBOX/"+strconv.Itoa(int(orig))))
	f := formFields(t, r.body)
	if !strings.Contains(f["to"], "bjorn@example.org") {
		t.Fatalf("reply To = %q", f["to"])
	}
	if !strings.Contains(r.body, `id="site-banner"`) || !strings.Contains(r.body, "Outbound folder") {
		t.Error("the compose page has no demo banner saying where mail goes")
	}
	r = alice.b.postMultipart(s.ts.URL+"/send", fieldList(f), nil)
	if r.status != http.StatusSeeOther {
		t.Fatalf("reply to a stranger = %d: %s", r.status, r.body)
	}
	if _, ok := findBySubject(t, s, alice.addr, "Outbound", "Re: Slides?"); !ok {
		t.Error("the reply is not in alice's Outbound folder")
	}
	if _, ok := findBySubject(t, s, alice.addr, "Sent", "Re: Slides?"); !ok {
		t.Error("the reply is not in alice's Sent folder")
	}
	if p := alice.b.get(s.ts.URL + "/mail/INBOX"); !strings.Contains(p.body, `href="/mail/Outbound"`) {
		t.Error("the folder list does not show Outbound")
	}
	f["to"] = "Björn <bjorn@example.org>, nobody@example.invalid"
	r = alice.b.postMultipart(s.ts.URL+"/send", fieldList(f), nil)
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "“nobody@example.invalid”") ||
		!strings.Contains(r.body, `id="to" name="to" value="Björn &lt;bjorn@example.org&gt;, nobody@example.invalid" spellcheck="false" aria-invalid="true"`) {
		t.Errorf("refused recipient = %d, want the address named and To marked: %s", r.status, r.body)
	}
}

// The compose script's background save (autosave=1) answers JSON with the draft's UID, and the next save with that
// UID replaces the copy rather than adding one (issue 15 item 3).
func TestAutosaveDraft(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	save := func(body, draft string) (int, map[string]any) {
		r := u.b.postMultipart(s.ts.URL+"/drafts", [][2]string{{"to", "bob@example.test"}, {"subject", "Autosaved"}, {"body", body}, {"draft", draft}, {"autosave", "1"}}, nil)
		var out map[string]any
		if err := json.Unmarshal([]byte(r.body), &out); err != nil || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("autosave = %d %q: %s", r.status, r.header.Get("Content-Type"), r.body)
		}
		return r.status, out
	}
	status, out := save("first words", "")
	uid, _ := out["draft"].(float64)
	if status != http.StatusOK || uid == 0 {
		t.Fatalf("first autosave = %d %v", status, out)
	}
	status, out = save("first words and more", strconv.Itoa(int(uid)))
	if status != http.StatusOK || out["draft"].(float64) == uid {
		t.Fatalf("second autosave = %d %v", status, out)
	}
	n := 0
	for _, m := range stored(t, s, u.addr, "Drafts") {
		if strings.Contains(string(m.Raw), "Subject: Autosaved") {
			n++
			if !strings.Contains(string(m.Raw), "first words and more") {
				t.Error("the kept draft is not the latest text")
			}
		}
	}
	if n != 1 {
		t.Errorf("Drafts holds %d autosaved copies, want 1", n)
	}
	if p := u.b.get(s.ts.URL + "/mail/INBOX"); strings.Contains(p.body, `id="notice"`) {
		t.Error("a background save left a notice for the next page")
	}
}
