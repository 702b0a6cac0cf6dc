//go:build browser

package web

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
)

// TestBrowserSettings runs the Settings page in real Chromium: app.js reports the browser's time zone (emulated as
// Europe/Helsinki) and the list shows times there; every field has a label; saving shows the notice; an invalid zone
// is named next to its field, readable in light and dark mode; the settings and account pages fit a 320 px phone.
// With POSTERN_SCREENSHOTS set (see TestBrowserScreenshots) it writes settings.png there.
//
//	POSTERN_SCREENSHOTS=docs/screenshots go test -tags browser -run TestBrowserSettings -count=1 -v ./web/
func TestBrowserSettings(t *testing.T) {
	dir := os.Getenv("POSTERN_SCREENSHOTS")
	if dir != "" && !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir)
	}
	s := newStack(t)
	ctx, rec := browsertest.Start(t)
	app := s.ts.URL
	browsertest.Do(t, ctx, "emulate a desktop in Helsinki", browsertest.Emulate(1280, 900, false, "light"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Europe/Helsinki"})
			return err
		}))
	signInBrowser(t, ctx, s, "alice")

	if c := browsertest.Eval[string](t, ctx, `document.cookie`); !strings.Contains(c, "postern_tz=Europe/Helsinki") {
		t.Errorf("document.cookie = %q, want postern_tz=Europe/Helsinki from app.js", c)
	}
	browsertest.Do(t, ctx, "reload the list", chromedp.Navigate(app+"/mail/INBOX"))
	browsertest.WaitTrue(t, ctx, "list", `!!document.querySelector("table.messages td.date time")`)
	if title := browsertest.Eval[string](t, ctx, `document.querySelector("table.messages td.date time").title`); !strings.HasSuffix(title, "(Europe/Helsinki)") {
		t.Errorf("list time title = %q, want the full time in Europe/Helsinki", title)
	}

	browsertest.Do(t, ctx, "open Settings from the menu",
		chromedp.Click(chromedp.ID("nav-settings")),
		chromedp.WaitVisible(chromedp.ID("settings-form")),
	)
	if unlabelled := browsertest.Eval[[]string](t, ctx, `[...document.querySelectorAll("#settings-form input, #settings-form select, #settings-form textarea")]
		.filter(e => e.type !== "hidden" && e.labels.length === 0).map(e => e.name)`); len(unlabelled) > 0 {
		t.Errorf("form controls without a label: %v", unlabelled)
	}
	browsertest.Do(t, ctx, "fill in and save",
		chromedp.SendKeys(chromedp.ID("display_name"), "Alice in Wonderland"),
		chromedp.SendKeys(chromedp.ID("signature"), "Alice\nDown the rabbit hole"),
		chromedp.SetValue(chromedp.ID("page_size"), "25"),
		chromedp.SendKeys(chromedp.ID("remote_senders"), "newsletter@selfhosted.example"),
		chromedp.Click(chromedp.ID("save-settings")),
	)
	browsertest.WaitTrue(t, ctx, "saved", `location.pathname === "/settings" && !!document.getElementById("notice")`)
	if got := browsertest.Eval[string](t, ctx, `document.getElementById("notice-text").textContent`); got != "Your settings are saved." {
		t.Errorf("notice = %q, want Your settings are saved.", got)
	}
	if dir != "" {
		browsertest.Do(t, ctx, "the whole form in view", browsertest.Emulate(1280, 1200, false, "light"))
		n := browsertest.Screenshot(t, ctx, filepath.Join(dir, "settings.png"))
		t.Logf("settings.png: %d bytes", n)
	}

	browsertest.Do(t, ctx, "an unknown time zone",
		chromedp.SetValue(chromedp.ID("time_zone"), "Mars/Olympus_Mons"),
		chromedp.Click(chromedp.ID("save-settings")),
	)
	browsertest.WaitTrue(t, ctx, "problem shown", `!!document.getElementById("time_zone-problem")`)
	if !browsertest.Eval[bool](t, ctx, `document.getElementById("time_zone").getAttribute("aria-invalid") === "true" &&
		document.getElementById("time_zone").getAttribute("aria-describedby").includes("time_zone-problem")`) {
		t.Error("the time-zone field is not marked invalid and described by its problem")
	}
	for _, scheme := range []string{"light", "dark"} {
		browsertest.Do(t, ctx, "scheme", browsertest.Emulate(1280, 900, false, scheme))
		if c := contrast(t, ctx, "#time_zone-problem"); c < 4.5 {
			t.Errorf("%s: the field problem's contrast is %.2f:1, want at least 4.5:1", scheme, c)
		}
	}

	for _, path := range []string{"/settings", "/session"} {
		for _, w := range []int64{320, 1280} {
			browsertest.Do(t, ctx, "open "+path, browsertest.Emulate(w, 800, w < 700, "light"), chromedp.Navigate(app+path))
			browsertest.WaitTrue(t, ctx, path, `document.readyState === "complete" && !!document.getElementById("main")`)
			if over := browsertest.Eval[[]string](t, ctx, overflowJS); len(over) > 0 {
				t.Errorf("%s at %d px is wider than the screen: %s", path, w, strings.Join(over, ", "))
			}
		}
	}
	// The account page: Sign out is the readable main button; the token details start folded.
	if c := contrast(t, ctx, "#account-sign-out"); c < 4.5 {
		t.Errorf("Sign out contrast %.2f:1, want at least 4.5:1", c)
	}
	if browsertest.Eval[bool](t, ctx, `document.getElementById("technical").open`) {
		t.Error("Technical details are open by default")
	}
	if ex := rec.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}
