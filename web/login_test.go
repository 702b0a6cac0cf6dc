package web

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/store"
)

func TestSignInShowsInbox(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	authURL := s.startLogin(b, "/mail/INBOX")
	if cookieOf(b, s, "postern_session_flow") == "" {
		t.Fatal("no flow cookie after /login: the flow must be bound to the browser")
	}
	if pre := sessionCookie(t, b, s); pre != "" {
		t.Fatal("a session cookie after an anonymous /login: nothing may be stored before sign-in")
	}
	cb, err := idp.SignIn(context.Background(), b.hc, authURL, "alice", "alice-password", true)
	if err != nil {
		t.Fatal(err)
	}
	if got := cb.Query().Get("iss"); got != s.idp.Issuer() {
		t.Errorf("callback iss = %q, want %q", got, s.idp.Issuer())
	}
	r := b.get(cb.String())
	if r.status != http.StatusSeeOther || r.location != "/mail/INBOX" {
		t.Fatalf("callback = %d to %q, want 303 to /mail/INBOX; body: %s", r.status, r.location, r.body)
	}
	if sessionCookie(t, b, s) == "" || cookieOf(b, s, "postern_session_flow") != "" {
		t.Error("after sign-in, want a session cookie and no flow cookie")
	}
	inbox := b.get(s.ts.URL + "/mail/INBOX")
	if inbox.status != http.StatusOK {
		t.Fatalf("GET /mail/INBOX = %d; body: %s", inbox.status, inbox.body)
	}
	for _, want := range []string{"alice@example.test", "data-uid=", `aria-current="page"><bdi>Inbox</bdi>`} {
		if !strings.Contains(inbox.body, want) {
			t.Errorf("inbox page lacks %q", want)
		}
	}
	if n := strings.Count(inbox.body, "data-uid="); n == 0 || n > 50 {
		t.Errorf("inbox shows %d messages, want 1..50", n)
	}
	// The cookie carries a signed id only: no token, no flow.
	for _, c := range b.hc.Jar.Cookies(mustURL(s.ts.URL)) {
		if len(c.Value) > 200 {
			t.Errorf("cookie %s is %d bytes: it should only carry a signed id", c.Name, len(c.Value))
		}
	}
}

func TestSessionCookieAttributes(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	authURL := s.startLogin(b, "/mail/INBOX")
	cb, err := idp.SignIn(context.Background(), b.hc, authURL, "alice", "alice-password", true)
	if err != nil {
		t.Fatal(err)
	}
	r := b.get(cb.String())
	for _, name := range []string{"postern_session_flow", "postern_session"} {
		t.Run(name, func(t *testing.T) {
			var c *http.Cookie
			for _, x := range (&http.Response{Header: r.header}).Cookies() {
				if x.Name == name {
					c = x
				}
			}
			if c == nil {
				t.Fatalf("no %s cookie set by the callback", name)
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
				t.Errorf("cookie HttpOnly=%v SameSite=%v Path=%q, want true, Lax, /", c.HttpOnly, c.SameSite, c.Path)
			}
			if c.Secure {
				t.Error("cookie is Secure on an http public URL; browsers would drop it")
			}
		})
	}
}

func TestInboxViewsReuseOneIMAPLogin(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	if r := s.signIn(b, "alice", "/mail/INBOX"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in callback = %d: %s", r.status, r.body)
	}
	before := s.idp.Stats().UserinfoRequests
	for i := 0; i < 20; i++ {
		if r := b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
			t.Fatalf("view %d = %d", i, r.status)
		}
	}
	calls := s.idp.Stats().UserinfoRequests - before
	t.Logf("20 inbox views cost %d userinfo call(s) at the IdP", calls)
	if calls > 1 {
		t.Errorf("20 inbox views cost %d userinfo calls, want at most 1", calls)
	}
	if st := s.pool.Stats(); st.Logins != 1 {
		t.Errorf("pool logins = %d, want 1", st.Logins)
	}
}

func TestLogoutRevokesAndClosesConnections(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	s.signIn(b, "alice", "/mail/INBOX")
	if r := b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
		t.Fatalf("inbox = %d", r.status)
	}
	ids, err := s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject("alice"))
	if err != nil || len(ids) != 1 {
		t.Fatalf("grants of alice = %v, %v; want one", ids, err)
	}
	g, err := s.store.Grant(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if !s.idp.Active(g.RefreshToken) || !s.idp.Active(g.AccessToken) {
		t.Fatal("tokens inactive before logout")
	}
	if open := s.pool.Stats().Open; open == 0 {
		t.Fatal("no pooled connection before logout")
	}

	r := b.post(s.ts.URL+"/logout", nil)
	if r.status != http.StatusSeeOther || r.location != "/signed-out" {
		t.Fatalf("POST /logout = %d to %q", r.status, r.location)
	}
	if s.idp.Active(g.RefreshToken) {
		t.Error("refresh token still active at the IdP after logout")
	}
	if s.idp.Active(g.AccessToken) {
		t.Error("access token still active at the IdP after logout")
	}
	if open := s.pool.Stats().Open; open != 0 {
		t.Errorf("pool has %d open connections after logout, want 0", open)
	}
	if _, err := s.store.Grant(context.Background(), ids[0]); err == nil {
		t.Error("grant still stored after logout")
	}
	if r := b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/login") {
		t.Errorf("inbox after logout = %d to %q, want a redirect to /login", r.status, r.location)
	}
	if r := b.get(s.ts.URL + "/signed-out"); r.status != http.StatusOK || !strings.Contains(r.body, "signed out") {
		t.Errorf("signed-out page = %d", r.status)
	}
}

func TestLogoutRefusesCrossSitePOST(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	s.signIn(b, "alice", "/mail/INBOX")
	req, _ := http.NewRequest(http.MethodPost, s.ts.URL+"/logout", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := b.do(req); r.status != http.StatusForbidden {
		t.Errorf("cross-site POST /logout = %d, want 403", r.status)
	}
	if r := b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
		t.Errorf("still signed in after a refused cross-site logout? inbox = %d", r.status)
	}
}

func TestTokensAreSealedAtRest(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	s.signIn(b, "alice", "/mail/INBOX")
	ids, _ := s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject("alice"))
	if len(ids) != 1 {
		t.Fatalf("grants = %v", ids)
	}
	g, err := s.store.Grant(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(s.dbPath + suffix)
		if err == nil {
			raw = append(raw, b...)
		}
	}
	if !bytes.Contains(raw, []byte("alice@example.test")) {
		t.Fatal("the email is not in the database files: the grep would prove nothing")
	}
	for name, tok := range map[string]string{"access": g.AccessToken, "refresh": g.RefreshToken, "id": g.IDToken} {
		if tok == "" {
			t.Errorf("%s token empty", name)
			continue
		}
		if bytes.Contains(raw, []byte(tok)) {
			t.Errorf("%s token found in clear in the database file", name)
		}
	}
}

func TestCallbackFailuresAreFriendly(t *testing.T) {
	s := newStack(t)
	tests := []struct {
		name   string
		mangle func(t *testing.T, b *browser, cb *url.URL) string
		want   string
	}{
		{"wrong state", func(t *testing.T, b *browser, cb *url.URL) string {
			q := cb.Query()
			// Change the first character, whatever it is: a fixed "x" left the state intact whenever it already
			// began with x (1 in 64).
			st := q.Get("state")
			if st == "" {
				t.Fatal("the IdP's callback carries no state")
			}
			first := "x"
			if st[0] == 'x' {
				first = "y"
			}
			q.Set("state", first+st[1:])
			cb.RawQuery = q.Encode()
			return cb.String()
		}, "sign in again"},
		{"wrong iss", func(t *testing.T, b *browser, cb *url.URL) string {
			q := cb.Query()
			q.Set("iss", "https://evil.example")
			cb.RawQuery = q.Encode()
			return cb.String()
		}, "sign in again"},
		{"no flow in this browser", func(t *testing.T, b *browser, cb *url.URL) string {
			b.hc.Jar, _ = newJar()
			return cb.String()
		}, "expired or was already used"},
		{"replayed callback", func(t *testing.T, b *browser, cb *url.URL) string {
			if r := b.get(cb.String()); r.status != http.StatusSeeOther {
				t.Fatalf("first callback = %d", r.status)
			}
			return cb.String()
		}, "expired or was already used"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			authURL := s.startLogin(b, "/mail/INBOX")
			cb, err := idp.SignIn(context.Background(), b.hc, authURL, "alice", "alice-password", true)
			if err != nil {
				t.Fatal(err)
			}
			r := b.get(tc.mangle(t, b, cb))
			if r.status != http.StatusBadRequest {
				t.Fatalf("callback = %d, want 400; body: %s", r.status, r.body)
			}
			if !strings.Contains(strings.ToLower(r.body), strings.ToLower(tc.want)) || !strings.Contains(r.body, `id="retry"`) {
				t.Errorf("error page lacks %q or a retry link: %s", tc.want, r.body)
			}
		})
	}
	t.Run("access denied", func(t *testing.T) {
		b := newBrowser(t)
		authURL := s.startLogin(b, "/mail/INBOX")
		cb, err := idp.SignIn(context.Background(), b.hc, authURL, "alice", "alice-password", false)
		if err != nil {
			t.Fatal(err)
		}
		if cb.Query().Get("error") != "access_denied" {
			t.Fatalf("IdP redirect = %s, want error=access_denied", cb.Query().Get("error"))
		}
		r := b.get(cb.String())
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, `id="retry"`) {
			t.Errorf("access_denied callback = %d: %s", r.status, r.body)
		}
	})
}

func TestSecurityHeaders(t *testing.T) {
	s := newStack(t)
	r := newBrowser(t).get(s.ts.URL + "/")
	want := map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "same-origin",
	}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	csp := r.header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self' " + s.idp.Issuer()} {
		if !strings.Contains(csp, d) {
			t.Errorf("CSP %q lacks %q", csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP allows inline script: %q", csp)
	}
}

func TestSignedOutUserIsSentToSignInAndBack(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	r := b.get(s.ts.URL + "/session")
	if r.status != http.StatusSeeOther || r.location != "/login?return_to=%2Fsession" {
		t.Fatalf("GET /session signed out = %d to %q", r.status, r.location)
	}
	cbResp := s.signIn(b, "alice", "/session")
	if cbResp.location != "/session" {
		t.Fatalf("after sign-in went to %q, want /session", cbResp.location)
	}
	page := b.get(s.ts.URL + "/session")
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="grant-state" class="state ok"`) {
		t.Errorf("session page = %d: %s", page.status, page.body)
	}
}

// TestSessionPageSaysWhy: a grant the keeper moved to needs_sign_in (here: a refresh whose answer was lost, which
// introspection showed had committed) says so in words on the Session page, not only as a state name.
func TestSessionPageSaysWhy(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	s.signIn(b, "alice", "/session")
	if page := b.get(s.ts.URL + "/session"); !strings.Contains(page.body, auth.ReasonOK.Message()) {
		t.Errorf("session page of a fresh grant lacks %q", auth.ReasonOK.Message())
	}
	ids, _ := s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject("alice"))
	g, err := s.store.Grant(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	g.State, g.LastError = store.StateNeedsSignIn, string(auth.ReasonRefreshSpent)
	if _, err := s.store.UpdateGrant(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	page := b.get(s.ts.URL + "/session")
	if !strings.Contains(page.body, `class="state needs_sign_in"`) || !strings.Contains(page.body, auth.ReasonRefreshSpent.Message()) {
		t.Errorf("session page of an ended grant = %d, want the state and %q:\n%s", page.status, auth.ReasonRefreshSpent.Message(), page.body)
	}
}

func TestEndedGrantLeadsToSignIn(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	s.signIn(b, "alice", "/mail/INBOX")
	if r := b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
		t.Fatalf("inbox = %d", r.status)
	}
	// The grant ends behind the user's back (revoked by an admin, refresh token expired…): the pooled IMAP connection
	// would still work, but the next view must lead through sign-in and back.
	ids, _ := s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject("alice"))
	for _, id := range ids {
		if err := s.store.DeleteGrant(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	r := b.get(s.ts.URL + "/mail/INBOX")
	if r.status != http.StatusSeeOther || r.location != "/login?return_to=%2Fmail%2FINBOX" {
		t.Fatalf("inbox with an ended grant = %d to %q; body %s", r.status, r.location, r.body)
	}
}

func sessionCookie(t *testing.T, b *browser, s *stack) string {
	t.Helper()
	return cookieOf(b, s, "postern_session")
}

func cookieOf(b *browser, s *stack, name string) string {
	for _, c := range b.hc.Jar.Cookies(mustURL(s.ts.URL)) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestSignInAgainRetiresTheOldGrant(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	s.signIn(b, "alice", "/session")
	ids, _ := s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject("alice"))
	if len(ids) != 1 {
		t.Fatalf("grants after first sign-in = %v", ids)
	}
	old, err := s.store.Grant(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	// "Sign in again" from the Session page, in the same browser.
	if r := s.signIn(b, "alice", "/session"); r.location != "/session" {
		t.Fatalf("second sign-in went to %q", r.location)
	}
	ids, _ = s.store.GrantsBySubject(context.Background(), s.idp.Issuer(), idp.Subject("alice"))
	if len(ids) != 1 || ids[0] == old.ID {
		t.Fatalf("grants after second sign-in = %v (old %s); want exactly one new grant", ids, old.ID)
	}
	if s.idp.Active(old.RefreshToken) {
		t.Error("the old grant's refresh token is still active at the IdP")
	}
}

// TestIdPOutageIsFriendlyAndRecovers: when the access token must be renewed while the IdP is down, the page says so
// in words (503, no error text), the grant survives, and the next view after the IdP returns works with no sign-in.
func TestIdPOutageIsFriendlyAndRecovers(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	s.signIn(b, "alice", "/mail/INBOX")
	ctx := context.Background()
	ids, _ := s.store.GrantsBySubject(ctx, s.idp.Issuer(), idp.Subject("alice"))
	if len(ids) != 1 {
		t.Fatalf("grants = %v", ids)
	}
	g, err := s.store.Grant(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	g.AccessExpiry = time.Now().Add(-time.Minute) // as if an hour had passed
	if _, err := s.store.UpdateGrant(ctx, g); err != nil {
		t.Fatal(err)
	}

	s.idp.SetDown(true)
	r := b.get(s.ts.URL + "/mail/INBOX")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "identity provider cannot be reached") {
		t.Fatalf("inbox with the IdP down = %d: %s", r.status, r.body)
	}
	if strings.Contains(r.body, "auth:") {
		t.Error("the page shows an internal error text")
	}

	// While the keeper backs off, further views do not hammer the IdP; they get the same page.
	if n := s.idp.Stats().RefusedWhileDown; n != 1 {
		t.Errorf("the first view during the outage sent %d requests to the IdP, want 1 refresh attempt", n)
	}
	if r := b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("second view during the outage = %d", r.status)
	}
	if n := s.idp.Stats().RefusedWhileDown; n != 1 {
		t.Errorf("a view during the backoff reached the IdP (%d requests in all), want none", n-1)
	}

	s.idp.SetDown(false)
	// The backoff ends (the refresher, Run, would retry then by itself): the next view renews the token.
	cur, err := s.store.Grant(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur.NextRefreshAt = time.Now()
	if _, err := s.store.UpdateGrant(ctx, cur); err != nil {
		t.Fatal(err)
	}
	r = b.get(s.ts.URL + "/mail/INBOX")
	if r.status != http.StatusOK {
		t.Fatalf("inbox after the IdP returned = %d (location %q): %s", r.status, r.location, r.body)
	}
	if st := s.idp.Stats(); st.RefreshReuses != 0 || st.FamilyRevocations != 0 {
		t.Errorf("IdP saw %d refresh-token reuses and %d family revocations, want 0", st.RefreshReuses, st.FamilyRevocations)
	}
}

// TestSignInWarmsTheIMAPConnection: with Config.WarmOnSignIn the callback starts the grant's IMAP login in the
// background; the first page either finds that connection idle or joins its dial, so sign-in and first page cost one
// login together, and the connection is open before the first page is asked for.
func TestSignInWarmsTheIMAPConnection(t *testing.T) {
	s := newStack(t, withWarmOnSignIn())
	b := newBrowser(t)
	if r := s.signIn(b, "alice", "/mail/INBOX"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in callback = %d: %s", r.status, r.body)
	}
	// Nothing has asked for a page yet: the login is the warm-up's.
	deadline := time.Now().Add(10 * time.Second)
	for s.pool.Stats().Idle != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no idle IMAP connection 10 s after sign-in: %+v", s.pool.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := b.get(s.ts.URL + "/mail/INBOX"); r.status != http.StatusOK {
		t.Fatalf("inbox = %d", r.status)
	}
	if st := s.pool.Stats(); st.Logins != 1 || st.Reuses != 1 {
		t.Errorf("pool = %+v, want 1 login (the warm-up's) and the first page reusing it", st)
	}
}
