package web

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/mail"
)

// settingsValues is a complete, valid settings form; kv pairs change what a test needs.
func settingsValues(kv ...string) url.Values {
	v := url.Values{"display_name": {""}, "signature": {""}, "time_zone": {""}, "page_size": {"0"}, "conversations": {"on"}, "remote_senders": {""}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// saveSettings posts the settings form and expects it saved.
func saveSettings(t *testing.T, s *stack, b *browser, v url.Values) {
	t.Helper()
	if r := b.post(s.ts.URL+"/settings", v); r.status != http.StatusSeeOther || r.location != "/settings" {
		t.Fatalf("POST /settings = %d to %q, want 303 to /settings: %s", r.status, r.location, r.body)
	}
}

func aliceSettings(t *testing.T, s *stack) store.Settings {
	t.Helper()
	st, err := s.store.Settings(context.Background(), s.idp.Issuer(), idp.Subject("alice"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSettingsPage: the form shows the defaults, saves with a notice shown once, refuses invalid values with the
// problem next to each field (keeping what was typed and storing nothing), and refuses a cross-site POST.
func TestSettingsPage(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")

	r := u.b.get(s.ts.URL + "/settings")
	if r.status != http.StatusOK {
		t.Fatalf("GET /settings = %d: %s", r.status, r.body)
	}
	for _, want := range []string{`<label for="display_name">`, `<label for="signature">`, `<label for="time_zone">`,
		`<label for="page_size">`, `<label for="conversations">`, `<label for="remote_senders">`,
		`placeholder="Alice Liddell"`, `id="conversations" name="conversations" checked`, `<option value="0" selected>Server default (50)</option>`,
		`href="/settings" id="nav-settings"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("settings page lacks %q", want)
		}
	}

	saveSettings(t, s, u.b, settingsValues("display_name", "Alice in Wonderland", "signature", "Alice\r\nRabbit hole 1",
		"time_zone", "Europe/Berlin", "page_size", "25", "conversations", "", "remote_senders", "News@Shop.Example\nexample.org"))
	r = u.b.get(s.ts.URL + "/settings")
	for _, want := range []string{`id="notice-text">Your settings are saved.`, `value="Alice in Wonderland"`, "\nAlice\nRabbit hole 1</textarea>",
		`value="Europe/Berlin"`, `<option value="25" selected>`, "\nnews@shop.example\nexample.org</textarea>"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("settings page after saving lacks %q", want)
		}
	}
	if strings.Contains(r.body, `name="conversations" checked`) {
		t.Error("conversations still checked after saving it off")
	}
	if r := u.b.get(s.ts.URL + "/settings"); strings.Contains(r.body, "Your settings are saved.") {
		t.Error("the notice shows again on reload")
	}
	st := aliceSettings(t, s)
	if st.DisplayName != "Alice in Wonderland" || st.Signature != "Alice\nRabbit hole 1" || st.TimeZone != "Europe/Berlin" ||
		st.PageSize != 25 || st.Conversations || strings.Join(st.RemoteSenders, ",") != "news@shop.example,example.org" {
		t.Errorf("stored settings = %+v", st)
	}

	bad := settingsValues("display_name", "Eve\nBcc: all@example.org", "time_zone", "Mars/Base", "page_size", "7",
		"remote_senders", "not a sender")
	r = u.b.post(s.ts.URL+"/settings", bad)
	if r.status != http.StatusBadRequest {
		t.Fatalf("POST /settings (invalid) = %d, want 400", r.status)
	}
	for _, f := range []string{"display_name", "time_zone", "page_size", "remote_senders"} {
		if !strings.Contains(r.body, `<p class="field-problem" id="`+f+`-problem">`) {
			t.Errorf("no problem shown next to %s", f)
		}
	}
	for _, want := range []string{`role="alert" id="problem"`, `aria-invalid="true"`, `value="Mars/Base"`,
		"is not a time zone this server knows", "“not a sender” is neither a mail address"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("refused form lacks %q", want)
		}
	}
	if got := aliceSettings(t, s); got.DisplayName != "Alice in Wonderland" || got.TimeZone != "Europe/Berlin" {
		t.Errorf("a refused form changed the stored settings: %+v", got)
	}

	req, _ := http.NewRequest(http.MethodPost, s.ts.URL+"/settings", strings.NewReader(settingsValues("display_name", "Mallory").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := u.b.do(req); r.status != http.StatusForbidden {
		t.Errorf("cross-site POST /settings = %d, want 403", r.status)
	}
	if got := aliceSettings(t, s); got.DisplayName != "Alice in Wonderland" {
		t.Errorf("a cross-site POST changed the display name to %q", got.DisplayName)
	}

	if r := newBrowser(t).get(s.ts.URL + "/settings"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/login") {
		t.Errorf("GET /settings signed out = %d to %q, want the sign-in", r.status, r.location)
	}
}

// TestSettingsNameAndSignature: the display name is the From name of sent mail, as delivered at the mail server;
// the signature starts a new message below "-- ", and not a reply.
func TestSettingsNameAndSignature(t *testing.T) {
	s := newStack(t)
	alice := signedInAs(t, s, "alice")
	signedInAs(t, s, "bob")
	saveSettings(t, s, alice.b, settingsValues("display_name", "Alice in Wonderland", "signature", "Alice\nDown the rabbit hole"))

	r := alice.b.get(s.ts.URL + "/compose")
	f := formFields(t, r.body)
	if want := "\n\n-- \nAlice\nDown the rabbit hole"; f["body"] != want {
		t.Errorf("new message body = %q, want %q", f["body"], want)
	}
	f["to"], f["subject"], f["body"] = "bob@example.test", "Tea party", "Six o'clock."+f["body"]
	if r := alice.b.postMultipart(s.ts.URL+"/send", fieldList(f), nil); r.status != http.StatusSeeOther {
		t.Fatalf("POST /send = %d: %s", r.status, r.body)
	}
	got, ok := findBySubject(t, s, "bob@example.test", "INBOX", "Tea party")
	if !ok {
		t.Fatal("the message did not arrive")
	}
	h := header(t, got.Raw)
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Alice in Wonderland" || from[0].Address != "alice@example.test" {
		t.Errorf("delivered From = %q, want Alice in Wonderland <alice@example.test>", h.Get("From"))
	}
	if !strings.Contains(string(got.Raw), "--=20\r\nAlice\r\nDown the rabbit hole") && !strings.Contains(string(got.Raw), "-- \r\nAlice\r\nDown the rabbit hole") {
		t.Errorf("the delivered message lacks the signature block:\n%s", got.Raw)
	}

	orig := alice.appendMsg(t, "INBOX", "Bob Marley <bob@example.test>", "Hello", "Hi Alice")
	r = alice.b.get(s.ts.URL + "/compose?reply=" + url.QueryEscape(fmt.Sprintf("INBOX/%d", orig)))
	if body := formFields(t, r.body)["body"]; strings.Contains(body, "rabbit hole") {
		t.Errorf("reply body = %q, want no signature", body)
	}

	// Without a name of their own, the IdP's name is used.
	saveSettings(t, s, alice.b, settingsValues())
	f = formFields(t, alice.b.get(s.ts.URL+"/compose").body)
	if f["body"] != "" {
		t.Errorf("new message body without a signature = %q, want empty", f["body"])
	}
	f["to"], f["subject"], f["body"] = "bob@example.test", "Second", "x"
	alice.b.postMultipart(s.ts.URL+"/send", fieldList(f), nil)
	if got, ok := findBySubject(t, s, "bob@example.test", "INBOX", "Second"); !ok {
		t.Error("the second message did not arrive")
	} else if from, _ := header(t, got.Raw).AddressList("From"); len(from) != 1 || from[0].Name != "Alice Liddell" {
		t.Errorf("From without a display name = %v, want the IdP's Alice Liddell", from)
	}
}

// TestSettingsPageSize: the list shows as many rows as the user chose.
func TestSettingsPageSize(t *testing.T) {
	s := newStack(t)
	u := signedInAs(t, s, "alice")
	const n = 60
	u.imap(t, func(ctx context.Context, ms *mail.Session) error {
		if err := ms.CreateMailbox(ctx, "Bulk"); err != nil {
			return err
		}
		for i := range n {
			if err := ms.Append(ctx, "Bulk", nil, testMessage("bob@example.test", u.addr, fmt.Sprintf("bulk %02d", i), "x")); err != nil {
				return err
			}
		}
		return nil
	})
	for _, c := range []struct {
		size string
		want int
	}{{"0", 50}, {"25", 25}, {"100", n}, {"0", 50}} {
		saveSettings(t, s, u.b, settingsValues("page_size", c.size))
		if got := len(pageUIDs(u.b.get(s.ts.URL + "/mail/Bulk").body)); got != c.want {
			t.Errorf("rows with page size %s = %d, want %d", c.size, got, c.want)
		}
	}
}

// TestSettingsRemoteSenders: "Always show from …" puts the sender on the list, after which the message shows its
// remote content without asking; other senders stay blocked.
func TestSettingsRemoteSenders(t *testing.T) {
	rd := newReader(t)
	uid := rd.deliver(t, "INBOX", []byte(htmlWithImage))
	self := messagePath("INBOX", uid)
	other := rd.deliver(t, "INBOX", []byte(strings.Replace(strings.Replace(htmlWithImage, "team@example.org", "spam@other.example", 1),
		"<html-image@example.org>", "<other@other.example>", 1)))

	r := rd.get(t, self)
	for _, want := range []string{`action="/settings/remote-senders"`, fmt.Sprintf(`name="msg" value="INBOX/%d"`, uid),
		`Always show from <bdi>team@example.org</bdi>`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("message page lacks %q", want)
		}
	}
	p := rd.b.post(rd.s.ts.URL+"/settings/remote-senders", url.Values{"msg": {fmt.Sprintf("INBOX/%d", uid)}})
	if p.status != http.StatusSeeOther || p.location != self {
		t.Fatalf("POST /settings/remote-senders = %d to %q, want 303 to %s", p.status, p.location, self)
	}
	r = rd.get(t, self)
	if !strings.Contains(r.body, `src="`+self+`/html?remote=1"`) || strings.Contains(r.body, `id="show-remote"`) {
		t.Errorf("an allowlisted sender's message does not show remote content:\n%s", r.body)
	}
	for _, want := range []string{"Remote content from team@example.org is now always shown.", `id="remote-trusted"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("message page after allowing lacks %q", want)
		}
	}
	if r := rd.get(t, messagePath("INBOX", other)); !strings.Contains(r.body, `id="show-remote"`) || strings.Contains(r.body, "html?remote=1") {
		t.Error("another sender's remote content is shown too")
	}
	if st, _ := rd.s.store.Settings(context.Background(), rd.s.idp.Issuer(), idp.Subject("alice")); strings.Join(st.RemoteSenders, ",") != "team@example.org" {
		t.Errorf("stored remote senders = %v, want [team@example.org]", st.RemoteSenders)
	}
	// The form names a message, never a sender or a place to go.
	if p := rd.b.post(rd.s.ts.URL+"/settings/remote-senders", url.Values{"msg": {"nonsense"}}); p.status != http.StatusBadRequest {
		t.Errorf("POST with a bad message reference = %d, want 400", p.status)
	}
}

// TestSettingsTimeZone: times show in UTC without a hint, in the browser's zone from its cookie (a bogus one is
// ignored), and in the chosen zone over both; never as a bare offset.
func TestSettingsTimeZone(t *testing.T) {
	rd := newReader(t)
	uid := rd.deliver(t, "INBOX", []byte(htmlWithImage)) // Date: Fri, 20 Nov 2026 10:00:00 +0000
	self := messagePath("INBOX", uid)
	u, _ := url.Parse(rd.s.ts.URL)
	setTZ := func(v string) { rd.b.hc.Jar.SetCookies(u, []*http.Cookie{{Name: tzCookie, Value: v, Path: "/"}}) }
	date := func() string {
		body := rd.get(t, self).body
		i := strings.Index(body, `<dd id="msg-date">`)
		if i < 0 {
			t.Fatalf("no date on the message page")
		}
		j := strings.Index(body[i:], "</dd>")
		return html.UnescapeString(body[i+len(`<dd id="msg-date">`) : i+j])
	}
	check := func(name, want string) {
		t.Helper()
		if got := date(); !strings.Contains(got, want) || strings.Contains(got, "+0000") {
			t.Errorf("%s: date = %q, want %q", name, got, want)
		}
	}
	check("no hint", "Fri, 20 Nov 2026 10:00 (UTC)")
	setTZ("America/New_York")
	check("browser cookie", "Fri, 20 Nov 2026 05:00 (America/New_York)")
	setTZ("../../../etc/passwd")
	check("bogus cookie", "Fri, 20 Nov 2026 10:00 (UTC)")
	setTZ("America/New_York")
	saveSettings(t, rd.s, rd.b, settingsValues("time_zone", "Asia/Tokyo"))
	check("setting", "Fri, 20 Nov 2026 19:00 (Asia/Tokyo)")

	// The list and the account page follow the same zone.
	list := rd.get(t, "/mail/INBOX").body
	if !strings.Contains(list, `title="Fri, 20 Nov 2026 19:00 (Asia/Tokyo)"`) {
		t.Errorf("list row lacks the full local time in its title")
	}
	if acct := rd.get(t, "/session").body; !strings.Contains(acct, "(Asia/Tokyo)") || strings.Contains(acct, "+0000") {
		t.Errorf("account page times are not in the chosen zone")
	}
}

// TestAccountPage: plain words, Sign out as the main action, the token details folded away.
func TestAccountPage(t *testing.T) {
	s := newStack(t, withBridge(testBridge))
	u := signedInAs(t, s, "alice")
	r := u.b.get(s.ts.URL + "/session")
	if r.status != http.StatusOK {
		t.Fatalf("GET /session = %d", r.status)
	}
	for _, want := range []string{`You are signed in as <strong><bdi>Alice Liddell</bdi></strong> (alice@example.test)`,
		`<button type="submit" class="button" id="account-sign-out">Sign out</button>`, `href="/settings" id="settings-link"`,
		`href="/devices" id="devices-link"`, `<details class="technical" id="technical">`, `<summary>Technical details</summary>`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	tech := r.body[strings.Index(r.body, `<details class="technical"`):]
	if !strings.Contains(tech, `id="grant-state"`) || strings.Contains(r.body[:strings.Index(r.body, `<details`)], "grant-state") {
		t.Error("the grant state is not inside Technical details")
	}
	if strings.Contains(r.body, `class="button" href="/login`) || strings.Contains(r.body, `id="account-attention"`) {
		t.Error("Sign in again is a main button on a healthy account")
	}
	if !strings.Contains(r.body, `<span id="device-summary">None connected yet.</span>`) {
		t.Error("the account page does not say that no device is connected")
	}
	s.connectDevice(u.b, "alice", "iPhone")
	if r := u.b.get(s.ts.URL + "/session"); !strings.Contains(r.body, `<span id="device-summary">Connected now: <bdi>iPhone</bdi>.</span>`) {
		t.Error("the account page does not name the connected device")
	}
}

func TestClockFormats(t *testing.T) {
	berlin, _ := store.TimeZone("Europe/Berlin")
	// Thursday 3 December 2026, 14:05 in Berlin (13:05 UTC).
	now := time.Date(2026, 12, 3, 14, 5, 0, 0, berlin)
	c := clock{loc: berlin, now: now}
	for _, tc := range []struct {
		name      string
		t         time.Time
		short     string
		long      string
		attribute string
	}{
		{"today", time.Date(2026, 12, 3, 8, 30, 0, 0, time.UTC), "09:30", "Thu, 3 Dec 2026 09:30 (Europe/Berlin)", "2026-12-03T08:30:00Z"},
		{"today early, yesterday in UTC", time.Date(2026, 12, 2, 23, 30, 0, 0, time.UTC), "00:30", "Thu, 3 Dec 2026 00:30 (Europe/Berlin)", "2026-12-02T23:30:00Z"},
		{"yesterday", time.Date(2026, 12, 2, 20, 0, 0, 0, berlin), "Yesterday", "Wed, 2 Dec 2026 20:00 (Europe/Berlin)", "2026-12-02T19:00:00Z"},
		{"this week", time.Date(2026, 11, 30, 9, 0, 0, 0, berlin), "Mon", "Mon, 30 Nov 2026 09:00 (Europe/Berlin)", "2026-11-30T08:00:00Z"},
		{"six days ago", time.Date(2026, 11, 27, 9, 0, 0, 0, berlin), "Fri", "Fri, 27 Nov 2026 09:00 (Europe/Berlin)", "2026-11-27T08:00:00Z"},
		{"a week ago", time.Date(2026, 11, 26, 9, 0, 0, 0, berlin), "26 Nov", "Thu, 26 Nov 2026 09:00 (Europe/Berlin)", "2026-11-26T08:00:00Z"},
		{"across the DST change", time.Date(2026, 3, 3, 12, 0, 0, 0, berlin), "3 Mar", "Tue, 3 Mar 2026 12:00 (Europe/Berlin)", "2026-03-03T11:00:00Z"},
		{"last year", time.Date(2025, 3, 3, 12, 0, 0, 0, berlin), "3 Mar 2025", "Mon, 3 Mar 2025 12:00 (Europe/Berlin)", "2025-03-03T11:00:00Z"},
		{"tomorrow (a clock ahead)", time.Date(2026, 12, 4, 9, 0, 0, 0, berlin), "4 Dec", "Fri, 4 Dec 2026 09:00 (Europe/Berlin)", "2026-12-04T08:00:00Z"},
		{"next year", time.Date(2027, 1, 2, 9, 0, 0, 0, berlin), "2 Jan 2027", "Sat, 2 Jan 2027 09:00 (Europe/Berlin)", "2027-01-02T08:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.Short(tc.t); got != tc.short {
				t.Errorf("Short(%v) = %q, want %q", tc.t, got, tc.short)
			}
			if got := c.Long(tc.t); got != tc.long {
				t.Errorf("Long(%v) = %q, want %q", tc.t, got, tc.long)
			}
			want := `<time datetime="` + tc.attribute + `" title="` + tc.long + `">` + tc.short + `</time>`
			if got := string(c.List(tc.t)); got != want {
				t.Errorf("List(%v) = %s, want %s", tc.t, got, want)
			}
		})
	}
	// Yesterday counted by the calendar across a 25-hour day (the end of summer time on 25 October 2026).
	autumn := clock{loc: berlin, now: time.Date(2026, 10, 26, 0, 30, 0, 0, berlin)}
	if got := autumn.Short(time.Date(2026, 10, 25, 0, 10, 0, 0, berlin)); got != "Yesterday" {
		t.Errorf("Short(the day before, across DST) = %q, want Yesterday", got)
	}
	var zero clock
	if got := zero.Long(time.Date(2026, 12, 3, 13, 5, 0, 0, time.UTC)); got != "Thu, 3 Dec 2026 13:05 (UTC)" {
		t.Errorf("zero clock Long = %q, want UTC", got)
	}
	if zero.Short(time.Time{}) != "" || zero.List(time.Time{}) != "" || zero.Since(time.Time{}) != "never" {
		t.Error("the zero time is not blank (never, for Since)")
	}
}
