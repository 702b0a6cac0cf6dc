package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/html"
)

// Targets are the messages the scenarios use, found over IMAP before the run (Find).
type Targets struct {
	Newest          uint32 // UID of the newest INBOX message
	Plain, HTML     uint32 // UIDs of a text/plain and a text/html message near the top
	SearchSubject   string // a subject word that matches a few hundred messages
	MoveFrom, Store string // the folder messages are moved between
	// SendTo receives the messages sent: another account, so that alice's INBOX stays the same for both webmails.
	SendTo string
}

// Webmail is one of the two webmails as a user drives it. A value is one signed-in user; New makes another.
type Webmail interface {
	Name() string
	// SignIn goes from nothing to the first inbox page.
	SignIn(ctx context.Context) error
	Inbox(ctx context.Context) error
	NextPage(ctx context.Context) error
	OpenPlain(ctx context.Context) error
	OpenHTML(ctx context.Context) error
	Search(ctx context.Context) error
	// Move moves one message to the other folder and back (two moves, one counted operation of two requests).
	Move(ctx context.Context, uid uint32) error
	Send(ctx context.Context, attachment []byte) error
	// Requests is the number of HTTP requests made so far (page views for the IMAP-login ratio).
	Requests() int64
}

// browser is an HTTP client with cookies that does not follow redirects by itself.
type browser struct {
	hc   *http.Client
	reqs atomic.Int64
}

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{hc: &http.Client{
		Jar:     jar,
		Timeout: 120 * time.Second,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends req and follows redirects (GET) up to 10 times, returning the last response's status and body.
func (b *browser) do(req *http.Request) (int, string, *url.URL, error) {
	for range 10 {
		b.reqs.Add(1)
		resp, err := b.hc.Do(req)
		if err != nil {
			return 0, "", nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, "", nil, err
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode/100 != 3 || loc == "" {
			return resp.StatusCode, string(body), req.URL, nil
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			return 0, "", nil, err
		}
		req, _ = http.NewRequestWithContext(req.Context(), http.MethodGet, next.String(), nil)
	}
	return 0, "", nil, errors.New("too many redirects")
}

func (b *browser) get(ctx context.Context, u string, hdr ...string) (int, string, *url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func (b *browser) post(ctx context.Context, u string, form url.Values, hdr ...string) (int, string, *url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func (b *browser) postMultipart(ctx context.Context, u string, fields url.Values, fileField, fileName string, file []byte, hdr ...string) (int, string, *url.URL, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, vs := range fields {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	if fileField != "" {
		fw, _ := mw.CreateFormFile(fileField, fileName)
		fw.Write(file)
	}
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, &buf)
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func want(what string, status int, body string, err error, ok int, mustContain string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if status != ok {
		return fmt.Errorf("%s: status %d, want %d: %.300s", what, status, ok, body)
	}
	if mustContain != "" && !strings.Contains(body, mustContain) {
		return fmt.Errorf("%s: answer lacks %q: %.300s", what, mustContain, body)
	}
	return nil
}

// form is the first form of an HTML page: its action and its input values.
type form struct {
	action string
	values url.Values
}

func parseForm(page string) (form, error) {
	f := form{values: url.Values{}}
	z := html.NewTokenizer(strings.NewReader(page))
	in := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			if !in {
				return f, errors.New("no form in page")
			}
			return f, nil
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			attr := func(k string) string {
				for _, a := range t.Attr {
					if a.Key == k {
						return a.Val
					}
				}
				return ""
			}
			switch {
			case t.Data == "form" && !in:
				in, f.action = true, attr("action")
			case t.Data == "input" && in && attr("name") != "":
				f.values.Set(attr("name"), attr("value"))
			case t.Data == "button" && in && attr("name") != "" && !f.values.Has(attr("name")):
				f.values.Set(attr("name"), attr("value")) // the first button: "accept" on a consent page
			}
		case html.EndTagToken:
			if t := z.Token(); t.Data == "form" && in {
				return f, nil
			}
		}
	}
}

// Postern drives Postern: sign-in through the IdP's login page, then plain GETs and form POSTs.
type Postern struct {
	Base, User, Password string
	T                    *Targets
	b                    *browser
}

// NewPostern returns a user of Postern at base who signs in at the IdP as user.
func NewPostern(base, user, password string, t *Targets) *Postern {
	return &Postern{Base: base, User: user, Password: password, T: t, b: newBrowser()}
}

// Name implements Webmail.
func (p *Postern) Name() string { return "Postern" }

// Share returns another user of the same signed-in browser session. Postern keeps at most 10 grants per user
// (auth.Options.MaxGrantsPerUser) and every virtual user of the benchmark is the same account, so above 10 users
// the sessions are shared; each request still runs on its own pooled IMAP connection (the bench raises the pool's
// per-user cap to the number of users, as if they were different accounts).
func (p *Postern) Share() *Postern { q := *p; return &q }

// Requests implements Webmail.
func (p *Postern) Requests() int64 { return p.b.reqs.Load() }

// SignIn implements Webmail: /mail/INBOX redirects to the IdP, whose login page (loginconsent) posts back, consent
// is granted without a page (skip_consent is off but loginconsent accepts at once), and the callback lands on the
// inbox.
func (p *Postern) SignIn(ctx context.Context) error {
	p.b = newBrowser()
	st, page, at, err := p.b.get(ctx, p.Base+"/mail/INBOX")
	if err := want("postern: login page", st, page, err, http.StatusOK, ""); err != nil {
		return err
	}
	f, err := parseForm(page)
	if err != nil {
		return fmt.Errorf("postern: login page: %w", err)
	}
	action, _ := at.Parse(f.action)
	f.values.Set("username", p.User)
	f.values.Set("password", p.Password)
	st, page, at, err = p.b.post(ctx, action.String(), f.values)
	// A consent page (the dev IdP's; the testbed's loginconsent accepts at once): accept.
	for i := 0; i < 2 && err == nil && st == http.StatusOK && !strings.Contains(page, "/msg/INBOX/"); i++ {
		if f, err = parseForm(page); err != nil {
			break
		}
		action, _ = at.Parse(f.action)
		st, page, at, err = p.b.post(ctx, action.String(), f.values)
	}
	return want("postern: sign-in", st, page, err, http.StatusOK, "/msg/INBOX/")
}

// Inbox implements Webmail.
func (p *Postern) Inbox(ctx context.Context) error {
	st, page, _, err := p.b.get(ctx, p.Base+"/mail/INBOX")
	return want("postern: inbox", st, page, err, http.StatusOK, "/msg/INBOX/")
}

// NextPage implements Webmail.
func (p *Postern) NextPage(ctx context.Context) error {
	st, page, _, err := p.b.get(ctx, fmt.Sprintf("%s/mail/INBOX?before=%d", p.Base, p.T.Newest-49))
	return want("postern: next page", st, page, err, http.StatusOK, "/msg/INBOX/")
}

// OpenPlain implements Webmail.
func (p *Postern) OpenPlain(ctx context.Context) error {
	st, page, _, err := p.b.get(ctx, fmt.Sprintf("%s/msg/INBOX/%d", p.Base, p.T.Plain))
	return want("postern: plain message", st, page, err, http.StatusOK, "")
}

// OpenHTML implements Webmail: the message page and the sandboxed frame the browser then loads.
func (p *Postern) OpenHTML(ctx context.Context) error {
	st, page, _, err := p.b.get(ctx, fmt.Sprintf("%s/msg/INBOX/%d", p.Base, p.T.HTML))
	if err := want("postern: html message", st, page, err, http.StatusOK, "/html"); err != nil {
		return err
	}
	st, page, _, err = p.b.get(ctx, fmt.Sprintf("%s/msg/INBOX/%d/html", p.Base, p.T.HTML))
	return want("postern: html frame", st, page, err, http.StatusOK, "")
}

// Search implements Webmail.
func (p *Postern) Search(ctx context.Context) error {
	st, page, _, err := p.b.get(ctx, p.Base+"/mail/INBOX?subject="+url.QueryEscape(p.T.SearchSubject))
	return want("postern: search", st, page, err, http.StatusOK, "/msg/INBOX/")
}

// Move implements Webmail.
func (p *Postern) Move(ctx context.Context, uid uint32) error {
	h := []string{"Origin", p.Base}
	st, page, _, err := p.b.post(ctx, p.Base+"/act", url.Values{"box": {p.T.MoveFrom}, "uids": {fmt.Sprint(uid)}, "op": {"move"}, "to": {p.T.Store}}, h...)
	return want("postern: move", st, page, err, http.StatusOK, "")
}

// SetConversations saves the user's Settings with conversations on or off and everything else at its default (the
// bench user has no other setting).
func (p *Postern) SetConversations(ctx context.Context, on bool) error {
	f := url.Values{"display_name": {""}, "signature": {""}, "time_zone": {""}, "page_size": {"0"}, "remote_senders": {""}}
	if on {
		f.Set("conversations", "on")
	}
	st, page, _, err := p.b.post(ctx, p.Base+"/settings", f, "Origin", p.Base)
	if err := want("postern: settings", st, page, err, http.StatusOK, ""); err != nil {
		return err
	}
	if !strings.Contains(page, `id="notice"`) {
		return fmt.Errorf("postern: settings: not saved: %.300s", page)
	}
	return nil
}

// Send implements Webmail.
func (p *Postern) Send(ctx context.Context, attachment []byte) error {
	st, page, _, err := p.b.get(ctx, p.Base+"/compose")
	if err := want("postern: compose", st, page, err, http.StatusOK, ""); err != nil {
		return err
	}
	fields := url.Values{"to": {p.T.SendTo}, "subject": {"Benchmark attachment"}, "body": {"One megabyte attached."}}
	for _, k := range []string{"draft_id", "compose_id", "token"} {
		if m := regexp.MustCompile(`name="` + k + `" value="([^"]*)"`).FindStringSubmatch(page); m != nil {
			fields.Set(k, m[1])
		}
	}
	st, page, at, err := p.b.postMultipart(ctx, p.Base+"/send", fields, "attach", "data.bin", attachment, "Origin", p.Base)
	if err := want("postern: send", st, page, err, http.StatusOK, ""); err != nil {
		return err
	}
	// The confirmation is a flash on the page the send redirects to (issue 15).
	if !strings.Contains(page, "Your message was sent") {
		return fmt.Errorf("postern: send: not confirmed (ended at %s): %.300s", at, page)
	}
	return nil
}

// Roundcube drives Roundcube 1.6 as its Elastic skin does: a login form with a CSRF token (_token), then the AJAX
// actions the mail view calls, each with the request token in X-Roundcube-Request.
type Roundcube struct {
	Base, User, Password string
	T                    *Targets
	b                    *browser
	token                string // rcmail.env.request_token
}

// NewRoundcube returns a user of Roundcube at base.
func NewRoundcube(base, user, password string, t *Targets) *Roundcube {
	return &Roundcube{Base: base, User: user, Password: password, T: t, b: newBrowser()}
}

// Name implements Webmail.
func (r *Roundcube) Name() string { return "Roundcube" }

// Requests implements Webmail.
func (r *Roundcube) Requests() int64 { return r.b.reqs.Load() }

var rcToken = regexp.MustCompile(`"request_token":"([^"]+)"`)

// SignIn implements Webmail: GET the login form for its _token, POST it, follow to the mail view (whose page
// carries the request token), then load the message list as the page's script does.
func (r *Roundcube) SignIn(ctx context.Context) error {
	r.b = newBrowser()
	st, page, _, err := r.b.get(ctx, r.Base+"/?_task=login")
	if err := want("roundcube: login page", st, page, err, http.StatusOK, "_token"); err != nil {
		return err
	}
	f, err := parseForm(page)
	if err != nil {
		return fmt.Errorf("roundcube: login page: %w", err)
	}
	f.values.Set("_user", r.User)
	f.values.Set("_pass", r.Password)
	f.values.Set("_timezone", "UTC")
	st, page, _, err = r.b.post(ctx, r.Base+"/?_task=login", f.values)
	if err := want("roundcube: sign-in", st, page, err, http.StatusOK, "request_token"); err != nil {
		return err
	}
	m := rcToken.FindStringSubmatch(page)
	if m == nil {
		return errors.New("roundcube: no request token after sign-in")
	}
	r.token = m[1]
	return r.Inbox(ctx)
}

func (r *Roundcube) ajax(ctx context.Context, what, query string) error {
	st, page, _, err := r.b.get(ctx, r.Base+"/?"+query+"&_remote=1", "X-Roundcube-Request", r.token, "X-Requested-With", "XMLHttpRequest")
	if err := want("roundcube: "+what, st, page, err, http.StatusOK, ""); err != nil {
		return err
	}
	if strings.Contains(page, `"action":"login"`) || strings.Contains(page, "session_error") {
		return fmt.Errorf("roundcube: %s: session lost: %.200s", what, page)
	}
	return nil
}

// Inbox implements Webmail: the list request the mail view makes (_action=list).
func (r *Roundcube) Inbox(ctx context.Context) error {
	return r.ajax(ctx, "inbox", "_task=mail&_action=list&_mbox=INBOX&_page=1&_refresh=1")
}

// NextPage implements Webmail.
func (r *Roundcube) NextPage(ctx context.Context) error {
	return r.ajax(ctx, "next page", "_task=mail&_action=list&_mbox=INBOX&_page=2")
}

// OpenPlain implements Webmail: the preview frame.
func (r *Roundcube) OpenPlain(ctx context.Context) error {
	st, page, _, err := r.b.get(ctx, fmt.Sprintf("%s/?_task=mail&_action=preview&_uid=%d&_mbox=INBOX&_framed=1", r.Base, r.T.Plain))
	return want("roundcube: plain message", st, page, err, http.StatusOK, "messagebody")
}

// OpenHTML implements Webmail.
func (r *Roundcube) OpenHTML(ctx context.Context) error {
	st, page, _, err := r.b.get(ctx, fmt.Sprintf("%s/?_task=mail&_action=preview&_uid=%d&_mbox=INBOX&_framed=1", r.Base, r.T.HTML))
	return want("roundcube: html message", st, page, err, http.StatusOK, "messagebody")
}

// Search implements Webmail: the quick search on the subject.
func (r *Roundcube) Search(ctx context.Context) error {
	return r.ajax(ctx, "search", "_task=mail&_action=search&_mbox=INBOX&_headers=subject&_scope=base&_q="+url.QueryEscape(r.T.SearchSubject))
}

// Move implements Webmail.
func (r *Roundcube) Move(ctx context.Context, uid uint32) error {
	st, page, _, err := r.b.post(ctx, r.Base+"/?_task=mail&_action=move", url.Values{
		"_uid": {fmt.Sprint(uid)}, "_mbox": {r.T.MoveFrom}, "_target_mbox": {r.T.Store}, "_remote": {"1"}, "_token": {r.token},
	}, "X-Roundcube-Request", r.token, "X-Requested-With", "XMLHttpRequest")
	return want("roundcube: move", st, page, err, http.StatusOK, "")
}

var rcComposeID = regexp.MustCompile(`"compose_id":"([^"]+)"`)

// Send implements Webmail: open the editor (which redirects to its _id), upload the attachment, send.
func (r *Roundcube) Send(ctx context.Context, attachment []byte) error {
	st, page, _, err := r.b.get(ctx, r.Base+"/?_task=mail&_action=compose")
	if err := want("roundcube: compose", st, page, err, http.StatusOK, "compose_id"); err != nil {
		return err
	}
	id := rcComposeID.FindStringSubmatch(page)[1]
	h := []string{"X-Roundcube-Request", r.token, "X-Requested-With", "XMLHttpRequest"}
	st, page, _, err = r.b.postMultipart(ctx, fmt.Sprintf("%s/?_task=mail&_action=upload&_id=%s&_uploadid=u%d&_from=compose&_remote=1", r.Base, id, time.Now().UnixNano()),
		url.Values{"_token": {r.token}}, "_attachments[]", "data.bin", attachment, h...)
	if err := want("roundcube: upload", st, page, err, http.StatusOK, "add2attachment_list"); err != nil {
		return err
	}
	from := regexp.MustCompile(`name="_from"[^>]*>\s*<option value="(\d+)"`).FindStringSubmatch(page)
	fromID := "1"
	if from != nil {
		fromID = from[1]
	}
	st, page, _, err = r.b.post(ctx, r.Base+"/?_task=mail&_action=send", url.Values{
		"_id": {id}, "_token": {r.token}, "_from": {fromID}, "_to": {r.T.SendTo}, "_subject": {"Benchmark attachment"},
		"_message": {"One megabyte attached."}, "_is_html": {"0"}, "_remote": {"1"}, "_unlock": {"loading1"},
		"_draft": {""}, "_mdn": {""}, "_dsn": {""}, "_priority": {"0"}, "_store_target": {"Sent"},
	}, h...)
	if err := want("roundcube: send", st, page, err, http.StatusOK, ""); err != nil {
		return err
	}
	if !strings.Contains(page, "sent_successfully") && !strings.Contains(page, "message_sent") {
		return fmt.Errorf("roundcube: send: not confirmed: %.300s", page)
	}
	return nil
}
