//go:build browser

package web

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
	"github.com/postern/postern/internal/devstack/idp"
)

// The later steps of the daily walk (dailywalk_browser_test.go): live updates, a conversation, search in every
// folder, Settings, move and delete with undo, sign-out.

// liveUpdate delivers a message while the inbox is shown. With the script, the list's event stream shows the "New
// mail" banner and its reload link lists the message; without it nothing listens (no request for /events/), and
// opening the folder again, the plain way, lists it.
func (w *walker) liveUpdate() {
	t, ctx := w.t, w.ctx
	t.Helper()
	const live = "Build 1942 is green"
	streaming := func() bool {
		requests, _, _ := w.rec.Snapshot()
		for _, u := range requests {
			if strings.Contains(u, "/events/INBOX") {
				return true
			}
		}
		return false
	}
	if w.v.script {
		for deadline := time.Now().Add(10 * time.Second); !streaming(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the inbox opened no event stream (/events/INBOX)")
			}
		}
	}
	// The server needs a moment from the stream's request to its IDLE watch.
	time.Sleep(500 * time.Millisecond)
	msg := strings.ReplaceAll(fmt.Sprintf("From: Build Bot <ci@example.test>\nTo: alice@example.test\nDate: %s\nSubject: %s\nMessage-ID: <build-%d@example.test>\n\nAll checks passed.\n",
		time.Now().Format(time.RFC1123Z), live, time.Now().UnixNano()), "\n", "\r\n")
	if err := w.s.mail.AppendBulk("alice@example.test", "INBOX", 1, func(int) []byte { return []byte(msg) }); err != nil {
		t.Fatal(err)
	}
	if w.v.script {
		browsertest.WaitTrue(t, ctx, "New mail banner", `!document.getElementById("live").hidden && document.title.startsWith("• ")`)
		if len(w.rowsAbout(live)) != 0 {
			t.Error("the list changed under the user before they asked to reload")
		}
		w.press("reload", "#live a")
	} else {
		time.Sleep(time.Second)
		if streaming() {
			t.Error("without JavaScript the inbox opened an event stream")
		}
		w.folder("INBOX")
	}
	browsertest.WaitTrue(t, ctx, "new mail listed", `location.pathname === "/mail/INBOX" && document.readyState === "complete" && !!document.querySelector("table.messages")`)
	if got := w.rowsAbout(live); len(got) != 1 || w.str(`document.querySelector("table.messages tbody tr[data-uid]").dataset.uid`) != got[0] {
		t.Errorf("the new message is not the first row (rows about it: %v)", got)
	}
}

// readConversation opens the seeded twelve-message thread from the inbox: one row with a count, its view shows the
// messages oldest first with one open, a folded one unfolds (no script needed: <details>), and j/k (or the Older and
// Newer links) walk to the next older conversation (a single message: its message page) and back.
func (w *walker) readConversation() {
	t, ctx := w.t, w.ctx
	t.Helper()
	w.folder("INBOX")
	rows := w.rowsAbout(migrationThread)
	if len(rows) != 1 {
		t.Fatalf("rows about %q: %v, want one (a conversation)", migrationThread, rows)
	}
	row := `tr[data-uid="` + rows[0] + `"]`
	if got := w.str(`document.querySelector('` + row + ` .count').textContent`); !strings.Contains(got, "12") {
		t.Errorf("conversation badge = %q, want 12", got)
	}
	w.press("open the conversation", row+` a.open`)
	browsertest.WaitTrue(t, ctx, "conversation shown", `location.pathname.startsWith("/conv/INBOX/") && document.querySelectorAll("details.conv-msg").length === 12`)
	if n := w.num(`document.querySelectorAll("details.conv-msg[open]").length`); n != 1 {
		t.Errorf("%d messages open, want 1", n)
	}
	w.fits("the conversation")
	w.press("unfold the first", `details.conv-msg summary`)
	browsertest.WaitTrue(t, ctx, "the oldest unfolds", `document.querySelector("details.conv-msg").open && document.querySelector("details.conv-msg").innerText.includes("here is the plan")`)
	here := w.str(`location.pathname`)
	if w.v.keys() {
		w.key("j")
	} else {
		w.press("Older", "#nav-older")
	}
	// The older conversation is a single message, which shows as the message page (as its list row links it).
	browsertest.WaitTrue(t, ctx, "older conversation", `/^\/(conv|msg)\/INBOX\//.test(location.pathname) && location.pathname !== `+strconv.Quote(here)+` && document.readyState === "complete"`)
	if w.is(`document.querySelector("h1.boxname").textContent.includes(` + strconv.Quote(migrationThread) + `)`) {
		t.Error("Older stayed in the same conversation")
	}
	if w.v.keys() {
		w.key("k")
	} else {
		w.press("Newer", "#nav-newer")
	}
	browsertest.WaitTrue(t, ctx, "back to the thread", `location.pathname.startsWith("/conv/INBOX/") && document.readyState === "complete" && document.getElementById("conv-subject").textContent.includes(`+strconv.Quote(migrationThread)+`)`)
}

// searchAllFolders searches every folder from the inbox's search form (/ focuses it with the script) for a word
// that only a message in Archive has: the hit names its folder and opens from there.
func (w *walker) searchAllFolders() {
	t, ctx := w.t, w.ctx
	t.Helper()
	const hit = "Your domain has been renewed"
	w.folder("INBOX")
	if len(w.rowsAbout(hit)) != 0 {
		t.Fatalf("%q is in the inbox; the search must find it elsewhere", hit)
	}
	if w.v.keys() {
		w.key("/")
		if !w.is(`document.activeElement === document.getElementById("q")`) {
			t.Error("/ does not focus the search field")
		}
	} else {
		if !w.v.script {
			w.key("/")
			if w.is(`document.activeElement === document.getElementById("q")`) {
				t.Error("without JavaScript / focused the search field")
			}
		}
		w.press("focus the search field", "#q")
	}
	browsertest.Do(t, ctx, "search every folder", chromedp.SendKeys(chromedp.ID("q"), "renewed"), chromedp.SetValue(chromedp.ID("scope"), "all"))
	w.press("search", `form.search button[type=submit]`)
	browsertest.WaitTrue(t, ctx, "results", `location.pathname === "/mail/INBOX" && new URLSearchParams(location.search).get("scope") === "all" && document.readyState === "complete" && !!document.querySelector("table.messages")`)
	if q := w.str(`new URLSearchParams(location.search).get("q")`); q != "renewed" {
		t.Errorf("search q = %q", q)
	}
	if !w.is(`document.getElementById("scope").value === "all"`) {
		t.Error("the results page does not keep All folders chosen")
	}
	uids := w.rowsAbout(hit)
	if len(uids) != 1 {
		t.Fatalf("hits for %q: %v, want one", hit, uids)
	}
	w.fits("the search results")
	row := `tr[data-uid="` + uids[0] + `"]`
	if tag := w.str(`(document.querySelector('` + row + ` .folder-tag') || {}).textContent || ""`); tag != "Archive" {
		t.Errorf("the hit's folder tag = %q, want Archive", tag)
	}
	w.press("open the hit", row+` a.open`)
	browsertest.WaitTrue(t, ctx, "hit opened", `location.pathname.startsWith("/msg/Archive/") && !!document.getElementById("msg-subject")`)
	if got := w.str(`document.getElementById("msg-subject").textContent`); got != hit {
		t.Errorf("the hit opens %q", got)
	}
}

// changeSettings turns conversations off and chooses 25 messages a page on /settings, then sees the inbox follow:
// the thread's messages are rows of their own, and the list pages at 25.
func (w *walker) changeSettings() {
	t, ctx := w.t, w.ctx
	t.Helper()
	w.folder("INBOX")
	before := w.num(`document.querySelectorAll("table.messages tbody tr[data-uid]").length`)
	if before <= 25 || w.is(`!!document.getElementById("older")`) {
		t.Fatalf("the inbox shows %d rows on one page before; the test needs more than 25 and no second page", before)
	}
	w.press("Settings", "#nav-settings")
	browsertest.WaitTrue(t, ctx, "settings", `location.pathname === "/settings" && document.readyState === "complete" && !!document.getElementById("settings-form")`)
	w.fits("Settings")
	if !w.is(`document.getElementById("conversations").checked`) {
		t.Fatal("conversations are off before the change")
	}
	w.press("conversations off", "#conversations")
	if w.is(`document.getElementById("conversations").checked`) {
		t.Fatal("the conversations checkbox is still checked")
	}
	browsertest.Do(t, ctx, "25 a page", chromedp.SetValue(chromedp.ID("page_size"), "25"))
	w.press("save", "#save-settings")
	browsertest.WaitTrue(t, ctx, "saved", `location.pathname === "/settings" && document.readyState === "complete" && !!document.getElementById("notice")`)
	if got := w.notice(); got != "Your settings are saved." {
		t.Errorf("notice = %q", got)
	}
	if !w.is(`!document.getElementById("conversations").checked && document.getElementById("page_size").value === "25"`) {
		t.Error("the saved form does not show the new settings")
	}
	// Settings has no folder list: back to the mail by the header's Postern link.
	w.press("Postern", "header a.brand")
	browsertest.WaitTrue(t, ctx, "inbox", `location.pathname === "/mail/INBOX" && document.readyState === "complete" && !!document.querySelector("table.messages")`)
	if n := w.num(`document.querySelectorAll("table.messages tbody tr[data-uid]").length`); n != 25 {
		t.Errorf("the inbox shows %d rows, want 25", n)
	}
	if !w.is(`!!document.getElementById("older")`) {
		t.Error("no link to the older page")
	}
	if n := w.num(`document.querySelectorAll("table.messages tbody .count").length`); n != 0 {
		t.Errorf("%d rows still show a conversation count", n)
	}
	if rows := w.rowsAbout(migrationThread); len(rows) < 2 {
		t.Errorf("rows about %q: %v, want the thread's messages one by one", migrationThread, rows)
	}
}

// moveAndDelete moves the lunch message to Projects with the toolbar (Undo brings it back, selected), moves it again,
// deletes another message (to Trash) and undoes that with z, or the Undo button.
func (w *walker) moveAndDelete(subject string) {
	t, ctx, s := w.t, w.ctx, w.s
	t.Helper()
	const alice = "alice@example.test"
	orig := rowUID(t, ctx, subject)
	if orig == 0 {
		t.Fatalf("no row %q in the inbox", subject)
	}
	sel := "sel-" + strconv.Itoa(int(orig))
	w.press("select "+subject, "#"+sel)
	browsertest.Do(t, ctx, "choose Projects", chromedp.SetValue(chromedp.ID("move-to"), "Projects"))
	w.press("move", `#act button[name=op][value=move]`)
	browsertest.WaitTrue(t, ctx, "moved", `location.pathname === "/mail/INBOX" && document.readyState === "complete" && !!document.getElementById("notice") && !document.getElementById("`+sel+`")`)
	if got := w.notice(); got != "Moved 1 message to Projects." {
		t.Errorf("notice after the move = %q", got)
	}
	if _, ok := findBySubject(t, s, alice, "Projects", subject); !ok {
		t.Error("the moved message is not in Projects")
	}
	if _, ok := storedByUID(t, s, alice, "INBOX", orig); ok {
		t.Error("the moved message is still in INBOX")
	}
	w.press("undo the move", "#undo")
	browsertest.WaitTrue(t, ctx, "move undone", `document.readyState === "complete" && !!document.getElementById("notice-text") && document.getElementById("notice-text").textContent.startsWith("Undone")`)
	orig = rowUID(t, ctx, subject)
	if orig == 0 {
		t.Fatal("after Undo the message is not back in the inbox")
	}
	sel = "sel-" + strconv.Itoa(int(orig))
	if !w.is(`document.getElementById("` + sel + `").checked`) {
		t.Error("after Undo the restored message is not selected")
	}
	// Move it again, for good this time.
	browsertest.Do(t, ctx, "choose Projects again", chromedp.SetValue(chromedp.ID("move-to"), "Projects"))
	w.press("move again", `#act button[name=op][value=move]`)
	browsertest.WaitTrue(t, ctx, "moved again", `document.readyState === "complete" && !!document.getElementById("notice") && !document.getElementById("`+sel+`")`)

	// Delete another one: it goes to Trash.
	const doomed = "Quick question about the IMAP pool"
	del := rowUID(t, ctx, doomed)
	if del == 0 {
		t.Fatalf("no row %q in the inbox", doomed)
	}
	sel = "sel-" + strconv.Itoa(int(del))
	w.press("select "+doomed, "#"+sel)
	w.press("delete", `#act button[name=op][value=delete]`)
	browsertest.WaitTrue(t, ctx, "deleted", `location.pathname === "/mail/INBOX" && document.readyState === "complete" && !!document.getElementById("notice") && !document.getElementById("`+sel+`")`)
	if _, ok := findBySubject(t, s, alice, "Trash", doomed); !ok {
		t.Error("the deleted message is not in Trash")
	}
	if _, ok := storedByUID(t, s, alice, "INBOX", del); ok {
		t.Error("the deleted message is still in INBOX")
	}
	if w.v.keys() {
		w.key("z")
	} else {
		w.press("undo the delete", "#undo")
	}
	browsertest.WaitTrue(t, ctx, "delete undone", `document.readyState === "complete" && !!document.getElementById("notice-text") && document.getElementById("notice-text").textContent.startsWith("Undone")`)
	if _, ok := findBySubject(t, s, alice, "INBOX", doomed); !ok {
		t.Error("Undo did not bring the deleted message back")
	}
	if _, ok := findBySubject(t, s, alice, "Trash", doomed); ok {
		t.Error("after Undo the message is still in Trash")
	}
}

// signOut uses the header's button: the signed-out page, the grant gone at the IdP too, and the session gone.
func (w *walker) signOut() {
	t, ctx, s := w.t, w.ctx, w.s
	t.Helper()
	g := s.grantOf(t, "alice")
	if !s.idp.Active(g.RefreshToken) {
		t.Fatal("the refresh token is inactive before sign-out")
	}
	w.press("sign out", `header form[action="/logout"] button`)
	browsertest.WaitTrue(t, ctx, "signed out", `location.pathname === "/signed-out" && !!document.querySelector("main h1")`)
	if h := w.str(`document.querySelector("main h1").textContent`); h != "You are signed out" {
		t.Errorf("signed-out heading = %q", h)
	}
	if w.is(`!!document.querySelector('form[action="/logout"]')`) {
		t.Error("the signed-out page still offers to sign out")
	}
	if s.idp.Active(g.RefreshToken) {
		t.Error("the refresh token is still active at the IdP after sign-out")
	}
	if s.idp.Active(g.AccessToken) {
		t.Error("the access token is still active at the IdP after sign-out")
	}
	if ids, err := s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject("alice")); err != nil || len(ids) != 0 {
		t.Errorf("grants of alice after sign-out = %v, %v; want none", ids, err)
	}
	browsertest.Do(t, ctx, "inbox after sign-out", chromedp.Navigate(w.app+"/mail/INBOX"))
	browsertest.WaitTrue(t, ctx, "at the IdP", `location.origin === `+strconv.Quote(s.idp.Issuer()))
}
