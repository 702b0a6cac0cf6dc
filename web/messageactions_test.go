package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestMessagePageActionsWorkWithoutJavaScript: the page of an open message offers reply, reply-all, forward and a
// plain form for archive/junk/unread/delete, so the core actions need no script.
func TestMessagePageActionsWorkWithoutJavaScript(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	uid := u.appendMsg(t, "INBOX", "bob@example.test", "Lunch on Friday?", "Shall we?")
	page := u.b.get(fmt.Sprintf("%s/msg/INBOX/%d", s.ts.URL, uid))
	if page.status != http.StatusOK {
		t.Fatalf("message page = %d", page.status)
	}
	ref := fmt.Sprintf("INBOX/%d", uid)
	for _, want := range []string{
		`href="/compose?reply=` + url.QueryEscape(ref) + `"`,
		`href="/compose?replyall=` + url.QueryEscape(ref) + `"`,
		`href="/compose?forward=` + url.QueryEscape(ref) + `"`,
		`action="/act"`, `name="op" value="delete"`,
	} {
		// html/template percent-encodes the query value with lower-case hex.
		if !strings.Contains(strings.ToLower(page.body), strings.ToLower(want)) {
			t.Errorf("message page lacks %s", want)
		}
	}
	reply := u.b.get(s.ts.URL + "/compose?reply=" + url.QueryEscape(ref))
	if reply.status != http.StatusOK || !strings.Contains(reply.body, "Re: Lunch on Friday?") {
		t.Errorf("reply link = %d; the editor is not prefilled", reply.status)
	}

	// The delete button of that form: back to the folder, and the message is in Trash.
	r := u.b.post(s.ts.URL+"/act", url.Values{"box": {"INBOX"}, "uids": {fmt.Sprint(uid)}, "op": {"delete"}, "return_to": {"/mail/INBOX"}})
	if r.status != http.StatusSeeOther || r.location != "/mail/INBOX" {
		t.Fatalf("delete from the message page = %d to %q", r.status, r.location)
	}
	if _, ok := findBySubject(t, s, u.addr, "Trash", "Lunch on Friday?"); !ok {
		t.Error("the deleted message is not in Trash")
	}
}
