//go:build browser

package web

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
)

// migrationThread is the subject of the dev server's seeded twelve-message thread.
const migrationThread = "Migration plan for the mail cluster"

// readConversation opens the seeded thread from the inbox (which must be shown), checks the conversation view, and
// walks to the next older conversation with j and back with k. The daily path calls it.
func readConversation(t *testing.T, ctx context.Context) {
	t.Helper()
	browsertest.Do(t, ctx, "to the inbox", chromedp.Click(chromedp.CSS(`nav.folders a[href="/mail/INBOX"]`)))
	browsertest.WaitTrue(t, ctx, "inbox listed", `location.pathname === "/mail/INBOX" && !!document.querySelector("table.messages")`)
	uid := rowUID(t, ctx, migrationThread)
	if uid == 0 {
		t.Fatalf("no row %q in the inbox", migrationThread)
	}
	row := `tr[data-uid="` + strconv.Itoa(int(uid)) + `"]`
	if got := browsertest.Eval[string](t, ctx, `document.querySelector('`+row+` .count').textContent`); !strings.Contains(got, "12") {
		t.Errorf("conversation badge = %q, want 12", got)
	}
	browsertest.Do(t, ctx, "open the conversation", chromedp.Click(chromedp.CSS(row+` a.open`)))
	browsertest.WaitTrue(t, ctx, "conversation shown", `location.pathname.startsWith("/conv/INBOX/") && document.querySelectorAll("details.conv-msg").length === 12`)
	if n := browsertest.Eval[int](t, ctx, `document.querySelectorAll("details.conv-msg[open]").length`); n != 1 {
		t.Errorf("%d messages open, want 1", n)
	}
	// A folded message opens with a click on its summary (no script needed: <details>).
	browsertest.Do(t, ctx, "unfold the first", chromedp.Click(chromedp.CSS(`details.conv-msg summary`)))
	if !browsertest.Eval[bool](t, ctx, `document.querySelector("details.conv-msg").open && document.querySelector("details.conv-msg").innerText.includes("here is the plan")`) {
		t.Error("the oldest message does not unfold to its text")
	}
	here := browsertest.Eval[string](t, ctx, `location.pathname`)
	browsertest.Do(t, ctx, "press j", chromedp.KeyEvent("j"))
	browsertest.WaitTrue(t, ctx, "older conversation", `location.pathname.startsWith("/conv/INBOX/") && location.pathname !== `+strconv.Quote(here)+` && document.readyState === "complete"`)
	if browsertest.Eval[bool](t, ctx, `document.getElementById("conv-subject").textContent.includes(`+strconv.Quote(migrationThread)+`)`) {
		t.Error("j stayed in the same conversation")
	}
	browsertest.Do(t, ctx, "press k", chromedp.KeyEvent("k"))
	browsertest.WaitTrue(t, ctx, "back to the thread", `location.pathname.startsWith("/conv/INBOX/") && document.readyState === "complete" && document.getElementById("conv-subject").textContent.includes(`+strconv.Quote(migrationThread)+`)`)
}

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
