//go:build browser

package web

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
)

// TestBrowserDevices connects a device in real Chromium without any script of ours: the menu's Devices link, the
// name form, consent at the dev IdP, the password page; it must fit a 320 px phone and a desktop without sideways
// scrolling. With POSTERN_SCREENSHOTS set (see TestBrowserScreenshots) it writes devices-desktop-light.png there.
//
//	go test -tags browser -run TestBrowserDevices -count=1 -v ./web/
func TestBrowserDevices(t *testing.T) {
	dir := os.Getenv("POSTERN_SCREENSHOTS")
	if dir != "" && !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir)
	}
	s := newStack(t, withBridge(testBridge))
	ctx, rec := browsertest.Start(t)
	signInBrowser(t, ctx, s, "alice")
	app := s.ts.URL
	browsertest.Do(t, ctx, "open Devices from the menu",
		browsertest.Emulate(1280, 800, false, "light"),
		chromedp.Click(chromedp.CSS(`nav.account a[href="/devices"]`)),
		chromedp.WaitVisible(chromedp.ID("connect")),
		chromedp.SendKeys(chromedp.ID("device-name"), "iPhone"),
		chromedp.Submit(chromedp.ID("device-name")),
		chromedp.WaitVisible(chromedp.ID("accept")),
		chromedp.Click(chromedp.ID("accept")),
	)
	browsertest.WaitTrue(t, ctx, "password page", `!!document.getElementById("device-password")`)
	pw := browsertest.Eval[string](t, ctx, `document.querySelector("#device-password code").textContent`)
	if len(strings.Split(pw, "-")) != 7 {
		t.Fatalf("password shown %q: want seven groups", pw)
	}
	if !strings.HasPrefix(browsertest.Eval[string](t, ctx, `location.href`), app+"/callback") {
		t.Errorf("the password page is not the callback's own response")
	}
	for _, w := range []int64{320, 1280} {
		browsertest.Do(t, ctx, "emulate", browsertest.Emulate(w, 800, w < 700, "light"))
		if over := browsertest.Eval[[]string](t, ctx, overflowJS); len(over) > 0 {
			t.Errorf("the password page is wider than %d px: %s", w, strings.Join(over, ", "))
		}
	}
	if dir != "" {
		n := browsertest.Screenshot(t, ctx, filepath.Join(dir, "devices-desktop-light.png"))
		t.Logf("devices-desktop-light.png: %d bytes", n)
	}
	// Reload the list: the device is there, its password is not; revoking works as a plain form.
	browsertest.Do(t, ctx, "list", chromedp.Navigate(app+"/devices"))
	browsertest.WaitTrue(t, ctx, "list", `document.querySelectorAll("table.device-list tbody tr").length === 1`)
	if strings.Contains(browsertest.Eval[string](t, ctx, `document.body.innerHTML`), pw) {
		t.Error("the list shows the password again")
	}
	browsertest.Do(t, ctx, "revoke", chromedp.Click(chromedp.CSS(`table.device-list button.danger`)))
	browsertest.WaitTrue(t, ctx, "revoked", `location.search === "?done=revoked" && !!document.getElementById("notice")`)
	if got := browsertest.Eval[string](t, ctx, `document.querySelector("table.device-list tbody td.state").textContent`); got != "revoked" {
		t.Errorf("state after revoking = %s, want revoked", strconv.Quote(got))
	}
	if ex := rec.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}
