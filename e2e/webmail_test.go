//go:build e2e

package e2e

import (
	"context"
	"errors"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/mail"
)

// inbox loads Postern's inbox page and fails unless it is the page itself
// (not a detour through sign-in, not an error page).
func (p *instance) inbox(ctx context.Context, t *testing.T, b *browser) string {
	t.Helper()
	resp, page := b.get(ctx, t, p.URL+"/mail/INBOX")
	if got := resp.Request.URL.String(); got != p.URL+"/mail/INBOX" || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mail/INBOX ended at %s with status %d, want the inbox page; page: %.300s", got, resp.StatusCode, visibleText(page))
	}
	return page
}

var tags = regexp.MustCompile(`(?s)<[^>]*>`)

// visibleText strips tags, for short failure messages.
func visibleText(page string) string {
	return strings.Join(strings.Fields(html.UnescapeString(tags.ReplaceAllString(page, " "))), " ")
}

// TestWebmailSignInInboxSignOut is the main user journey against the real
// peers: bob sends alice a message through Dovecot submission and Postfix;
// alice signs in to Postern through Hydra's login and consent pages; her
// inbox page lists the message; she signs out, after which Hydra reports her
// refresh token inactive and Dovecot refuses her old access token.
func TestWebmailSignInInboxSignOut(t *testing.T) {
	tb := peers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hydraLog := markLog(t, tb.HydraLog)

	bobTok := tb.directLogin(t, tb.postern(), "bob", "bob-password")
	subject := "e2e inbox " + randomString()[:8]
	if err := send(ctx, tb.mailServer(tb.SubmissionPort, mail.TLSImplicit, mail.MechOAuthBearer), bobTok.Access, subject); err != nil {
		t.Fatalf("deliver a message as bob: %v", err)
	}

	p := startPostern(t, tb, posternOptions{Listen: "127.0.0.1:18080", Client: tb.postern()})
	b := newBrowser(t)

	// Sign-in starts at the page the user asked for and comes back to it.
	resp, page := b.signInForm(ctx, t, p.URL+"/mail/INBOX", "alice", "alice-password")
	if got := resp.Request.URL.String(); got != p.URL+"/mail/INBOX" || resp.StatusCode != http.StatusOK {
		t.Fatalf("after sign-in: at %s with status %d, want %s/mail/INBOX with 200; page: %.300s", got, resp.StatusCode, p.URL, visibleText(page))
	}

	// Delivery through Postfix and LMTP is asynchronous; reload like a user.
	err := eventually(15*time.Second, 300*time.Millisecond, func() error {
		page = p.inbox(ctx, t, b)
		if !strings.Contains(page, html.EscapeString(subject)) {
			return errors.New("message not listed yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("inbox page does not list %q: %.500s", subject, visibleText(page))
	}
	if !strings.Contains(page, alice) {
		t.Errorf("inbox page does not show the signed-in address %s", alice)
	}
	if !strings.Contains(page, "Bob Tester") && !strings.Contains(page, bob) {
		t.Errorf("inbox page does not show the sender of %q", subject)
	}

	st := p.openStore(t)
	g := p.grantOf(t, st, "alice")
	if g.Email != alice || g.Username != "alice" || g.Name != "Alice Tester" {
		t.Errorf("grant identity = %q %q %q, want %s alice %q (from Hydra's userinfo)", g.Email, g.Username, g.Name, alice, "Alice Tester")
	}
	if g.State != store.StateOK {
		t.Errorf("grant state = %s, want ok", g.State)
	}
	if in := tb.introspect(t, g.RefreshToken); !in.Active || in.ClientID != tb.ClientID || in.Subject != "alice" {
		t.Fatalf("refresh token at Hydra before sign-out = %+v, want active for client %s, subject alice", in, tb.ClientID)
	}
	if in := tb.introspect(t, g.AccessToken); !in.Active {
		t.Fatalf("access token at Hydra before sign-out = %+v, want active", in)
	}

	// Sign out: a POST from the page's form.
	resp, _ = b.post(ctx, t, p.URL+"/logout", nil)
	if got := resp.Request.URL.Path; got != "/signed-out" || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /logout ended at %s with status %d, want /signed-out", resp.Request.URL, resp.StatusCode)
	}
	if n := p.grantCount(t, st, "alice"); n != 0 {
		t.Errorf("grants for alice after sign-out = %d, want 0", n)
	}
	if in := tb.introspect(t, g.RefreshToken); in.Active {
		t.Errorf("refresh token still active at Hydra after sign-out")
	}
	if in := tb.introspect(t, g.AccessToken); in.Active {
		t.Errorf("access token still active at Hydra after sign-out")
	}
	_, err = dial(ctx, tb.mailServer(tb.IMAPPort, mail.TLSImplicit, mail.MechOAuthBearer), mail.Credentials{Address: alice, Token: g.AccessToken})
	if !errors.Is(err, mail.ErrAuthFailed) {
		t.Errorf("IMAP login with the signed-out access token = %v, want mail.ErrAuthFailed", err)
	}
	resetPenalty(t, tb, mail.Credentials{Address: bob, Token: bobTok.Access})

	// The session is gone too: the inbox sends the browser to sign in.
	resp, _ = b.get(ctx, t, p.URL+"/mail/INBOX")
	if resp.Request.URL.Host == strings.TrimPrefix(p.URL, "http://") {
		t.Errorf("GET /mail/INBOX after sign-out stayed at %s (status %d), want a redirect to the IdP", resp.Request.URL, resp.StatusCode)
	}

	assertNoSecrets(t, "postern's log", p.Log(), g.AccessToken, g.RefreshToken, g.IDToken)
	assertNoSecrets(t, "hydra's log", hydraLog.since(t), g.AccessToken, g.RefreshToken, g.IDToken)
}

// TestWebmailRefreshRotation runs Postern with the postern-short client,
// whose access tokens live only TB_SHORT_TTL, and keeps viewing the inbox
// across several refreshes. Hydra rotates refresh tokens and revokes the
// whole grant when a spent one is presented again (as Authelia does), so the
// session only survives if Postern never re-uses one: at the end the last
// refresh token must still be active and Hydra's log must not mention
// re-use.
func TestWebmailRefreshRotation(t *testing.T) {
	tb := peers(t)
	const wantRefreshes = 3
	// Refreshes come at about half the access-token lifetime (page views and
	// the background refresher, which ticks every 5 s).
	budget := time.Duration(wantRefreshes+1)*tb.ShortTTL/2 + 15*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), budget+time.Minute)
	defer cancel()
	hydraLog := markLog(t, tb.HydraLog)

	p := startPostern(t, tb, posternOptions{
		Listen: "127.0.0.1:18081", Client: tb.short(),
		// At most half the token's life: a page view refreshes when less than
		// min(this/2, life/2) is left.
		RefreshBeforeExpiry: tb.ShortTTL,
	})
	b := newBrowser(t)
	resp, page := b.signInForm(ctx, t, p.URL+"/mail/INBOX", "alice", "alice-password")
	if got := resp.Request.URL.String(); got != p.URL+"/mail/INBOX" || resp.StatusCode != http.StatusOK {
		t.Fatalf("after sign-in: at %s with status %d, want the inbox; page: %.300s", got, resp.StatusCode, visibleText(page))
	}
	st := p.openStore(t)
	first := p.grantOf(t, st, "alice")
	if life := time.Until(first.AccessExpiry); life > tb.ShortTTL+time.Second {
		t.Fatalf("access token lives %v, want at most the client's %v (Hydra per-client lifespan)", life, tb.ShortTTL)
	}

	var (
		accessSeen  = []string{first.AccessToken}
		refreshSeen = []string{first.RefreshToken}
		idSeen      = []string{first.IDToken}
		views       int
		start       = time.Now()
	)
	for len(refreshSeen) <= wantRefreshes {
		if time.Since(start) > budget {
			t.Fatalf("only %d refreshes in %v (access tokens live %v)", len(refreshSeen)-1, budget, tb.ShortTTL)
		}
		p.inbox(ctx, t, b)
		views++
		g := p.grantOf(t, st, "alice")
		if g.State != store.StateOK {
			t.Fatalf("grant state = %s (%s) after %d views, want ok", g.State, g.LastError, views)
		}
		if g.RefreshToken != refreshSeen[len(refreshSeen)-1] {
			refreshSeen = append(refreshSeen, g.RefreshToken)
			accessSeen = append(accessSeen, g.AccessToken)
			idSeen = append(idSeen, g.IDToken)
			t.Logf("refresh %d after %v (access token valid for %v)", len(refreshSeen)-1, time.Since(start).Round(100*time.Millisecond), time.Until(g.AccessExpiry).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d page views, %d refreshes in %v", views, len(refreshSeen)-1, time.Since(start).Round(100*time.Millisecond))

	last := refreshSeen[len(refreshSeen)-1]
	if in := tb.introspect(t, last); !in.Active {
		t.Errorf("the current refresh token is inactive at Hydra: the grant was revoked (refresh-token re-use?)")
	}
	for i, rt := range refreshSeen[:len(refreshSeen)-1] {
		if in := tb.introspect(t, rt); in.Active {
			t.Errorf("refresh token %d is still active after rotation", i)
		}
	}
	logs := hydraLog.since(t)
	// Hydra logs "Refresh token re-use was detected" (reason "The refresh
	// token was already used") when a spent refresh token comes back.
	for _, bad := range []string{"re-use", "already used"} {
		if strings.Contains(strings.ToLower(logs), bad) {
			t.Errorf("hydra's log mentions %q during the test", bad)
		}
	}
	// One more view after the last refresh, on a pooled or new connection.
	p.inbox(ctx, t, b)

	secrets := append(append(append([]string{}, accessSeen...), refreshSeen...), idSeen...)
	assertNoSecrets(t, "postern's log", p.Log(), secrets...)
	assertNoSecrets(t, "hydra's log", logs, secrets...)
}
