package web

import (
	"context"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/postern/postern/mail"
)

var (
	convRow   = regexp.MustCompile(`(?s)<tr [^>]*data-uid="(\d+)"[^>]*>.*?</tr>`)
	convLink  = regexp.MustCompile(`href="(/conv/[^"#]+)(?:#c-\d+)?" class="open"`)
	selValue  = regexp.MustCompile(`name="uids" value="([^"]+)"`)
	detailsRe = regexp.MustCompile(`<details class="conv-msg" data-uid="\d+"( open)?>`)
)

// rowsAbout returns the list rows whose text mentions s.
func rowsAbout(body, s string) []string {
	var out []string
	for _, m := range convRow.FindAllString(body, -1) {
		if strings.Contains(m, s) {
			out = append(out, m)
		}
	}
	return out
}

// TestInboxConversations: the seeded twelve-message thread is one row (count, everyone who wrote, a checkbox that
// selects all twelve, a link to the conversation view), and the switch turns grouping off.
func TestInboxConversations(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	r := u.b.get(s.ts.URL + "/mail/INBOX")
	if r.status != http.StatusOK {
		t.Fatalf("GET /mail/INBOX = %d", r.status)
	}
	rows := rowsAbout(r.body, "Migration plan for the mail cluster")
	if len(rows) != 1 {
		t.Fatalf("%d rows about the migration plan, want 1 conversation", len(rows))
	}
	row := rows[0]
	if !strings.Contains(row, `<span class="count"`) || !strings.Contains(row, ">12<") {
		t.Errorf("conversation row has no count of 12:\n%s", row)
	}
	if !convLink.MatchString(row) {
		t.Errorf("conversation row does not open the conversation view:\n%s", row)
	}
	if m := selValue.FindStringSubmatch(row); m == nil || len(strings.Split(m[1], ",")) != 12 {
		t.Errorf("conversation checkbox selects %v, want the 12 UIDs", m)
	}
	for _, who := range []string{"Carol", "Dave"} {
		if !strings.Contains(row, who) {
			t.Errorf("conversation row does not name %s among the participants", who)
		}
	}
	// The newest message's snippet, as one line.
	if !strings.Contains(row, `<span class="snippet"><bdi>Same here. Thanks everyone, this went smoothly. Dave</bdi></span>`) {
		t.Errorf("conversation row has not the newest message's snippet:\n%s", row)
	}

	s.web.plainList = true
	r = u.b.get(s.ts.URL + "/mail/INBOX")
	if rows := rowsAbout(r.body, "Migration plan for the mail cluster"); len(rows) != 12 {
		t.Errorf("conversations off: %d rows about the migration plan, want 12", len(rows))
	}
	if strings.Contains(r.body, "/conv/") {
		t.Error("conversations off: the list still links conversation views")
	}
}

// TestConversationView: oldest first, the first unread open and the rest folded, all marked read, with links to
// the neighbouring conversations; the reader has the same links.
func TestConversationView(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	list := u.b.get(s.ts.URL + "/mail/INBOX")
	rows := rowsAbout(list.body, "Migration plan")
	if len(rows) != 1 {
		t.Fatalf("%d migration rows", len(rows))
	}
	link := html.UnescapeString(convLink.FindStringSubmatch(rows[0])[1])
	r := u.b.get(s.ts.URL + link)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s = %d: %s", link, r.status, r.body)
	}
	ds := detailsRe.FindAllStringSubmatch(r.body, -1)
	if len(ds) != 12 {
		t.Fatalf("conversation view has %d messages, want 12", len(ds))
	}
	open := 0
	for _, d := range ds {
		if d[1] != "" {
			open++
		}
	}
	if open != 1 {
		t.Errorf("%d messages open, want 1", open)
	}
	// The row's link scrolls to the message the view opens: the oldest unread one.
	frag := regexp.MustCompile(`href="/conv/[^"#]+#(c-\d+)" class="open"`).FindStringSubmatch(rows[0])
	if frag == nil || !regexp.MustCompile(`<li id="`+frag[1]+`">\s*<details class="conv-msg" data-uid="\d+" open>`).MatchString(r.body) {
		t.Errorf("the row's link (%v) does not point at the open message", frag)
	}
	first := strings.Index(r.body, "here is the plan for moving the mail cluster")
	last := strings.Index(r.body, "Same here. Thanks everyone")
	if first < 0 || last < 0 || first > last {
		t.Errorf("messages not oldest first (first at %d, last at %d)", first, last)
	}
	if !strings.Contains(r.body, `id="nav-older"`) && !strings.Contains(r.body, `id="nav-newer"`) {
		t.Error("conversation view has no link to another conversation")
	}
	for _, m := range stored(t, s, u.addr, "INBOX") {
		if strings.Contains(header(t, m.Raw).Get("Subject"), "Migration plan") && !hasFlag(m, `\Seen`) {
			t.Errorf("UID %d of the conversation is still unread after viewing it", m.UID)
		}
	}
	again := u.b.get(s.ts.URL + "/mail/INBOX")
	if row := rowsAbout(again.body, "Migration plan"); len(row) != 1 || strings.Contains(row[0], `class="unread`) {
		t.Error("the conversation is still shown unread")
	}

	// The reader of a single message links its neighbours too.
	uid := u.appendMsg(t, "INBOX", "Zed <zed@example.test>", "Standalone note", "Just one.")
	m := u.b.get(s.ts.URL + messagePath("INBOX", uid))
	if m.status != http.StatusOK || !strings.Contains(m.body, `id="nav-older"`) {
		t.Errorf("reader of the newest message: %d, older link %v", m.status, strings.Contains(m.body, `id="nav-older"`))
	}
	// The links are resolved when followed (handleNeighbour), so that the page stays at one round trip: from the
	// newest message, "Newer" leads back to the folder and "Older" to the message before it.
	if r := u.b.get(s.ts.URL + messagePath("INBOX", uid) + "/newer"); r.status != http.StatusSeeOther || r.location != mailboxURL("INBOX") {
		t.Errorf("Newer from the newest message: %d to %q, want 303 to the folder", r.status, r.location)
	}
	r = u.b.get(s.ts.URL + messagePath("INBOX", uid) + "/older")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/conv/INBOX/") || r.location == conversationPath("INBOX", uid) {
		t.Errorf("Older from the newest message: %d to %q, want 303 to the conversation before it", r.status, r.location)
	}
	// A conversation of one is shown as the message it is, as its list row links it.
	if r := u.b.get(s.ts.URL + conversationPath("INBOX", uid)); r.status != http.StatusSeeOther || r.location != messagePath("INBOX", uid) {
		t.Errorf("conversation of one message: %d to %q, want 303 to %s", r.status, r.location, messagePath("INBOX", uid))
	}
}

// TestSnippetsAreInert: a snippet is text, whatever the message holds: markup escaped, bidi overrides and control
// characters gone, one line.
func TestSnippetsAreInert(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	u.appendMsg(t, "INBOX", "Mallory <m@example.test>", "Harmless", "<script>alert(1)</script> pay \u202Eton\u202C now\x1b[2J\nsecond line")
	r := u.b.get(s.ts.URL + "/mail/INBOX")
	rows := rowsAbout(r.body, "Harmless")
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	want := `<span class="snippet"><bdi>&lt;script&gt;alert(1)&lt;/script&gt; pay ton now [2J second line</bdi></span>`
	if !strings.Contains(rows[0], want) {
		t.Errorf("snippet row:\n%s\nwant it to contain\n%s", rows[0], want)
	}
	if strings.ContainsAny(rows[0], "\u202E\u202C\x1b") {
		t.Error("a bidi override or control character reached the page")
	}
}

// TestSearchAllFolders: the scope choice searches every folder; rows name their folder and open the message in it.
// The form has the choice whether or not a search is shown, so the page does not shift.
func TestSearchAllFolders(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	var uid uint32
	u.imap(t, func(ctx context.Context, ms *mail.Session) error {
		if err := ms.Append(ctx, "Projects", nil, testMessage("Pat <pat@example.test>", u.addr, "Needle in the projects", "findme-xyzzy")); err != nil {
			return err
		}
		p, err := ms.List(ctx, "Projects", 0, 1)
		if err != nil {
			return err
		}
		uid = p.Summaries[0].UID
		return nil
	})
	plain := u.b.get(s.ts.URL + "/mail/INBOX")
	if !strings.Contains(plain.body, `<select id="scope" name="scope">`) {
		t.Error("the folder page has no search scope choice")
	}
	here := u.b.get(s.ts.URL + "/mail/INBOX?q=findme-xyzzy")
	if n := len(pageUIDs(here.body)); n != 0 {
		t.Errorf("search of INBOX found %d rows, want 0", n)
	}
	all := u.b.get(s.ts.URL + "/mail/INBOX?scope=all&q=findme-xyzzy")
	if all.status != http.StatusOK {
		t.Fatalf("search of all folders = %d: %s", all.status, all.body)
	}
	rows := rowsAbout(all.body, "Needle in the projects")
	if len(rows) != 1 {
		t.Fatalf("search of all folders: %d rows, want 1", len(rows))
	}
	if !strings.Contains(rows[0], `href="`+messagePath("Projects", uid)+`"`) || !strings.Contains(rows[0], `<bdi>Projects</bdi>`) {
		t.Errorf("row does not open the message in Projects or name the folder:\n%s", rows[0])
	}
	if strings.Contains(rows[0], `name="uids"`) {
		t.Error("rows of several folders can be selected for /act, which works on one folder")
	}
	if !strings.Contains(all.body, `<option value="all" selected>`) {
		t.Error("the scope choice is not kept on the results page")
	}
}

// TestConversationHTMLIsFramed: an HTML message in a conversation is shown as the reader shows it, in the sandboxed
// frame served by its own route, never inline in the page.
func TestConversationHTMLIsFramed(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	first := u.appendMsg(t, "INBOX", "Eve <eve@example.test>", "Framed thread", "plain start")
	reply := strings.ReplaceAll("From: Eve <eve@example.test>\nTo: alice@example.test\nSubject: Re: Framed thread\n"+
		"Date: Mon, 7 Dec 2026 10:00:00 +0000\nMessage-ID: <framed-reply@example.test>\nIn-Reply-To: <unknown@example.test>\n"+
		"MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n<p>Hello<script>alert(1)</script><img src=x onerror=alert(2)></p>\n", "\n", "\r\n")
	u.imap(t, func(ctx context.Context, ms *mail.Session) error { return ms.Append(ctx, "INBOX", nil, []byte(reply)) })
	r := u.b.get(s.ts.URL + conversationPath("INBOX", first))
	if r.status != http.StatusOK {
		t.Fatalf("conversation = %d", r.status)
	}
	if n := len(detailsRe.FindAllString(r.body, -1)); n != 2 {
		t.Fatalf("conversation has %d messages, want 2 (grouped by base subject)", n)
	}
	frame := regexp.MustCompile(`<iframe class="msg-html" title="[^"]*" src="(/msg/INBOX/\d+/html)" sandbox="allow-popups allow-popups-to-escape-sandbox"`)
	if !frame.MatchString(r.body) {
		t.Error("the HTML message is not in the sandboxed frame")
	}
	if strings.Contains(r.body, "<script>alert") || strings.Contains(r.body, "onerror=") {
		t.Error("the message's HTML reached the page")
	}
}
