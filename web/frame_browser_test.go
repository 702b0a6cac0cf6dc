//go:build browser

package web

// The app's frame in real Chromium (issue 15): the shortcuts hint that needs the script, the attachment marker that
// needs no emoji font, the side bar's unread counts kept current by the live stream, and an error page that keeps
// the frame.
//
//	go test -tags browser -run TestBrowserFrame -count=1 -v ./web/

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
	"github.com/postern/postern/mail"
)

func TestBrowserFrame(t *testing.T) {
	s := newStack(t)
	ctx, rec := browsertest.Start(t)
	signInBrowser(t, ctx, s, "alice")
	app := s.ts.URL
	open := func(t *testing.T, path, ready string) {
		t.Helper()
		browsertest.Do(t, ctx, "open "+path, chromedp.Navigate(app+path))
		browsertest.WaitTrue(t, ctx, path, `document.readyState === "complete" && `+ready)
	}
	browsertest.Do(t, ctx, "desktop", browsertest.Emulate(1280, 800, false, "light"))

	t.Run("ShortcutsHintNeedsScript", func(t *testing.T) {
		open(t, "/mail/INBOX", `!!document.querySelector("table.messages")`)
		if !browsertest.Eval[bool](t, ctx, `document.querySelector(".keys-hint").checkVisibility()`) {
			t.Error("with the script running, the Press-? hint is not shown")
		}
		browsertest.Do(t, ctx, "script off", browsertest.DisableScript(true))
		defer browsertest.Do(t, ctx, "script on", browsertest.DisableScript(false))
		open(t, "/mail/INBOX", `!!document.querySelector("table.messages")`)
		if browsertest.Eval[bool](t, ctx, `document.querySelector(".keys-hint").checkVisibility()`) {
			t.Error("without the script, the page offers a shortcut that does nothing (the Press-? hint is shown)")
		}
		if browsertest.Eval[bool](t, ctx, `/ · *$/.test(document.querySelector("footer").innerText)`) {
			t.Error("without the script, the footer ends in a dangling separator")
		}
	})

	t.Run("AttachmentMarkerNeedsNoEmoji", func(t *testing.T) {
		open(t, "/mail/INBOX", `!!document.querySelector("table.messages")`)
		got := browsertest.Eval[[]string](t, ctx, `(function () {
			const m = document.querySelector("table.messages svg.clip");
			if (!m) return ["none"];
			const r = m.getBoundingClientRect();
			return [m.getAttribute("role"), m.getAttribute("aria-label"), String(r.width >= 12 && r.height >= 12),
				String(document.body.innerText.includes("\u{1F4CE}"))];
		})()`)
		if want := []string{"img", "Has attachments", "true", "false"}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
			t.Errorf("attachment marker (role, name, drawn, emoji in page) = %q, want %q", got, want)
		}
	})

	t.Run("SideBarCountsFollowLiveUpdates", func(t *testing.T) {
		open(t, "/mail/INBOX", `!!document.querySelector("table.messages")`)
		countJS := `(function () {
			const c = document.querySelector('nav.folders a[href="/mail/INBOX"] .count');
			return c ? parseInt(c.firstChild.textContent, 10) : 0;
		})()`
		before := browsertest.Eval[float64](t, ctx, countJS)
		// The stream is open once the server watches: give EventSource its first answer.
		time.Sleep(500 * time.Millisecond)
		bob := signedInAs(t, s, "bob")
		tok, err := s.keeper.Token(context.Background(), bob.grant)
		if err != nil {
			t.Fatal(err)
		}
		host, port := splitHostPort(t, s.smtp.String())
		err = mail.Send(context.Background(), mail.Server{Host: host, Port: port, TLS: mail.TLSNone},
			mail.Credentials{Address: bob.addr, Token: tok.Access}, bob.addr, []string{"alice@example.test"},
			bytes.NewReader(testMessage(bob.addr, "alice@example.test", "live count", "x")))
		if err != nil {
			t.Fatal(err)
		}
		browsertest.WaitTrue(t, ctx, "the Inbox count after a delivery", countJS+` === `+strconv.Itoa(int(before)+1))
		if !browsertest.Eval[bool](t, ctx, `!document.getElementById("live").hidden`) {
			t.Error("the New mail banner is not shown")
		}
		// The updated link is what the server renders for the same count.
		linkJS := `document.querySelector('nav.folders a[href="/mail/INBOX"]').innerHTML.replace(/\s+/g, " ").trim()`
		live := browsertest.Eval[string](t, ctx, linkJS)
		open(t, "/mail/INBOX", `!!document.querySelector("table.messages")`)
		if served := browsertest.Eval[string](t, ctx, linkJS); live != served {
			t.Errorf("the Inbox link after the live update is\n\t%s\nthe server renders\n\t%s", live, served)
		}
	})

	t.Run("ErrorPageKeepsFrame", func(t *testing.T) {
		open(t, messagePath("INBOX", 999999), `!!document.getElementById("error-h")`)
		if !browsertest.Eval[bool](t, ctx, `!!document.querySelector("nav.folders") && !!document.querySelector("nav.account")`) {
			t.Error("the error page lost the folder list or the account menu")
		}
		browsertest.Do(t, ctx, "follow the way back", chromedp.Click(chromedp.ID("retry")))
		browsertest.WaitTrue(t, ctx, "back in the Inbox", `location.pathname === "/mail/INBOX" && !!document.querySelector("table.messages")`)
	})

	// The search box stays where it is between the list, a search, an advanced search and "More options" opened:
	// before, it sat 792, 701 or 351 px from the left on a 1280 px screen depending on the page, and the phone's
	// heading moved down by up to 200 px on a short list.
	t.Run("SearchStaysPut", func(t *testing.T) {
		posJS := `(function () {
			const r = document.getElementById("q").getBoundingClientRect(), h = document.querySelector("h1.boxname").getBoundingClientRect();
			return [Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(h.top)].join(",");
		})()`
		for _, w := range []int64{1280, 900, 390} {
			browsertest.Do(t, ctx, "emulate", browsertest.Emulate(w, 800, w < 700, "light"))
			var first string
			for _, p := range []string{"/mail/INBOX", "/mail/INBOX?q=invoice", "/mail/INBOX?q=nothing-matches-this", "/mail/INBOX?from=northwind", "/mail/INBOX#more"} {
				open(t, p, `!!document.getElementById("q")`)
				if p == "/mail/INBOX#more" {
					browsertest.Eval[bool](t, ctx, `document.querySelector("details.advanced").open = true`)
				}
				got := browsertest.Eval[string](t, ctx, posJS)
				if first == "" {
					first = got
				} else if got != first {
					t.Errorf("%d px, %s: search box and heading at %s (left, top, width, heading top), on the list at %s", w, p, got, first)
				}
			}
		}
		browsertest.Do(t, ctx, "desktop", browsertest.Emulate(1280, 800, false, "light"))
	})

	if ex := rec.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}
