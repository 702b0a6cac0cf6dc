//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
)

// TestBrowserSignIn signs in with a real headless Chromium instead of the
// form-posting HTTP client: Postern's /login sends it to Hydra, Hydra to the
// testbed's login page (loginconsent), whose form the test fills in as a
// user would; consent is accepted there, Hydra sends the browser back to
// Postern's callback and on to the inbox. Chromium applies what the HTTP
// client does not: SameSite and Secure cookie rules on every hop, CSP
// form-action on each form, and the redirect chain as a browser follows it.
// It then signs out with the page's button. Nothing may leave 127.0.0.1.
//
// It skips when there is no Chromium (browsertest.ChromiumPath); CI installs
// Debian's chromium before the e2e suite.
func TestBrowserSignIn(t *testing.T) {
	if _, err := browsertest.ChromiumPath(); err != nil {
		t.Skip(err)
	}
	tb := peers(t)
	hydraLog := markLog(t, tb.HydraLog)
	p := startPostern(t, tb, posternOptions{Listen: "127.0.0.1:18080", Client: tb.postern()})
	ctx, rec := browsertest.Start(t)
	start := time.Now()

	browsertest.Do(t, ctx, "open Postern", chromedp.Navigate(p.URL+"/mail/INBOX"))
	// Not signed in: Postern → Hydra's authorization endpoint → Hydra's login UI (another origin than both).
	browsertest.WaitTrue(t, ctx, "login page",
		`location.origin !== `+strconv.Quote(p.URL)+` && location.origin !== `+strconv.Quote(tb.Issuer)+
			` && !!document.getElementById("username") && !!document.getElementById("submit")`)
	loginURL := browsertest.Eval[string](t, ctx, `location.origin + location.pathname`)
	browsertest.Do(t, ctx, "fill the login form",
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "alice-password"),
		chromedp.Click(chromedp.ID("submit")),
	)
	browsertest.WaitTrue(t, ctx, "inbox after sign-in",
		`location.href === `+strconv.Quote(p.URL+"/mail/INBOX")+` && document.readyState === "complete" && !!document.querySelector("main h1.boxname")`)
	t.Logf("signed in through %s in %v", loginURL, time.Since(start).Round(10*time.Millisecond))
	if who := browsertest.Eval[string](t, ctx, `document.querySelector("nav.account a").textContent`); who != alice {
		t.Errorf("the page shows %q as the signed-in user, want %s", who, alice)
	}
	if h := browsertest.Eval[string](t, ctx, `document.querySelector("main h1.boxname").textContent`); !strings.HasPrefix(h, "Inbox") {
		t.Errorf("inbox heading = %q", h)
	}
	// The redirect chain went through Hydra (Location headers as the browser saw them).
	var viaHydra, toCallback bool
	for _, loc := range rec.Locations() {
		viaHydra = viaHydra || strings.HasPrefix(loc, tb.Issuer+"/")
		toCallback = toCallback || strings.HasPrefix(loc, p.URL+"/callback?")
	}
	if !viaHydra || !toCallback {
		t.Errorf("redirects seen: through Hydra %v, to Postern's callback %v; want both", viaHydra, toCallback)
	}

	st := p.openStore(t)
	g := p.grantOf(t, st, "alice")
	if in := tb.introspect(t, g.RefreshToken); !in.Active || in.ClientID != tb.ClientID {
		t.Fatalf("refresh token at Hydra after the browser sign-in: active=%v client=%q, want active for %s", in.Active, in.ClientID, tb.ClientID)
	}

	// Sign out with the header's button.
	browsertest.Do(t, ctx, "sign out", chromedp.Click(chromedp.CSS(`header form[action="/logout"] button`)))
	browsertest.WaitTrue(t, ctx, "signed-out page",
		`location.href === `+strconv.Quote(p.URL+"/signed-out")+` && !!document.querySelector("main h1")`)
	if n := p.grantCount(t, st, "alice"); n != 0 {
		t.Errorf("grants for alice after sign-out = %d, want 0", n)
	}
	if in := tb.introspect(t, g.RefreshToken); in.Active {
		t.Error("refresh token still active at Hydra after sign-out")
	}

	rec.CheckQuiet(t)
	// Postern's shutdown (SIGTERM) is in the instance's cleanup; its log so far must hold no token.
	assertNoSecrets(t, "postern's log", p.Log(), g.AccessToken, g.RefreshToken, g.IDToken)
	assertNoSecrets(t, "hydra's log", hydraLog.since(t), g.AccessToken, g.RefreshToken, g.IDToken)
}
