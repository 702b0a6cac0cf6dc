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
	// The other two combinations, so that each of desktop and phone is walked in light and in dark mode.
	{name: "desktop-dark", width: 1280, height: 800, scheme: "dark", script: true},
	{name: "phone-light-noscript", width: 390, height: 844, phone: true, scheme: "light"},
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
	// app.js binds the shortcuts when it runs, after the page is parsed: a key pressed as soon as the content is
	// there can come first (seen once in five walks), as no person's would.
	browsertest.WaitTrue(w.t, w.ctx, "page loaded before pressing "+k, `document.readyState === "complete"`)
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

	rec.CheckQuiet(t)
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
