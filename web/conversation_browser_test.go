//go:build browser

package web

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/postern/postern/internal/browsertest"
)

// migrationThread is the subject of the dev server's seeded twelve-message thread.
const migrationThread = "Migration plan for the mail cluster"

// TestBrowserConversationScreenshots renders the inbox with conversations and snippets and a conversation view at
// desktop and phone sizes, in light and dark mode; nothing may overflow sideways. With POSTERN_SCREENSHOTS set (see
// TestBrowserScreenshots) it writes the desktop light ones as inbox-conversations.png and conversation.png:
//
//	POSTERN_SCREENSHOTS=docs/screenshots go test -tags browser -run TestBrowserConversationScreenshots -count=1 ./web/
func TestBrowserConversationScreenshots(t *testing.T) {
	dir := os.Getenv("POSTERN_SCREENSHOTS")
	if dir != "" && !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir)
	}
	s := newStack(t)
	ctx, rec := browsertest.Start(t)
	signInBrowser(t, ctx, s, "alice")
	uid := rowUID(t, ctx, migrationThread)
	if uid == 0 {
		t.Fatalf("no row %q", migrationThread)
	}
	app := s.ts.URL
	pages := []struct{ name, path, ready string }{
		{"inbox-conversations", "/mail/INBOX", `!!document.querySelector("table.messages .snippet")`},
		{"conversation", conversationPath("INBOX", uid), `document.querySelectorAll("details.conv-msg").length === 12`},
		// Search of every folder: rows carry a folder tag (no screenshot).
		{"search-all", "/mail/INBOX?scope=all&q=backup", `!!document.querySelector("table.messages .folder-tag")`},
	}
	sizes := []struct {
		name          string
		width, height int64
		mobile        bool
	}{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}}
	for _, pg := range pages {
		for _, size := range sizes {
			for _, scheme := range []string{"light", "dark"} {
				name := pg.name + "-" + size.name + "-" + scheme
				t.Run(name, func(t *testing.T) {
					browsertest.Do(t, ctx, "emulate "+name, browsertest.Emulate(size.width, size.height, size.mobile, scheme),
						chromedp.Navigate(app+pg.path))
					path, _, _ := strings.Cut(pg.path, "?")
					browsertest.WaitTrue(t, ctx, name, `location.pathname === `+strconv.Quote(path)+` && document.readyState === "complete" && `+pg.ready)
					// A phone widens its layout viewport to fit what sticks out (overflowJS then sees nothing).
					if w := browsertest.Eval[float64](t, ctx, `innerWidth`); w != float64(size.width) {
						t.Errorf("innerWidth = %v, want %d", w, size.width)
					}
					if over := browsertest.Eval[[]string](t, ctx, overflowJS); len(over) > 0 {
						t.Errorf("the page is wider than the %d px viewport: %s", size.width, strings.Join(over, ", "))
					}
					// WCAG 2 AA for the new text: snippets (muted) and count badges.
					for _, sel := range []string{".snippet", ".count", ".folder-tag"} {
						if !browsertest.Eval[bool](t, ctx, `!!document.querySelector("main `+sel+`")`) {
							continue
						}
						if c := contrast(t, ctx, "main "+sel); c < 4.5 {
							t.Errorf("contrast of %s = %.2f, want at least 4.5", sel, c)
						}
					}
					if dir != "" && size.name == "desktop" && scheme == "light" && pg.name != "search-all" {
						n := browsertest.Screenshot(t, ctx, filepath.Join(dir, pg.name+".png"))
						t.Logf("%s.png: %d bytes", pg.name, n)
					}
				})
			}
		}
	}
	requests, proxied, dialogs := rec.Snapshot()
	if f := browsertest.Foreign(requests); len(f) > 0 || len(proxied) > 0 || len(dialogs) > 0 {
		t.Errorf("requests left 127.0.0.1: %v, proxy: %v, dialogs: %q", f, proxied, dialogs)
	}
	if ex := rec.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}

// TestBrowserConversationShortcuts: in a conversation, r, a and f answer the message in view, as the Reply link
// inside each message does: the one the server opened (the oldest unread, not the newest), the one unfolded last
// when several are open (not the oldest or the newest of them), and the newest when all are folded. The shortcut help lists them, and the reader's j/k.
func TestBrowserConversationShortcuts(t *testing.T) {
	s := newStack(t)
	ctx, rec := browsertest.Start(t)
	signInBrowser(t, ctx, s, "alice")
	app := s.ts.URL
	uid := rowUID(t, ctx, migrationThread)
	if uid == 0 {
		t.Fatalf("no row %q in the inbox", migrationThread)
	}
	convURL := app + conversationPath("INBOX", uid)
	openConv := func(t *testing.T) {
		t.Helper()
		browsertest.Do(t, ctx, "open the conversation", chromedp.Navigate(convURL))
		browsertest.WaitTrue(t, ctx, "conversation shown", `document.readyState === "complete" && document.querySelectorAll("details.conv-msg[data-uid]").length === 12`)
	}
	// press sends key and waits for the compose form that answers message uid of the inbox (kind: reply, replyall
	// or forward), as the Reply, Reply all and Forward links inside that message do.
	press := func(t *testing.T, key, kind, uid string) {
		t.Helper()
		browsertest.Do(t, ctx, "press "+key, chromedp.KeyEvent(key))
		want := "?" + kind + "=" + url.QueryEscape("INBOX/"+uid)
		browsertest.WaitTrue(t, ctx, key+" opens the compose form", `location.pathname === "/compose" && !!document.getElementById("compose-form")`)
		if got := browsertest.Eval[string](t, ctx, `location.search`); got != want {
			t.Errorf("%s: compose%s, want compose%s", key, got, want)
		}
		if subj := browsertest.Eval[string](t, ctx, `document.getElementById("subject").value`); !strings.Contains(subj, migrationThread) {
			t.Errorf("%s: Subject = %q", key, subj)
		}
	}
	unfold := func(t *testing.T, uid string, open bool) {
		t.Helper()
		d := `document.querySelector('details.conv-msg[data-uid="` + uid + `"]')`
		browsertest.Do(t, ctx, "toggle "+uid, chromedp.Click(chromedp.CSS(`details.conv-msg[data-uid="`+uid+`"] > summary`)))
		browsertest.WaitTrue(t, ctx, "toggled "+uid, d+`.open === `+strconv.FormatBool(open))
	}

	openConv(t)
	uids := browsertest.Eval[[]string](t, ctx, `[...document.querySelectorAll("details.conv-msg")].map(d => d.dataset.uid)`)
	opened := browsertest.Eval[[]string](t, ctx, `[...document.querySelectorAll("details.conv-msg[open]")].map(d => d.dataset.uid)`)
	if len(opened) != 1 {
		t.Fatalf("open messages %v, want one", opened)
	}
	oldest, open, newest := uids[0], opened[0], uids[len(uids)-1]
	// The seeded thread has unread messages after its first: the server opens the oldest unread, so that the three
	// cases below answer three different messages.
	if open == oldest || open == newest {
		t.Fatalf("the server opened %s of %v; the test needs it to be neither the oldest nor the newest", open, uids)
	}

	browsertest.Do(t, ctx, "press ?", chromedp.KeyEvent("?"))
	browsertest.WaitTrue(t, ctx, "help shown", `document.getElementById("keys-help").open`)
	help := browsertest.Eval[string](t, ctx, `document.getElementById("keys-help").innerText`)
	for _, want := range []string{"older / newer message or conversation", "In a conversation, r, a and f act on the open message"} {
		if !strings.Contains(help, want) {
			t.Errorf("the shortcut help lacks %q:\n%s", want, help)
		}
	}
	browsertest.Do(t, ctx, "press Escape", chromedp.KeyEvent(kb.Escape))
	browsertest.WaitTrue(t, ctx, "help closed", `!document.getElementById("keys-help").open`)

	press(t, "r", "reply", open)

	// Now read, the conversation opens at the newest. The message unfolded last wins over the newest open one, and
	// over the oldest open one.
	openConv(t)
	unfold(t, oldest, true)
	press(t, "f", "forward", oldest)
	openConv(t)
	unfold(t, oldest, true)
	unfold(t, open, true)
	if n := browsertest.Eval[int](t, ctx, `document.querySelectorAll("details.conv-msg[open]").length`); n != 3 {
		t.Fatalf("%d messages open, want 3", n)
	}
	press(t, "a", "replyall", open)
	// All folded: the newest.
	openConv(t)
	unfold(t, newest, false)
	if n := browsertest.Eval[int](t, ctx, `document.querySelectorAll("details.conv-msg[open]").length`); n != 0 {
		t.Fatalf("%d messages open, want none", n)
	}
	press(t, "r", "reply", newest)

	if ex := rec.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}
