package web

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"html"
	"mime/multipart"
	"net/http"
	netmail "net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/devstack/mailserver"
	"github.com/postern/postern/mail"
)

// mailUser is a signed-in browser of one dev user, plus direct IMAP access to their mailbox through Postern's own
// session, to set up and check what the pages do.
type mailUser struct {
	s     *stack
	b     *browser
	addr  string
	grant string
}

func signedInAs(t *testing.T, s *stack, user string) *mailUser {
	t.Helper()
	b := newBrowser(t)
	if r := s.signIn(b, user, "/mail/INBOX"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in of %s: callback = %d: %s", user, r.status, r.body)
	}
	ids, err := s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject(user))
	if err != nil || len(ids) == 0 {
		t.Fatalf("grants of %s = %v, %v", user, ids, err)
	}
	return &mailUser{s: s, b: b, addr: user + "@example.test", grant: ids[len(ids)-1]}
}

// imap runs fn on the user's pooled IMAP session.
func (u *mailUser) imap(t *testing.T, fn func(ctx context.Context, ms *mail.Session) error) {
	t.Helper()
	ctx := context.Background()
	if _, err := u.s.web.withMail(ctx, u.grant, func(ms *mail.Session) error { return fn(ctx, ms) }); err != nil {
		t.Fatalf("imap: %v", err)
	}
}

// appendMsg stores a small message in box and returns its UID.
func (u *mailUser) appendMsg(t *testing.T, box, from, subject, body string, flags ...mail.Flag) uint32 {
	t.Helper()
	raw := testMessage(from, u.addr, subject, body)
	var uid uint32
	u.imap(t, func(ctx context.Context, ms *mail.Session) error {
		if err := ms.Append(ctx, box, flags, raw); err != nil {
			return err
		}
		p, err := ms.List(ctx, box, 0, 1)
		if err != nil || len(p.Summaries) == 0 {
			return fmt.Errorf("list after append: %v", err)
		}
		uid = p.Summaries[0].UID
		return nil
	})
	return uid
}

var msgCounter int

func testMessage(from, to, subject, body string) []byte {
	msgCounter++
	return []byte(strings.ReplaceAll(fmt.Sprintf("From: %s\nTo: %s\nSubject: %s\nDate: %s\nMessage-ID: <test-%d-%d@example.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n%s\n",
		from, to, subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), msgCounter, body), "\n", "\r\n"))
}

// stored returns the messages of a mailbox as the dev server holds them.
func stored(t *testing.T, s *stack, addr, box string) []mailserver.StoredMessage {
	t.Helper()
	msgs, err := s.mail.Messages(addr, box)
	if err != nil {
		t.Fatalf("messages of %s %s: %v", addr, box, err)
	}
	return msgs
}

func storedByUID(t *testing.T, s *stack, addr, box string, uid uint32) (mailserver.StoredMessage, bool) {
	t.Helper()
	for _, m := range stored(t, s, addr, box) {
		if m.UID == uid {
			return m, true
		}
	}
	return mailserver.StoredMessage{}, false
}

func header(t *testing.T, raw []byte) netmail.Header {
	t.Helper()
	m, err := netmail.ReadMessage(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("parse stored message: %v", err)
	}
	return m.Header
}

func findBySubject(t *testing.T, s *stack, addr, box, subject string) (mailserver.StoredMessage, bool) {
	t.Helper()
	for _, m := range stored(t, s, addr, box) {
		if strings.Contains(header(t, m.Raw).Get("Subject"), subject) {
			return m, true
		}
	}
	return mailserver.StoredMessage{}, false
}

var (
	rowUIDs  = regexp.MustCompile(`<tr [^>]*data-uid="(\d+)"`)
	olderRef = regexp.MustCompile(`href="([^"]+)" id="older"`)
)

func pageUIDs(body string) []uint32 {
	var out []uint32
	for _, m := range rowUIDs.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 32)
		out = append(out, uint32(n))
	}
	return out
}

func TestMailboxPagesByUID(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	const n = 120
	u.imap(t, func(ctx context.Context, ms *mail.Session) error {
		if err := ms.CreateMailbox(ctx, "Bulk"); err != nil {
			return err
		}
		for i := range n {
			if err := ms.Append(ctx, "Bulk", nil, testMessage("bob@example.test", u.addr, fmt.Sprintf("bulk %03d", i), "x")); err != nil {
				return err
			}
		}
		return nil
	})
	var all []uint32
	next := s.ts.URL + "/mail/Bulk"
	for page := 1; next != ""; page++ {
		r := u.b.get(next)
		if r.status != http.StatusOK {
			t.Fatalf("page %d = %d: %s", page, r.status, r.body)
		}
		uids := pageUIDs(r.body)
		if len(uids) == 0 || len(uids) > 50 {
			t.Fatalf("page %d shows %d messages, want 1..50", page, len(uids))
		}
		if !slices.IsSortedFunc(uids, func(a, b uint32) int { return int(b) - int(a) }) {
			t.Errorf("page %d is not newest first: %v", page, uids)
		}
		if page > 1 && !strings.Contains(r.body, `id="newest"`) {
			t.Errorf("page %d has no link back to the newest messages", page)
		}
		for _, uid := range uids {
			if !strings.Contains(r.body, fmt.Sprintf(`href="/msg/Bulk/%d"`, uid)) {
				t.Errorf("row %d does not link to /msg/Bulk/%d", uid, uid)
			}
		}
		all = append(all, uids...)
		next = ""
		if m := olderRef.FindStringSubmatch(r.body); m != nil {
			next = s.ts.URL + html.UnescapeString(m[1])
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(all) != n {
		t.Errorf("paging showed %d messages, want %d", len(all), n)
	}
	if len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Errorf("paging repeated messages: %v", all)
	}

	// A message that arrives while the user looks at page 1 does not shift page 2 (UID cursor, not offset).
	first := u.b.get(s.ts.URL + "/mail/Bulk")
	older := html.UnescapeString(olderRef.FindStringSubmatch(first.body)[1])
	u.appendMsg(t, "Bulk", "bob@example.test", "late arrival", "x")
	if got, want := pageUIDs(u.b.get(s.ts.URL+older).body), all[50:100]; !slices.Equal(got, want) {
		t.Errorf("page 2 after a new arrival = %v, want %v", got, want)
	}
}

func TestMailboxRowsLinkOneSegment(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	u.imap(t, func(ctx context.Context, ms *mail.Session) error { return ms.CreateMailbox(ctx, "Projects/2026") })
	uid := u.appendMsg(t, "Projects/2026", "bob@example.test", "nested", "x")
	r := u.b.get(s.ts.URL + "/mail/Projects/2026")
	if r.status != http.StatusOK {
		t.Fatalf("GET /mail/Projects/2026 = %d: %s", r.status, r.body)
	}
	if want := fmt.Sprintf(`href="/msg/Projects%%2f2026/%d"`, uid); !strings.Contains(strings.ToLower(r.body), strings.ToLower(want)) {
		t.Errorf("row link: page lacks %s", want)
	}
	// Works without JavaScript: a real form per page, a checkbox per row, no inline script.
	for _, want := range []string{`<form method="post" action="/act"`, `name="uids" value="` + strconv.Itoa(int(uid)) + `"`, `name="box" value="Projects/2026"`, `src="/static/app.js?v=`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("list page lacks %s", want)
		}
	}
	if regexp.MustCompile(`<script[^>]*>\s*[^<\s]`).MatchString(r.body) || strings.Contains(r.body, "onclick=") {
		t.Error("list page has inline script")
	}
	if r := u.b.get(s.ts.URL + "/mail/Nope"); r.status != http.StatusNotFound || !strings.Contains(r.body, "does not exist") {
		t.Errorf("missing folder = %d, want a friendly 404", r.status)
	}
}

func TestSearch(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	// A seeded subject, as the dev server stores it.
	seeded := stored(t, s, u.addr, "INBOX")
	var subject string
	var uid uint32
	for _, m := range seeded {
		if sub := header(t, m.Raw).Get("Subject"); sub != "" && !strings.Contains(sub, "=?") && len(sub) > 12 {
			subject, uid = sub, m.UID
			break
		}
	}
	if subject == "" {
		t.Fatal("no plain seeded subject to search for")
	}
	tests := []struct {
		name  string
		query url.Values
	}{
		{"box", url.Values{"q": {subject}}},
		{"subject field", url.Values{"subject": {subject}}},
		{"with dates", url.Values{"q": {subject}, "since": {"2000-01-01"}, "until": {"2100-01-01"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := u.b.get(s.ts.URL + "/mail/INBOX?" + tc.query.Encode())
			if r.status != http.StatusOK {
				t.Fatalf("search = %d: %s", r.status, r.body)
			}
			if got := pageUIDs(r.body); !slices.Contains(got, uid) {
				t.Errorf("search %v = %v, want it to include %d (%q)", tc.query, got, uid, subject)
			}
			if !strings.Contains(r.body, `id="clear-search"`) {
				t.Error("search page has no way back to the whole folder")
			}
		})
	}
	r := u.b.get(s.ts.URL + "/mail/INBOX?q=" + url.QueryEscape("zz-no-such-words-zz"))
	if r.status != http.StatusOK || len(pageUIDs(r.body)) != 0 || !strings.Contains(r.body, "No messages match") {
		t.Errorf("search without hits = %d with %d rows", r.status, len(pageUIDs(r.body)))
	}
	if r := u.b.get(s.ts.URL + "/mail/INBOX?since=yesterday"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "2026-01-31") {
		t.Errorf("bad date = %d, want 400 with the expected format", r.status)
	}
	// Search pages through the union of its queries like the list does.
	u.imap(t, func(ctx context.Context, ms *mail.Session) error {
		if err := ms.CreateMailbox(ctx, "Hits"); err != nil {
			return err
		}
		for i := range 60 {
			from := "bob@example.test"
			if i%2 == 0 {
				from = "zebra-" + strconv.Itoa(i) + "@example.test"
			}
			if err := ms.Append(ctx, "Hits", nil, testMessage(from, u.addr, "hit "+strconv.Itoa(i)+" "+map[bool]string{true: "zebra", false: "plain"}[i%3 == 0], "x")); err != nil {
				return err
			}
		}
		return nil
	})
	var got []uint32
	next := s.ts.URL + "/mail/Hits?q=zebra"
	for i := 0; next != "" && i < 5; i++ {
		r := u.b.get(next)
		got = append(got, pageUIDs(r.body)...)
		next = ""
		if m := olderRef.FindStringSubmatch(r.body); m != nil {
			next = s.ts.URL + html.UnescapeString(m[1])
		}
	}
	// Zebra in the sender: even i (30); in the subject: i%3==0 (20); both: i%6==0 (10) → 40.
	if len(got) != 40 || len(slices.Compact(slices.Clone(got))) != 40 {
		t.Errorf("q=zebra over pages = %d messages, want 40 distinct", len(got))
	}
}

// act posts to /act like the list page's form.
func (u *mailUser) act(box, op string, uids []uint32, extra url.Values) response {
	f := url.Values{"box": {box}, "op": {op}}
	for _, uid := range uids {
		f.Add("uids", strconv.Itoa(int(uid)))
	}
	for k, v := range extra {
		f[k] = v
	}
	return u.b.post(u.s.ts.URL+"/act", f)
}

func hasFlag(m mailserver.StoredMessage, f string) bool { return slices.Contains(m.Flags, f) }

func TestActFlags(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	a := u.appendMsg(t, "INBOX", "bob@example.test", "flags a", "x")
	b := u.appendMsg(t, "INBOX", "bob@example.test", "flags b", "x")
	tests := []struct {
		op, flag string
		want     bool
	}{
		{"read", `\Seen`, true}, {"unread", `\Seen`, false}, {"flag", `\Flagged`, true}, {"unflag", `\Flagged`, false},
	}
	for _, tc := range tests {
		r := u.act("INBOX", tc.op, []uint32{a, b}, nil)
		if first := min(a, b); r.status != http.StatusSeeOther || r.location != "/mail/INBOX#m-"+strconv.Itoa(int(first)) {
			t.Fatalf("act %s = %d to %q: %s", tc.op, r.status, r.location, r.body)
		}
		for _, uid := range []uint32{a, b} {
			m, _ := storedByUID(t, s, u.addr, "INBOX", uid)
			if hasFlag(m, tc.flag) != tc.want {
				t.Errorf("after %s, message %d flags = %v", tc.op, uid, m.Flags)
			}
		}
	}
	// The PHP-style name the brief used works too, and return_to sends the reader on to the next message.
	r := u.b.post(s.ts.URL+"/act", url.Values{"box": {"INBOX"}, "op": {"read"}, "uids[]": {strconv.Itoa(int(a))}, "return_to": {"/msg/INBOX/" + strconv.Itoa(int(b))}})
	if r.status != http.StatusSeeOther || r.location != "/msg/INBOX/"+strconv.Itoa(int(b))+"#m-"+strconv.Itoa(int(a)) {
		t.Errorf("act with return_to = %d to %q", r.status, r.location)
	}
	r = u.act("INBOX", "read", []uint32{a}, url.Values{"return_to": {"https://evil.example/"}})
	if r.location != "/mail/INBOX#m-"+strconv.Itoa(int(a)) {
		t.Errorf("act with a foreign return_to went to %q, want /mail/INBOX", r.location)
	}
}

func TestActMoves(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	tests := []struct {
		op, to, wantBox string
	}{
		{"move", "Projects", "Projects"},
		{"archive", "", "Archive"},
		{"junk", "", "Junk"},
		{"delete", "", "Trash"},
	}
	for _, tc := range tests {
		t.Run(tc.op, func(t *testing.T) {
			subject := "to " + tc.wantBox
			uid := u.appendMsg(t, "INBOX", "bob@example.test", subject, "x")
			before := len(stored(t, s, u.addr, tc.wantBox))
			r := u.act("INBOX", tc.op, []uint32{uid}, url.Values{"to": {tc.to}})
			if r.status != http.StatusSeeOther {
				t.Fatalf("act %s = %d: %s", tc.op, r.status, r.body)
			}
			if _, ok := storedByUID(t, s, u.addr, "INBOX", uid); ok {
				t.Errorf("message still in INBOX after %s", tc.op)
			}
			if got := len(stored(t, s, u.addr, tc.wantBox)); got != before+1 {
				t.Errorf("%s has %d messages after %s, want %d", tc.wantBox, got, tc.op, before+1)
			}
			if _, ok := findBySubject(t, s, u.addr, tc.wantBox, subject); !ok {
				t.Errorf("message not found in %s", tc.wantBox)
			}
		})
	}
	t.Run("delete in Trash is permanent", func(t *testing.T) {
		m, ok := findBySubject(t, s, u.addr, "Trash", "to Trash")
		if !ok {
			t.Fatal("nothing in Trash")
		}
		n := len(stored(t, s, u.addr, "Trash"))
		r := u.act("Trash", "delete", []uint32{m.UID}, nil)
		if r.status != http.StatusSeeOther || r.location != "/mail/Trash" {
			t.Fatalf("delete in Trash = %d to %q: %s", r.status, r.location, r.body)
		}
		if got := len(stored(t, s, u.addr, "Trash")); got != n-1 {
			t.Errorf("Trash has %d messages, want %d", got, n-1)
		}
		for _, box := range []string{"INBOX", "Archive", "Junk", "Trash", "Projects"} {
			if _, ok := findBySubject(t, s, u.addr, box, "to Trash"); ok {
				t.Errorf("the deleted message is still in %s", box)
			}
		}
		if p := u.b.get(s.ts.URL + "/mail/Trash"); !strings.Contains(p.body, "Delete forever") {
			t.Error("Trash does not say that delete is permanent there")
		}
	})
}

func TestActRefusals(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	uid := u.appendMsg(t, "INBOX", "bob@example.test", "stays", "x")
	tests := []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"bad uid", url.Values{"box": {"INBOX"}, "op": {"read"}, "uids": {"x1"}}, http.StatusBadRequest, "could not be read"},
		{"move to missing folder", url.Values{"box": {"INBOX"}, "op": {"move"}, "to": {"Gone"}, "uids": {strconv.Itoa(int(uid))}}, http.StatusNotFound, "does not exist"},
		{"missing source folder", url.Values{"box": {"Gone"}, "op": {"read"}, "uids": {"1"}}, http.StatusNotFound, "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := u.b.post(s.ts.URL+"/act", tc.form)
			if r.status != tc.status || !strings.Contains(r.body, tc.want) {
				t.Errorf("POST /act = %d, want %d with %q: %s", r.status, tc.status, tc.want, r.body)
			}
			if !strings.Contains(r.body, `id="retry"`) {
				t.Error("refusal page offers no way back")
			}
		})
	}
	if _, ok := storedByUID(t, s, u.addr, "INBOX", uid); !ok {
		t.Fatal("a refused action moved the message")
	}
	t.Run("no Archive folder", func(t *testing.T) {
		u.imap(t, func(ctx context.Context, ms *mail.Session) error { return ms.DeleteMailbox(ctx, "Archive") })
		r := u.act("INBOX", "archive", []uint32{uid}, nil)
		if r.status != http.StatusConflict || !strings.Contains(r.body, "no Archive folder") {
			t.Errorf("archive without Archive = %d: %s", r.status, r.body)
		}
	})
	t.Run("message gone", func(t *testing.T) {
		r := u.act("INBOX", "move", []uint32{999999}, url.Values{"to": {"Projects"}})
		if r.status >= 500 && r.status != http.StatusBadGateway {
			t.Errorf("moving a missing message = %d: %s", r.status, r.body)
		}
		t.Logf("moving a missing message = %d", r.status)
	})
	t.Run("cross-site POST refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, s.ts.URL+"/act", strings.NewReader(url.Values{"box": {"INBOX"}, "op": {"delete"}, "uids": {strconv.Itoa(int(uid))}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if r := u.b.do(req); r.status != http.StatusForbidden {
			t.Errorf("cross-site POST /act = %d, want 403", r.status)
		}
		if _, ok := storedByUID(t, s, u.addr, "INBOX", uid); !ok {
			t.Error("a cross-site POST deleted the message")
		}
	})
	t.Run("signed out", func(t *testing.T) {
		r := newBrowser(t).post(s.ts.URL+"/act", url.Values{"box": {"INBOX"}, "op": {"delete"}, "uids": {strconv.Itoa(int(uid))}})
		if r.status != http.StatusUnauthorized {
			t.Errorf("POST /act signed out = %d, want 401", r.status)
		}
	})
}

func folderNames(t *testing.T, u *mailUser) []string {
	t.Helper()
	var names []string
	u.imap(t, func(ctx context.Context, ms *mail.Session) error {
		boxes, err := ms.Mailboxes(ctx)
		for _, b := range boxes {
			names = append(names, b.Name)
		}
		return err
	})
	return names
}

func TestFolders(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	post := func(f url.Values) response { return u.b.post(s.ts.URL+"/folders", f) }

	if r := u.b.get(s.ts.URL + "/folders"); r.status != http.StatusOK || !strings.Contains(r.body, "Projects") || !strings.Contains(r.body, `id="create-folder"`) {
		t.Fatalf("GET /folders = %d", r.status)
	}
	r := post(url.Values{"action": {"create"}, "name": {"Clients"}})
	if r.status != http.StatusSeeOther || r.location != "/folders" {
		t.Fatalf("create = %d to %q: %s", r.status, r.location, r.body)
	}
	if p := u.b.get(s.ts.URL + "/folders"); !strings.Contains(p.body, "Folder created.") {
		t.Error("the folder page does not confirm the creation")
	}
	if !slices.Contains(folderNames(t, u), "Clients") {
		t.Fatal("Clients not created")
	}
	if r := post(url.Values{"action": {"create"}, "name": {"Clients/Acme"}}); r.status != http.StatusSeeOther {
		t.Errorf("create nested = %d: %s", r.status, r.body)
	}
	if r := post(url.Values{"action": {"rename"}, "name": {"Receipts"}, "to": {"Invoices"}}); r.status != http.StatusSeeOther {
		t.Fatalf("rename = %d: %s", r.status, r.body)
	}
	names := folderNames(t, u)
	if !slices.Contains(names, "Invoices") || slices.Contains(names, "Receipts") {
		t.Errorf("after rename, folders = %v", names)
	}
	if r := post(url.Values{"action": {"delete"}, "name": {"Invoices"}}); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Tick the box") {
		t.Errorf("delete without confirmation = %d", r.status)
	}
	if r := post(url.Values{"action": {"delete"}, "name": {"Invoices"}, "confirm": {"yes"}}); r.status != http.StatusSeeOther || r.location != "/folders" {
		t.Fatalf("delete = %d: %s", r.status, r.body)
	}
	if slices.Contains(folderNames(t, u), "Invoices") {
		t.Error("Invoices not deleted")
	}

	refusals := []struct {
		name   string
		form   url.Values
		status int
		want   string
	}{
		{"empty name", url.Values{"action": {"create"}, "name": {"  "}}, http.StatusBadRequest, "Enter a folder name"},
		{"wildcard", url.Values{"action": {"create"}, "name": {"a*b"}}, http.StatusBadRequest, "cannot contain"},
		{"empty level", url.Values{"action": {"create"}, "name": {"a//b"}}, http.StatusBadRequest, "Each level"},
		{"inbox", url.Values{"action": {"create"}, "name": {"inbox"}}, http.StatusBadRequest, "reserved"},
		{"exists", url.Values{"action": {"create"}, "name": {"Projects"}}, http.StatusConflict, "already exists"},
		{"rename special", url.Values{"action": {"rename"}, "name": {"Trash"}, "to": {"Bin"}}, http.StatusBadRequest, "special folder"},
		{"delete special", url.Values{"action": {"delete"}, "name": {"Sent"}, "confirm": {"yes"}}, http.StatusBadRequest, "special folder"},
		{"delete inbox", url.Values{"action": {"delete"}, "name": {"INBOX"}, "confirm": {"yes"}}, http.StatusBadRequest, "special folder"},
		{"rename to existing", url.Values{"action": {"rename"}, "name": {"Clients"}, "to": {"Projects"}}, http.StatusConflict, "already exists"},
		{"rename into itself", url.Values{"action": {"rename"}, "name": {"Clients"}, "to": {"Clients/Sub"}}, http.StatusBadRequest, "inside itself"},
		{"rename missing", url.Values{"action": {"rename"}, "name": {"Gone"}, "to": {"Back"}}, http.StatusNotFound, "does not exist"},
		{"no action", url.Values{"name": {"x"}}, http.StatusBadRequest, "Choose whether"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			r := post(tc.form)
			if r.status != tc.status || !strings.Contains(html.UnescapeString(r.body), tc.want) || !strings.Contains(r.body, `id="problem"`) {
				t.Errorf("POST /folders %v = %d, want %d with %q", tc.form, r.status, tc.status, tc.want)
			}
		})
	}
	// The typed name is kept when the form comes back.
	if r := post(url.Values{"action": {"create"}, "name": {"Bad*Name"}}); !strings.Contains(r.body, `value="Bad*Name"`) {
		t.Error("a refused create does not keep the typed name")
	}
	names = folderNames(t, u)
	for _, want := range []string{"INBOX", "Trash", "Sent", "Clients", "Clients/Acme", "Projects"} {
		if !slices.Contains(names, want) {
			t.Errorf("folder %s is gone after the refusals: %v", want, names)
		}
	}
}

// TestEventsAfterDelivery opens the list page's event stream, delivers a message over SMTP, and expects an event.
func TestEventsAfterDelivery(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	page := u.b.get(s.ts.URL + "/mail/INBOX")
	if !strings.Contains(page.body, `data-events="/events/INBOX"`) {
		t.Fatal("list page does not name its event stream")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.ts.URL+"/events/INBOX", nil)
	hc := *u.b.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /events/INBOX = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor := func(want string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", want)
				}
				if l == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q on the stream", want)
			}
		}
	}
	waitFor(": watching")

	bob := signedInAs(t, s, "bob")
	tok, err := s.keeper.Token(ctx, bob.grant)
	if err != nil {
		t.Fatal(err)
	}
	host, port := splitHostPort(t, s.smtp.String())
	err = mail.Send(ctx, mail.Server{Host: host, Port: port, TLS: mail.TLSNone}, mail.Credentials{Address: bob.addr, Token: tok.Access},
		bob.addr, []string{u.addr}, bytes.NewReader(testMessage(bob.addr, u.addr, "live", "x")))
	if err != nil {
		t.Fatal(err)
	}
	waitFor("event: mailbox")
}

func TestEventsNeedSignIn(t *testing.T) {
	s := newStack(t)
	r := newBrowser(t).get(s.ts.URL + "/events/INBOX")
	if r.status != http.StatusNoContent {
		t.Errorf("GET /events/INBOX signed out = %d, want 204 (EventSource stops retrying)", r.status)
	}
	u := signedInAs(t, s, "alice")
	if r := u.b.get(s.ts.URL + "/events/Nope"); r.status != http.StatusNoContent {
		t.Errorf("GET /events/Nope = %d, want 204", r.status)
	}
}

// multipartForm builds a compose form the way a browser sends it: text fields in order, then files.
type formFile struct {
	name, ctype string
	data        []byte
}

func (b *browser) postMultipart(u string, fields [][2]string, files []formFile) response {
	b.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		_ = mw.WriteField(f[0], f[1])
	}
	for _, f := range files {
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name="attach"; filename=%q`, f.name)}
		h["Content-Type"] = []string{f.ctype}
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(f.data)
	}
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, u, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(req)
}

var (
	inputRe    = regexp.MustCompile(`<input type="(?:hidden|text)" (?:id="[^"]*" )?name="([^"]+)" value="([^"]*)"`)
	textareaRe = regexp.MustCompile(`(?s)<textarea id="body" name="body"[^>]*>\n(.*?)</textarea>`)
	keepRe     = regexp.MustCompile(`name="keep" value="([0-9a-f]+)"`)
)

// formFields reads the compose form of a page back, as a browser would submit it.
func formFields(t *testing.T, body string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range inputRe.FindAllStringSubmatch(body, -1) {
		out[m[1]] = html.UnescapeString(m[2])
	}
	if m := textareaRe.FindStringSubmatch(body); m != nil {
		out["body"] = html.UnescapeString(m[1])
	} else {
		t.Fatalf("no compose form in: %s", body)
	}
	return out
}

func fieldList(m map[string]string, keys ...string) [][2]string {
	var out [][2]string
	for _, k := range []string{"to", "cc", "bcc", "subject", "body", "in_reply_to", "references", "orig", "fwd", "fwd_as", "draft"} {
		if v, ok := m[k]; ok {
			out = append(out, [2]string{k, v})
		}
	}
	for _, k := range keys {
		out = append(out, [2]string{"keep", k})
	}
	return out
}

// TestMailServerDown: with the mail server gone, pages say so in words, and the cause stays in the log.
func TestMailServerDown(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	if r := u.b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
		t.Fatalf("inbox = %d", r.status)
	}
	s.mail.Close()
	s.pool.CloseKey(u.grant)
	for _, path := range []string{"/mail/INBOX", "/folders", "/compose"} {
		r := u.b.get(s.ts.URL + path)
		if r.status != http.StatusBadGateway || !strings.Contains(r.body, "cannot be reached") || strings.Contains(r.body, "127.0.0.1") {
			t.Errorf("GET %s with the mail server down = %d: %s", path, r.status, r.body)
		}
	}
	r := u.b.postMultipart(s.ts.URL+"/send", [][2]string{{"to", "bob@example.test"}, {"subject", "x"}, {"body", "typed"}}, nil)
	if r.status != http.StatusBadGateway || formFields(t, r.body)["body"] != "typed" {
		t.Errorf("send with the mail server down = %d", r.status)
	}
}

// Acting with nothing selected, or without an operation, is not a dead end (issue 15 item 6): the same page comes
// back with the reason on it, and the selection kept.
func TestActNothingSelected(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	uid := u.appendMsg(t, "INBOX", "bob@example.test", "stays", "x")
	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"no selection", url.Values{"box": {"INBOX"}, "op": {"archive"}, "return_to": {"/mail/INBOX?before=99999"}}, "Select at least one message"},
		{"unknown op", url.Values{"box": {"INBOX"}, "op": {"explode"}, "uids": {strconv.Itoa(int(uid))}, "return_to": {"/mail/INBOX?before=99999"}}, "Choose what to do"},
		{"move without folder", url.Values{"box": {"INBOX"}, "op": {"move"}, "uids": {strconv.Itoa(int(uid))}, "return_to": {"/mail/INBOX?before=99999"}}, "Choose the folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := u.b.post(s.ts.URL+"/act", tc.form)
			if r.status != http.StatusSeeOther || r.location != "/mail/INBOX?before=99999" {
				t.Fatalf("POST /act = %d to %q, want 303 back to the page", r.status, r.location)
			}
			p := u.b.get(s.ts.URL + r.location)
			if !strings.Contains(p.body, tc.want) || !strings.Contains(p.body, `role="alert" id="notice"`) {
				t.Errorf("the page after = %d without %q as an alert", p.status, tc.want)
			}
		})
	}
	if p := u.b.get(s.ts.URL + "/mail/INBOX"); strings.Contains(p.body, `id="notice"`) {
		t.Error("the notice shows twice")
	}
}

// Every action says what it did, with an Undo that reverses it (issue 15 item 2): a move through the new UIDs the
// server reported (COPYUID), a flag change by the opposite change. The notice lives in the session, never in the URL;
// the browser comes back to the same page, at the row after the moved ones, with a flag change's selection kept.
func TestActUndo(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	a := u.appendMsg(t, "INBOX", "bob@example.test", "undo a", "x")
	b := u.appendMsg(t, "INBOX", "bob@example.test", "undo b", "x")
	c := u.appendMsg(t, "INBOX", "bob@example.test", "undo c", "x")
	page := fmt.Sprintf("%d,%d,%d", c, b, a)

	for _, op := range []struct{ op, to, text, dest string }{
		{"archive", "", "Moved 2 messages to Archive.", "Archive"},
		{"delete", "", "Deleted 2 messages (moved to Trash).", "Trash"},
		{"move", "Projects", "Moved 2 messages to Projects.", "Projects"},
	} {
		t.Run(op.op, func(t *testing.T) {
			r := u.act("INBOX", op.op, []uint32{c, b}, url.Values{"to": {op.to}, "page_uids": {page}, "return_to": {"/mail/INBOX"}})
			if want := "/mail/INBOX#m-" + strconv.Itoa(int(a)); r.status != http.StatusSeeOther || r.location != want {
				t.Fatalf("act %s = %d to %q, want %q", op.op, r.status, r.location, want)
			}
			list := u.b.get(s.ts.URL + "/mail/INBOX")
			if !strings.Contains(list.body, op.text) || !strings.Contains(list.body, `id="undo"`) {
				t.Fatalf("after %s the list lacks %q with Undo", op.op, op.text)
			}
			if _, ok := storedByUID(t, s, u.addr, "INBOX", b); ok {
				t.Fatal("the message was not moved")
			}
			r = u.b.post(s.ts.URL+"/undo", url.Values{"return_to": {"/mail/INBOX"}})
			if r.status != http.StatusSeeOther || r.location != "/mail/INBOX" {
				t.Fatalf("undo = %d to %q", r.status, r.location)
			}
			if _, ok := findBySubject(t, s, u.addr, "INBOX", "undo b"); !ok {
				t.Error("undo did not bring the message back")
			}
			if _, ok := findBySubject(t, s, u.addr, op.dest, "undo b"); ok {
				t.Errorf("after undo the message is still in %s", op.dest)
			}
			list = u.b.get(s.ts.URL + "/mail/INBOX")
			if !strings.Contains(list.body, "Undone: 2 messages back in Inbox.") || strings.Count(list.body, `" checked aria-label`) != 2 {
				t.Errorf("after undo the list does not say so with the two messages selected")
			}
			// The undo is used up.
			if r := u.b.post(s.ts.URL+"/undo", url.Values{"return_to": {"/mail/INBOX"}}); r.status != http.StatusSeeOther {
				t.Errorf("second undo = %d", r.status)
			}
			if p := u.b.get(s.ts.URL + "/mail/INBOX"); !strings.Contains(p.body, "nothing to undo") {
				t.Error("a second undo does not say there is nothing to undo")
			}
			// New UIDs for the next round.
			b = uidOf(t, s, u.addr, "INBOX", "undo b")
			c = uidOf(t, s, u.addr, "INBOX", "undo c")
			page = fmt.Sprintf("%d,%d,%d", c, b, a)
		})
	}
	t.Run("flag", func(t *testing.T) {
		r := u.act("INBOX", "flag", []uint32{a}, url.Values{"page_uids": {page}})
		if r.location != "/mail/INBOX#m-"+strconv.Itoa(int(a)) {
			t.Errorf("flag went to %q", r.location)
		}
		list := u.b.get(s.ts.URL + "/mail/INBOX")
		if !strings.Contains(list.body, "Marked 1 message as flagged.") || !strings.Contains(list.body, fmt.Sprintf(`id="sel-%d" checked`, a)) {
			t.Error("the flag notice or the kept selection is missing")
		}
		u.b.post(s.ts.URL+"/undo", url.Values{"return_to": {"/mail/INBOX"}})
		if m, _ := storedByUID(t, s, u.addr, "INBOX", a); hasFlag(m, `\Flagged`) {
			t.Error("undo did not take the flag off")
		}
	})
	t.Run("delete forever has no undo", func(t *testing.T) {
		u.act("INBOX", "delete", []uint32{a}, nil)
		trashed := uidOf(t, s, u.addr, "Trash", "undo a")
		u.b.get(s.ts.URL + "/mail/INBOX") // takes the notice
		u.act("Trash", "delete", []uint32{trashed}, nil)
		p := u.b.get(s.ts.URL + "/mail/Trash")
		if !strings.Contains(p.body, "Deleted 1 message for good.") || strings.Contains(p.body, `id="undo"`) {
			t.Error("deleting for good says otherwise or offers Undo")
		}
	})
}

// uidOf returns the UID of the message with subject in box, failing the test if there is none.
func uidOf(t *testing.T, s *stack, addr, box, subject string) uint32 {
	t.Helper()
	m, ok := findBySubject(t, s, addr, box, subject)
	if !ok {
		t.Fatalf("no %q in %s's %s", subject, addr, box)
	}
	return m.UID
}
