package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// errorView is what a test reads off an error page.
type errorView struct {
	heading   string
	user      bool // the header names the signed-in user
	folders   bool // the folder list is there
	first     errorWay
	firstText string // the first link's text, tags removed
	links     []string
}

var (
	reHeading = regexp.MustCompile(`<h1 id="error-h">([^<]*)</h1>`)
	reRetry   = regexp.MustCompile(`<a href="([^"]*)" class="button" id="retry">(.*?)</a>`)
	reWays    = regexp.MustCompile(`(?s)<p class="error-ways">(.*?)</p>`)
	reHref    = regexp.MustCompile(`href="([^"]*)"`)
	reTag     = regexp.MustCompile(`<[^>]*>`)
)

func readErrorPage(t *testing.T, body, user string) errorView {
	t.Helper()
	var v errorView
	if m := reHeading.FindStringSubmatch(body); m != nil {
		v.heading = m[1]
	} else {
		t.Fatalf("not an error page: %.400s", body)
	}
	v.user = user != "" && strings.Contains(body, `<nav class="account"`) && strings.Contains(body, "<bdi>"+user+"</bdi>")
	v.folders = strings.Contains(body, `<nav class="folders" aria-label="Folders">`)
	if m := reRetry.FindStringSubmatch(body); m != nil {
		v.first = errorWay{URL: htmlUnescape(m[1])}
		v.firstText = strings.TrimSpace(reTag.ReplaceAllString(m[2], ""))
	} else {
		t.Fatalf("the error page has no first link (id=retry): %.600s", body)
	}
	if m := reWays.FindStringSubmatch(body); m != nil {
		for _, h := range reHref.FindAllStringSubmatch(m[1], -1) {
			v.links = append(v.links, htmlUnescape(h[1]))
		}
	}
	return v
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#39;", "'", "&quot;", `"`).Replace(s)
}

// TestErrorPagesInFrame: a signed-in user's error pages keep the app's frame (user, folders) and say in words what
// happened, with a first link that does what it says; signed out, the simple frame.
func TestErrorPagesInFrame(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	uid := u.appendMsg(t, "Projects", "bob@example.test", "filed", "x")

	t.Run("message gone", func(t *testing.T) {
		path := messagePath("INBOX", 999999)
		r := u.b.get(s.ts.URL + path)
		if r.status != http.StatusNotFound {
			t.Fatalf("GET %s = %d, want 404", path, r.status)
		}
		v := readErrorPage(t, r.body, u.addr)
		if !strings.Contains(r.body, "That message is no longer in Inbox — it may have been moved or deleted.") {
			t.Errorf("the page does not say where the message was: %.600s", r.body)
		}
		if !v.user || !v.folders {
			t.Errorf("user shown %v, folders shown %v; want both", v.user, v.folders)
		}
		if v.first.URL != "/mail/INBOX" || v.firstText != "Back to Inbox" {
			t.Errorf("first link = %q to %q, want \"Back to Inbox\" to /mail/INBOX", v.firstText, v.first.URL)
		}
		if strings.Contains(r.body, "Not Found") {
			t.Error("the page speaks HTTP (Not Found)")
		}
		if !strings.Contains(r.body, `aria-current="page"`) {
			t.Error("the folder list does not mark Inbox, the folder the message was in")
		}
	})

	t.Run("message gone from another folder", func(t *testing.T) {
		r := u.b.get(s.ts.URL + messagePath("Projects", uid+1000))
		v := readErrorPage(t, r.body, u.addr)
		if v.first.URL != "/mail/Projects" || v.firstText != "Back to Projects" {
			t.Errorf("first link = %q to %q, want \"Back to Projects\" to /mail/Projects", v.firstText, v.first.URL)
		}
	})

	t.Run("unknown address signed in", func(t *testing.T) {
		r := u.b.get(s.ts.URL + "/no/such/page")
		if r.status != http.StatusNotFound {
			t.Fatalf("GET /no/such/page = %d, want 404", r.status)
		}
		v := readErrorPage(t, r.body, u.addr)
		if !v.user || !v.folders {
			t.Errorf("user shown %v, folders shown %v; want both", v.user, v.folders)
		}
		if v.first.URL != "/mail/INBOX" || v.firstText != "Back to Inbox" {
			t.Errorf("first link = %q to %q, want the Inbox", v.firstText, v.first.URL)
		}
	})

	t.Run("unknown address signed out", func(t *testing.T) {
		r := newBrowser(t).get(s.ts.URL + "/no/such/page")
		v := readErrorPage(t, r.body, u.addr)
		if v.user || v.folders || strings.Contains(r.body, `<nav class="account"`) {
			t.Errorf("a signed-out error page shows the account (%v) or folders (%v)", v.user, v.folders)
		}
		if v.first.URL != "/" || v.firstText != "Go to the start page" {
			t.Errorf("first link = %q to %q, want the start page", v.firstText, v.first.URL)
		}
	})

	t.Run("refused form goes back to its page", func(t *testing.T) {
		post := func(form url.Values) (int, errorView) {
			t.Helper()
			req, _ := http.NewRequest(http.MethodPost, s.ts.URL+"/act", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Referer", s.ts.URL+"/mail/Projects?before=50")
			r := u.b.do(req)
			v := readErrorPage(t, r.body, u.addr)
			for _, l := range v.links {
				if strings.HasPrefix(l, "/act") {
					t.Errorf("the page links to %s, which cannot repeat a POST", l)
				}
			}
			return r.status, v
		}
		// The handler names the way back (the folder acted on): that wins.
		status, v := post(url.Values{"box": {"Projects"}, "op": {"move"}, "to": {"Gone"}, "uids": {strconv.Itoa(int(uid))}})
		if status != http.StatusNotFound || v.first.URL != "/mail/Projects" || v.firstText != "Back to Projects" {
			t.Errorf("move to a missing folder = %d, first link %q to %q; want 404, \"Back to Projects\"", status, v.firstText, v.first.URL)
		}
		// The handler offers only the Inbox: the page the form was on is the better way back.
		status, v = post(url.Values{"box": {"Gone"}, "op": {"read"}, "uids": {"1"}})
		if status != http.StatusNotFound || v.first.URL != "/mail/Projects?before=50" || v.firstText != "Back to Projects" {
			t.Errorf("act in a missing folder = %d, first link %q to %q; want 404, \"Back to Projects\" to the form's page", status, v.firstText, v.first.URL)
		}
	})

	// Last: it stops the mail server.
	t.Run("mail server down", func(t *testing.T) {
		s.mail.Close()
		s.pool.CloseKey(u.grant)
		r := u.b.get(s.ts.URL + "/mail/Projects?q=filed")
		if r.status != http.StatusBadGateway {
			t.Fatalf("GET with the mail server down = %d, want 502", r.status)
		}
		v := readErrorPage(t, r.body, u.addr)
		if !v.user {
			t.Error("the page does not show the signed-in user")
		}
		if v.folders {
			t.Error("the page shows folders, which it cannot have had from the mail server")
		}
		if v.first.URL != "/mail/Projects?q=filed" || v.firstText != "Try again" {
			t.Errorf("first link = %q to %q, want \"Try again\" to the same URL", v.firstText, v.first.URL)
		}
		if strings.Contains(r.body, "Bad Gateway") {
			t.Error("the page speaks HTTP (Bad Gateway)")
		}
	})
}

// TestErrorWays is the rule for the error page's links, case by case.
func TestErrorWays(t *testing.T) {
	public, _ := url.Parse("http://postern.test")
	// Paths with a GET page of their own, as the routes have them.
	isPage := func(p string) bool { return p == "/folders" || p == "/devices" }
	tests := []struct {
		name     string
		method   string
		target   string
		referer  string
		err      *Error
		signedIn bool
		want     []errorWay
	}{
		{"GET retry is try again", "GET", "/mail/INBOX?q=x", "",
			&Error{Status: 503, Retry: "/mail/INBOX?q=x"}, true,
			[]errorWay{{"Try again", "", "/mail/INBOX?q=x"}}},
		{"GET 5xx without Retry", "GET", "/folders", "",
			&Error{Status: 502}, true,
			[]errorWay{{"Try again", "", "/folders"}}},
		{"GET 5xx with a way back", "GET", "/msg/INBOX/3/part/2", "",
			&Error{Status: 502, Retry: "/msg/INBOX/3"}, true,
			[]errorWay{{"Try again", "", "/msg/INBOX/3/part/2"}, {"Back to the message", "", "/msg/INBOX/3"}}},
		{"404 back to folder", "GET", "/msg/Work%2F2026/9", "",
			&Error{Status: 404, Retry: mailboxURL("Work/2026")}, true,
			[]errorWay{{"Back to", "Work/2026", "/mail/Work/2026"}}},
		{"404 home signed in", "GET", "/nope", "",
			&Error{Status: 404, Retry: "/"}, true,
			[]errorWay{{"Back to", "Inbox", "/mail/INBOX"}}},
		{"404 home signed out", "GET", "/nope", "",
			&Error{Status: 404, Retry: "/"}, false,
			[]errorWay{{"Go to the start page", "", "/"}}},
		{"nothing offered", "GET", "/compose", "",
			&Error{Status: 507}, true,
			[]errorWay{{"Back to", "Inbox", "/mail/INBOX"}}},
		{"sign in again", "POST", "/act", "",
			&Error{Status: 401, Retry: "/login"}, false,
			[]errorWay{{"Sign in again", "", "/login"}}},
		{"POST never retried by a link", "POST", "/act", "",
			&Error{Status: 500, Retry: "/act"}, true,
			[]errorWay{{"Back to", "Inbox", "/mail/INBOX"}}},
		{"POST back to the form's page", "POST", "/act", "http://postern.test/mail/Junk",
			&Error{Status: 404, Retry: defaultReturnTo}, true,
			[]errorWay{{"Back to", "Junk", "/mail/Junk"}}},
		{"POST keeps a specific Retry", "POST", "/devices", "http://postern.test/mail/Junk",
			&Error{Status: 409, Retry: "/devices"}, true,
			[]errorWay{{"Back to Devices", "", "/devices"}}},
		{"foreign referer ignored", "POST", "/act", "http://evil.test/mail/Junk",
			&Error{Status: 404, Retry: defaultReturnTo}, true,
			[]errorWay{{"Back to", "Inbox", "/mail/INBOX"}}},
		{"referer to login ignored", "POST", "/folders", "http://postern.test/login?return_to=/x",
			&Error{Status: 400, Retry: "/folders"}, true,
			[]errorWay{{"Back to Manage folders", "", "/folders"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "http://postern.test"+tc.target, nil)
			if tc.referer != "" {
				r.Header.Set("Referer", tc.referer)
			}
			got := errorWays(r, public, isPage, tc.err, tc.signedIn)
			if !equalWays(got, tc.want) {
				t.Errorf("errorWays(%s %s, %d, Retry %q) = %v, want %v", tc.method, tc.target, tc.err.Status, tc.err.Retry, got, tc.want)
			}
		})
	}
}

func equalWays(a, b []errorWay) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFrameFolders: the error page asks the mail server for folders only when the mail side did not fail.
func TestFrameFolders(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   bool
	}{
		{400, true}, {403, true}, {404, true}, {409, true},
		{401, false}, {500, false}, {502, false}, {503, false}, {507, false},
	} {
		if got := frameFolders(&Error{Status: tc.status}); got != tc.want {
			t.Errorf("frameFolders(%d) = %v, want %v", tc.status, got, tc.want)
		}
	}
}
