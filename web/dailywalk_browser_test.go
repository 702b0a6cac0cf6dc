//go:build browser

package web

// The daily path in a real headless Chromium, against the demo's components (the dev IdP and the dev mail server of
// stack_test.go), three ways: on a desktop in light mode with the keyboard shortcuts, on a phone in dark mode with
// touch, and on a desktop with JavaScript off. Each walk signs in through the IdP's pages, opens a folder, reads an
// HTML message and walks to the older one and back, replies with an attachment, sees new mail arrive, reads a
// conversation, searches every folder, changes Settings and sees the list follow, moves and deletes messages (and
// undoes), and signs out. Without JavaScript the same steps go through the plain links and forms (the house rule:
// every core action works as a plain form or link), and the walk checks that what only the script provides (the
// shortcuts, the live "New mail" banner, the picked-files list) is absent rather than half there.
//
//	go test -tags browser -run TestBrowserDailyPath -count=1 -v ./web/

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/postern/postern/internal/browsertest"
	"github.com/postern/postern/internal/devstack/idp"
)

// dailyVariant is one way of using Postern every day.
type dailyVariant struct {
	name          string
	width, height int64
	// phone: a mobile viewport with touch; the walk taps instead of clicking and uses no keyboard shortcuts.
	phone  bool
	scheme string // prefers-color-scheme
	// script: app.js runs (keyboard shortcuts, live updates); off, the walk uses the plain forms and links only.
	script bool
}

var dailyVariants = []dailyVariant{
	{name: "desktop-light", width: 1280, height: 800, scheme: "light", script: true},
	{name: "phone-dark", width: 390, height: 844, phone: true, scheme: "dark", script: true},
	{name: "desktop-noscript", width: 1280, height: 800, scheme: "light"},
}

// keys says the walk uses the keyboard shortcuts where it can: on a desktop with the script.
func (v dailyVariant) keys() bool { return v.script && !v.phone }

func TestBrowserDailyPath(t *testing.T) {
	for _, v := range dailyVariants {
		t.Run(v.name, func(t *testing.T) { dailyWalk(t, v) })
	}
}

// walker carries one walk's browser and variant.
type walker struct {
	t   *testing.T
	ctx context.Context
	rec *browsertest.Recorder
	s   *stack
	v   dailyVariant
	app string
}

// press clicks the element css selects, or taps it on a phone.
func (w *walker) press(what, css string) {
	w.t.Helper()
	if w.v.phone {
		browsertest.Do(w.t, w.ctx, what, chromedp.Tap(chromedp.CSS(css)))
		return
	}
	browsertest.Do(w.t, w.ctx, what, chromedp.Click(chromedp.CSS(css)))
}

// key presses a keyboard shortcut. A printable key goes as one keyDown event that carries its text, as a key press
// reaches the page: chromedp.KeyEvent sends the text in a separate char event, which Chromium delivers even when the
// page cancelled the keydown (so "/" would both focus the search field and type itself into it).
func (w *walker) key(k string) {
	w.t.Helper()
	if len(k) != 1 || k[0] < ' ' || k[0] > '~' {
		browsertest.Do(w.t, w.ctx, "press "+k, chromedp.KeyEvent(k))
		return
	}
	browsertest.Do(w.t, w.ctx, "press "+k, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeKeyDown, input.DispatchKeyEventTypeKeyUp} {
			p := input.DispatchKeyEventParams{Type: typ, Key: k}
			if typ == input.DispatchKeyEventTypeKeyDown {
				p.Text, p.UnmodifiedText = k, k
			}
			if _, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, p); err != nil {
				return err
			}
		}
		return nil
	}))
}

// folder opens box from the folder list and waits for its list.
func (w *walker) folder(box string) {
	w.t.Helper()
	w.press("open "+box, `nav.folders a[href="/mail/`+box+`"]`)
	browsertest.WaitTrue(w.t, w.ctx, box+" listed", `location.pathname === "/mail/`+box+`" && document.readyState === "complete" && !!document.querySelector("table.messages")`)
}

func (w *walker) str(expr string) string {
	w.t.Helper()
	return browsertest.Eval[string](w.t, w.ctx, expr)
}

func (w *walker) is(expr string) bool {
	w.t.Helper()
	return browsertest.Eval[bool](w.t, w.ctx, expr)
}

func (w *walker) num(expr string) int {
	w.t.Helper()
	return browsertest.Eval[int](w.t, w.ctx, expr)
}

// fits checks that the page is no wider than the screen (no sideways scrolling), naming what sticks out.
func (w *walker) fits(page string) {
	w.t.Helper()
	if over := browsertest.Eval[[]string](w.t, w.ctx, overflowJS); len(over) > 0 {
		w.t.Errorf("%s is wider than the %d px screen: %s", page, w.v.width, strings.Join(over, ", "))
	}
}

// notice returns the text of the page's notice, "" if none.
func (w *walker) notice() string {
	w.t.Helper()
	return w.str(`(document.getElementById("notice-text") || {}).textContent || ""`)
}

// rowsAbout returns the UIDs of the list rows whose subject contains subject.
func (w *walker) rowsAbout(subject string) []string {
	w.t.Helper()
	return browsertest.Eval[[]string](w.t, w.ctx, `[...document.querySelectorAll("table.messages tbody tr[data-uid]")]
		.filter(tr => tr.querySelector(".subject").textContent.includes(`+strconv.Quote(subject)+`)).map(tr => tr.dataset.uid)`)
}

func dailyWalk(t *testing.T, v dailyVariant) {
	s := newStack(t, withDemo())
	const alice, bob = "alice@example.test", "bob@example.test"
	const subject = "Team lunch on Friday"
	raw := strings.ReplaceAll(fmt.Sprintf(lunchHTML, time.Now().Format(time.RFC1123Z), time.Now().UnixNano()), "\n", "\r\n")
	if err := s.mail.AppendBulk(alice, "INBOX", 1, func(int) []byte { return []byte(raw) }); err != nil {
		t.Fatal(err)
	}
	attachment := filepath.Join(t.TempDir(), "menu.txt")
	if err := os.WriteFile(attachment, []byte("soup of the day"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, rec := browsertest.Start(t)
	w := &walker{t: t, ctx: ctx, rec: rec, s: s, v: v, app: s.ts.URL}
	browsertest.Do(t, ctx, "emulate "+v.name, browsertest.Emulate(v.width, v.height, v.phone, v.scheme), browsertest.DisableScript(!v.script))
	signInBrowser(t, ctx, s, "alice")

	// The variant is in effect: the screen, the scheme, and the script on or off (app.js reveals the shortcut hint,
	// which the markup hides; a phone's style sheet then hides it again).
	if got := browsertest.Eval[float64](t, ctx, `innerWidth`); got != float64(v.width) {
		t.Errorf("innerWidth = %v, want %d", got, v.width)
	}
	if !w.is(`matchMedia("(prefers-color-scheme: ` + v.scheme + `)").matches`) {
		t.Errorf("prefers-color-scheme: %s is not in effect", v.scheme)
	}
	if ran := !w.is(`document.querySelector(".keys-hint").hidden`); ran != v.script {
		t.Fatalf("app.js ran = %v, want %v", ran, v.script)
	}
	w.fits("the inbox")

	// Open another folder from the folder list, then come back to the inbox.
	w.folder("Projects")
	if got := w.str(`document.querySelector("h1.boxname").textContent`); !strings.Contains(got, "Projects") {
		t.Errorf("Projects page heading = %q", got)
	}
	if got := w.str(`document.querySelector("nav.folders a[aria-current=page]").getAttribute("href")`); got != "/mail/Projects" {
		t.Errorf("current folder link = %q, want /mail/Projects", got)
	}
	w.folder("INBOX")
	orig := rowUID(t, ctx, subject)
	if first := w.str(`document.querySelector("table.messages tbody tr[data-uid]").dataset.uid`); orig == 0 || first != strconv.Itoa(int(orig)) {
		t.Fatalf("the new message (uid %d) is not the first row (uid %s)", orig, first)
	}
	msgPath := messagePath("INBOX", orig)
	w.openFirst(orig, msgPath)
	w.readLunch(orig, msgPath)
	w.reply(orig, subject, attachment)
	w.replyToStranger()
	w.liveUpdate()
	w.readConversation()
	w.searchAllFolders()
	w.changeSettings()
	w.moveAndDelete(subject)
	w.signOut()

	requests, proxied, dialogs := rec.Snapshot()
	if f := browsertest.Foreign(requests); len(f) > 0 || len(proxied) > 0 {
		t.Errorf("requests left 127.0.0.1: %v, proxy: %v", f, proxied)
	}
	if len(dialogs) > 0 {
		t.Errorf("dialogs opened: %q", dialogs)
	}
	if ex := rec.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}

// openFirst opens the inbox's first message (orig): with the keyboard (? shows the help, Escape closes it; j j k
// selects the first row, Enter opens it), else with its link. Without the script the keys do nothing.
func (w *walker) openFirst(orig uint32, msgPath string) {
	t, ctx := w.t, w.ctx
	t.Helper()
	switch {
	case w.v.keys():
		w.key("?")
		browsertest.WaitTrue(t, ctx, "help shown", `document.getElementById("keys-help").open`)
		w.key(kb.Escape)
		browsertest.WaitTrue(t, ctx, "help closed", `!document.getElementById("keys-help").open`)
		w.key("j")
		w.key("j")
		if got := w.str(`document.querySelector("tr.current").dataset.uid + " " + document.querySelectorAll("tr.current").length`); got != rowsUID(t, ctx, 1)+" 1" {
			t.Errorf("after j j: current row %q, want the second row (%s) alone", got, rowsUID(t, ctx, 1))
		}
		w.key("k")
		if got := w.str(`document.querySelector("tr.current").dataset.uid`); got != strconv.Itoa(int(orig)) {
			t.Errorf("after j j k: current row %s, want the first (%d)", got, orig)
		}
		if !w.is(`document.activeElement === document.querySelector("tr.current a.open")`) {
			t.Error("after j j k the selected row's link does not have the focus")
		}
		// With the focus on the page (as after a click on empty space), Enter is app.js's; on the link it would be
		// the browser's own.
		w.is(`document.activeElement.blur(), true`)
		w.key(kb.Enter)
	case !w.v.script:
		// The shortcuts are the script's: without it, ? and j change nothing (a key event is dispatched and
		// handled before the next DevTools call, so a listener would have acted by now).
		w.key("?")
		w.key("j")
		if w.is(`document.getElementById("keys-help").open || !!document.querySelector("tr.current")`) {
			t.Error("without JavaScript, ? or j did something")
		}
		fallthrough
	default:
		w.press("open the message", `tr[data-uid="`+strconv.Itoa(int(orig))+`"] a.open`)
	}
	browsertest.WaitTrue(t, ctx, "message opened", `location.pathname === `+strconv.Quote(msgPath)+` && !!document.getElementById("msg-subject")`)
}

// readLunch checks the HTML message in its sandboxed frame, then walks to the older message and back (j and k, or the
// Older and Newer links).
func (w *walker) readLunch(orig uint32, msgPath string) {
	t, ctx := w.t, w.ctx
	t.Helper()
	if got := w.str(`document.getElementById("msg-subject").textContent`); got != "Team lunch on Friday" {
		t.Errorf("message subject = %q", got)
	}
	if sb := w.str(`document.getElementById("msg-html").getAttribute("sandbox")`); sb != "allow-popups allow-popups-to-escape-sandbox" {
		t.Errorf("frame sandbox = %q", sb)
	}
	frameText := ""
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if v, ok := browsertest.FrameEval[string](t, ctx, `document.body ? document.body.innerText : ""`); ok && strings.Contains(v, "noodle bar") {
			frameText = v
			break
		}
	}
	if frameText == "" {
		t.Fatal("the frame does not show the message's HTML")
	}
	// Without the script the frame keeps the height the server estimated; with it, app.js rescales it. Either way it
	// shows the message, not a sliver.
	if h := browsertest.Eval[float64](t, ctx, `document.getElementById("msg-html").getBoundingClientRect().height`); h < 100 {
		t.Errorf("the frame is %v px high", h)
	}
	if m, _ := storedByUID(t, w.s, "alice@example.test", "INBOX", orig); !hasFlag(m, `\Seen`) {
		t.Errorf("after reading, flags = %v, want \\Seen", m.Flags)
	}
	// Older and Newer lead to the neighbour in the folder's order: a message, or with conversations on the
	// conversation it belongs to.
	shown := `(document.readyState === "complete" && (document.getElementById("msg-subject") || document.getElementById("conv-subject")) || {textContent: ""}).textContent`
	if w.v.keys() {
		w.key("j")
	} else {
		w.press("Older", "#nav-older")
	}
	browsertest.WaitTrue(t, ctx, "older message", `location.pathname !== `+strconv.Quote(msgPath)+` && /^\/(msg|conv)\/INBOX\/\d+$/.test(location.pathname) && `+shown+` !== ""`)
	if got := w.str(shown); strings.Contains(got, "Team lunch") {
		t.Errorf("Older shows %q again", got)
	}
	if w.v.keys() {
		w.key("k")
	} else {
		w.press("Newer", "#nav-newer")
	}
	browsertest.WaitTrue(t, ctx, "back to the newest", `/^\/(msg|conv)\/INBOX\/`+strconv.Itoa(int(orig))+`$/.test(location.pathname) && `+shown+`.includes("Team lunch on Friday")`)
	if w.is(`/\b1 messages\b/.test((document.querySelector("article.conversation") || {}).textContent || "")`) {
		t.Error(`a conversation of one says "1 messages"`)
	}
	w.fits("the message")
}

// reply answers the open message with an attachment (r, or the Reply button) and checks it reached bob and Sent.
func (w *walker) reply(orig uint32, subject, attachment string) {
	t, ctx, s := w.t, w.ctx, w.s
	t.Helper()
	const alice, bob = "alice@example.test", "bob@example.test"
	// Newer led back to the message, or with conversations on to its conversation (of one): r answers the open
	// message of either, as does its Reply link.
	switch {
	case w.v.keys():
		w.key("r")
	case w.is(`!!document.getElementById("reply")`):
		w.press("Reply", "#reply")
	default:
		w.press("Reply", `details.conv-msg[open] .msg-actions a[href^="/compose?reply="]`)
	}
	want := "INBOX/" + strconv.Itoa(int(orig))
	browsertest.WaitTrue(t, ctx, "reply form", `location.pathname === "/compose" && new URLSearchParams(location.search).get("reply") === `+strconv.Quote(want)+` && !!document.getElementById("compose-form")`)
	if to := w.str(`document.getElementById("to").value`); !strings.Contains(to, bob) {
		t.Errorf("reply To = %q, want bob", to)
	}
	if subj := w.str(`document.getElementById("subject").value`); subj != "Re: "+subject {
		t.Errorf("reply Subject = %q", subj)
	}
	w.fits("the compose form")
	browsertest.Do(t, ctx, "write and attach",
		chromedp.SendKeys(chromedp.ID("body"), "Noon works for me. "),
		chromedp.SetUploadFiles(chromedp.ID("attach"), []string{attachment}),
	)
	if n := w.num(`document.getElementById("attach").files.length`); n != 1 {
		t.Fatalf("the file input holds %d files, want 1", n)
	}
	// app.js lists the picked files with a Remove button; without it the browser's own file input shows them.
	if w.v.script {
		browsertest.WaitTrue(t, ctx, "picked files listed", `!document.getElementById("picked").hidden && document.getElementById("picked").textContent.includes("menu.txt")`)
	} else if !w.is(`document.getElementById("picked").hidden`) {
		t.Error("without JavaScript the picked-files list is shown")
	}
	w.press("send", "#send")
	browsertest.WaitTrue(t, ctx, "sent", `location.pathname === "/mail/INBOX" && !!document.getElementById("notice")`)
	if got := w.notice(); got != "Your message was sent." {
		t.Errorf("notice = %q", got)
	}
	for _, where := range []struct{ addr, box string }{{bob, "INBOX"}, {alice, "Sent"}} {
		m, ok := findBySubject(t, s, where.addr, where.box, "Re: "+subject)
		if !ok {
			t.Errorf("the reply is not in %s's %s", where.addr, where.box)
			continue
		}
		raw := string(m.Raw)
		if !strings.Contains(raw, "Noon works for me.") || !strings.Contains(raw, "menu.txt") ||
			!strings.Contains(raw, "c291cCBvZiB0aGUgZGF5") {
			t.Errorf("the reply in %s's %s lacks the text or the attachment:\n%.2000s", where.addr, where.box, raw)
		}
	}
	if m, _ := storedByUID(t, s, alice, "INBOX", orig); !hasFlag(m, `\Answered`) {
		t.Errorf("original flags = %v, want \\Answered", m.Flags)
	}
}

// replyToStranger: the demo banner says where mail to strangers goes; a reply to a seeded sender without an account
// here lands in Outbound.
func (w *walker) replyToStranger() {
	t, ctx := w.t, w.ctx
	t.Helper()
	if got := w.str(`document.getElementById("site-banner").textContent`); !strings.Contains(got, "Outbound") {
		t.Errorf("demo banner = %q", got)
	}
	const slides = "Slides for Thursday"
	uid := rowUID(t, ctx, slides)
	if uid == 0 {
		t.Fatalf("no row %q", slides)
	}
	w.press("open the slides", `tr[data-uid="`+strconv.Itoa(int(uid))+`"] a.open`)
	browsertest.WaitTrue(t, ctx, "slides open", `location.pathname === `+strconv.Quote(messagePath("INBOX", uid))+` && !!document.getElementById("msg-subject")`)
	if w.v.keys() {
		w.key("r")
	} else {
		w.press("Reply", "#reply")
	}
	browsertest.WaitTrue(t, ctx, "reply form to Björn", `location.pathname === "/compose" && document.getElementById("to").value.includes("bjorn@example.org")`)
	browsertest.Do(t, ctx, "write to Björn", chromedp.SendKeys(chromedp.ID("body"), "Looks good. "))
	w.press("send to Björn", "#send")
	browsertest.WaitTrue(t, ctx, "sent to Björn", `location.pathname === "/mail/INBOX" && !!document.getElementById("notice")`)
	if got := w.notice(); got != "Your message was sent." {
		t.Errorf("notice after the reply to Björn = %q", got)
	}
	if _, ok := findBySubject(t, w.s, "alice@example.test", "Outbound", "Re: "+slides); !ok {
		t.Error("the reply to Björn is not in alice's Outbound folder")
	}
}

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
// Newer links) walk to the next older conversation and back.
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
	browsertest.WaitTrue(t, ctx, "older conversation", `location.pathname.startsWith("/conv/INBOX/") && location.pathname !== `+strconv.Quote(here)+` && document.readyState === "complete"`)
	if w.is(`document.getElementById("conv-subject").textContent.includes(` + strconv.Quote(migrationThread) + `)`) {
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
