package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// withMail runs fn on a pooled IMAP session of the request's grant and returns the user's address. The pool asks
// the keeper for the grant's token on every call and retries with a replaced token after a refused login
// (mail.WithToken); it counts connections per user (the address), over all of the user's grants.
func (s *Server) withMail(ctx context.Context, grant string, fn func(*mail.Session) error) (string, error) {
	ts := s.grantTokens(grant)
	err := s.mail.Do(ctx, grant, ts, fn)
	return ts.address(), err
}

// grantTokens adapts the keeper to mail.TokenSource for one grant. It remembers the last address handed out, for
// the page header. A grant that needs a new sign-in has no credentials any more (mail.ErrNoCredentials, which stops
// a watch), and still says auth.ErrNeedsSignIn for serveError.
type grantTokens struct {
	t     Tokens
	grant string
	mu    sync.Mutex
	addr  string
}

func (s *Server) grantTokens(grant string) *grantTokens {
	return &grantTokens{t: s.tokens, grant: grant}
}

// GrantTokens is the same adapter for other users of a grant's tokens: cmd gives it to the IMAP/SMTP bridge for
// device grants, so that the bridge and the webmail share one mapping (ErrNeedsSignIn → mail.ErrNoCredentials) and
// mail.WithToken's retry rule.
func GrantTokens(t Tokens, grantID string) mail.TokenSource {
	return &grantTokens{t: t, grant: grantID}
}

// Token implements mail.TokenSource.
func (g *grantTokens) Token(ctx context.Context) (mail.Credentials, error) {
	return g.credentials(g.t.Token(ctx, g.grant))
}

// Replace implements mail.TokenSource.
func (g *grantTokens) Replace(ctx context.Context, rejected mail.Credentials) (mail.Credentials, error) {
	return g.credentials(g.t.Replace(ctx, g.grant, rejected.Token))
}

func (g *grantTokens) credentials(tok auth.Token, err error) (mail.Credentials, error) {
	if errors.Is(err, auth.ErrNeedsSignIn) {
		return mail.Credentials{}, fmt.Errorf("%w: %w", mail.ErrNoCredentials, err)
	}
	if err != nil {
		return mail.Credentials{}, err
	}
	g.mu.Lock()
	g.addr = tok.Address
	g.mu.Unlock()
	return mail.Credentials{Address: tok.Address, Token: tok.Access}, nil
}

func (g *grantTokens) address() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

// mailboxPage is the data of templates/mailbox.html: one page of a folder, or of a search in it.
type mailboxPage struct {
	pageBase
	Box, BoxLabel string
	// Special is the folder's role (mail.Special*), which changes what "Delete" means (Trash deletes for good).
	Special string
	Rows    []listRow
	// RowsHTML is Rows rendered (listrows.go), set just before the page is.
	RowsHTML template.HTML
	Total    uint32
	Search   listQuery
	// ListURL is the folder's first page without a search; SelfURL is this exact page, the return_to of the
	// action form; OlderURL and NewestURL page through the folder ("" when there is no such page).
	ListURL, SelfURL, OlderURL, NewestURL string
	// EventsURL is the live-update stream app.js listens to; the page works without it.
	EventsURL string
	// MoveTargets are the folders a selection can be moved to.
	MoveTargets []folderLink
	// PageUIDs are the UIDs of the rows, in order, so that an action can return to the row next to what it moved.
	PageUIDs string
	// AllFolders: the page is a search of every folder (scope=all); rows name their folder and cannot be selected,
	// as /act works on one folder.
	AllFolders bool
}

// listRow is one message of the list with the link that opens it.
type listRow struct {
	mail.Summary
	URL string
	// Who is the From column: the senders, or in Sent and Drafts the recipients (of the whole conversation).
	Who []mail.Address
	// Count is the number of messages of the conversation (0 or 1: a single message); Unread how many are unread.
	Count, Unread int
	// UIDs is what the row's checkbox selects: the UIDs on the page of the conversation ("" means UID alone).
	UIDs string
	// Folder is the row's folder in a search of all folders, "" otherwise.
	Folder, FolderLabel string
}

// SelectValue is the value of the row's checkbox.
func (r listRow) SelectValue() string {
	if r.UIDs != "" {
		return r.UIDs
	}
	return strconv.FormatUint(uint64(r.UID), 10)
}

// InTrash reports whether "Delete" deletes for good on this page.
func (p *mailboxPage) InTrash() bool { return p.Special == mail.SpecialTrash }

// InSent reports whether the list shows recipients rather than senders: in Sent (and Drafts) the sender is the
// user, every row alike.
func (p *mailboxPage) InSent() bool {
	return p.Special == mail.SpecialSent || p.Special == mail.SpecialDrafts
}

// InDrafts reports whether rows open in the editor rather than the reader.
func (p *mailboxPage) InDrafts() bool { return p.Special == mail.SpecialDrafts }

// handleMailbox shows one page of a folder, newest first. Pages are cut by UID (?before=UID), not by offset, so that
// "Older" shows the next older messages even when new mail arrived or messages were deleted since the first page;
// an offset would repeat or skip messages. With search parameters the same page shows matching messages only.
func (s *Server) handleMailbox(w http.ResponseWriter, r *http.Request) error {
	box := r.PathValue("box")
	if box == "" {
		box = "INBOX"
	}
	if !validBoxName(box) {
		return errNoFolder
	}
	q := r.URL.Query()
	before := parseBefore(q.Get("before"))
	search := listQueryFrom(q)
	mq, problem := search.mailQueries()
	if problem != "" {
		return &Error{Status: http.StatusBadRequest, Msg: problem, Retry: mailboxURL(box)}
	}
	var (
		boxes []mail.Mailbox
		page  mail.Page
		hits  []folderHit
	)
	all := len(mq) > 0 && search.Scope == "all"
	opt := s.listOptions(r)
	addr, err := s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		var err error
		if len(mq) == 0 {
			// The folder list and the page in one pipelined round trip on a warm session (mail.Session.Overview),
			// with the conversations and snippets asked for (conversation.go).
			if boxes, page, err = ms.OverviewWith(r.Context(), box, before, s.prefs(r).PageSize, opt); err != nil {
				return err
			}
			if !hasMailbox(boxes, box) {
				return mail.ErrNoMailbox
			}
			return nil
		}
		if boxes, err = ms.Mailboxes(r.Context()); err != nil {
			return err
		}
		if !hasMailbox(boxes, box) {
			return mail.ErrNoMailbox
		}
		if all {
			hits, page.Total, err = searchAllFolders(r.Context(), ms, boxes, mq, s.prefs(r).PageSize)
			return err
		}
		page, err = searchAny(r.Context(), ms, box, mq, before, s.prefs(r).PageSize)
		return err
	})
	if err != nil {
		return mailError(err)
	}
	page2 := mailboxPage{
		pageBase: s.base(r, boxLabel(box)),
		Box:      box,
		BoxLabel: boxLabel(box),
		Total:    page.Total,
		Search:   search,
		ListURL:  mailboxURL(box),
	}
	page2.Flash = s.takeFlash(w, r)
	page2.User = addr
	page2.Folders = folderLinks(boxes, box)
	page2.EventsURL = "/events" + strings.TrimPrefix(page2.ListURL, "/mail")
	// This page again, for the action form's return_to: search and cursor kept, a one-off notice not.
	self := search.values()
	if before != 0 {
		self.Set("before", strconv.FormatUint(uint64(before), 10))
	}
	page2.SelfURL = page2.ListURL
	if len(self) > 0 {
		page2.SelfURL += "?" + self.Encode()
	}
	for _, b := range boxes {
		if b.Name == box {
			page2.Special = b.Special
		}
	}
	for _, f := range page2.Folders {
		if !f.Current {
			page2.MoveTargets = append(page2.MoveTargets, f)
		}
	}
	page2.AllFolders = all
	for _, h := range hits {
		page2.Rows = append(page2.Rows, listRow{Summary: h.Summary, URL: messagePath(h.Box, h.UID), Who: h.From, Folder: h.Box, FolderLabel: boxLabel(h.Box)})
	}
	if len(mq) == 0 && opt.Threads {
		page2.Rows = conversationRows(&page2, page.Summaries, page.Threads)
		page.Summaries = nil
	}
	for _, row := range page2.Rows {
		if !all {
			if page2.PageUIDs != "" {
				page2.PageUIDs += ","
			}
			page2.PageUIDs += row.SelectValue()
		}
	}
	for _, m := range page.Summaries {
		u := messagePath(box, m.UID)
		if page2.InDrafts() {
			u = "/compose?draft=" + strconv.FormatUint(uint64(m.UID), 10)
		}
		who := m.From
		if page2.InSent() {
			who = m.To
		}
		page2.Rows = append(page2.Rows, listRow{Summary: m, URL: u, Who: who})
		if page2.PageUIDs != "" {
			page2.PageUIDs += ","
		}
		page2.PageUIDs += strconv.FormatUint(uint64(m.UID), 10)
	}
	if page.Before != 0 {
		v := search.values()
		v.Set("before", strconv.FormatUint(uint64(page.Before), 10))
		page2.OlderURL = page2.ListURL + "?" + v.Encode()
	}
	if before != 0 {
		page2.NewestURL = page2.ListURL
		if v := search.values(); len(v) > 0 {
			page2.NewestURL += "?" + v.Encode()
		}
	}
	page2.RowsHTML = page2.rowsHTML()
	s.render(w, r, http.StatusOK, "mailbox", &page2)
	return nil
}

// parseBefore reads a ?before=UID cursor; anything else means the first page.
func parseBefore(s string) uint32 {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// listQuery is the search form of the list page, as typed.
type listQuery struct {
	Q, From, To, Subject, Body, Since, Until string
	// Scope is "all" for a search of every folder, "" for this folder only; it is not a criterion.
	Scope string
}

func listQueryFrom(v url.Values) listQuery {
	g := func(k string) string { return strings.TrimSpace(v.Get(k)) }
	q := listQuery{Q: g("q"), From: g("from"), To: g("to"), Subject: g("subject"), Body: g("body"), Since: g("since"), Until: g("until")}
	if g("scope") == "all" {
		q.Scope = "all"
	}
	return q
}

// Active reports whether the page is a search.
func (q listQuery) Active() bool { q.Scope = ""; return q != listQuery{} }

// Advanced reports whether any field beyond the plain search box is set, so the template opens that part of the form.
func (q listQuery) Advanced() bool { q.Q = ""; return q.Active() }

func (q listQuery) values() url.Values {
	v := url.Values{}
	for k, x := range map[string]string{"scope": q.Scope, "q": q.Q, "from": q.From, "to": q.To, "subject": q.Subject, "body": q.Body, "since": q.Since, "until": q.Until} {
		if x != "" {
			v.Set(k, x)
		}
	}
	return v
}

// mailQueries turns the form into IMAP searches whose results are united. The advanced fields are ANDed (one
// query); the plain box "q" matches the subject, the sender or the text, so it becomes up to three queries, each
// the advanced fields plus q in one of those fields (a field the advanced form already constrains is left out).
// None means "no search"; a problem is a mistake in the form, worded for the user.
func (q listQuery) mailQueries() ([]mail.Query, string) {
	if !q.Active() {
		return nil, ""
	}
	base := mail.Query{From: q.From, To: q.To, Subject: q.Subject, Body: q.Body}
	var (
		until time.Time
		err   error
	)
	if q.Since != "" {
		if base.Since, err = time.Parse(time.DateOnly, q.Since); err != nil {
			return nil, "The “from date” must look like 2026-01-31."
		}
	}
	if q.Until != "" {
		if until, err = time.Parse(time.DateOnly, q.Until); err != nil {
			return nil, "The “to date” must look like 2026-01-31."
		}
		// "Until" includes that day; IMAP BEFORE excludes it.
		base.Before = until.AddDate(0, 0, 1)
	}
	if !base.Since.IsZero() && !base.Before.IsZero() && !base.Since.Before(base.Before) {
		return nil, "The “from date” is after the “to date”."
	}
	if q.Q == "" {
		return []mail.Query{base}, ""
	}
	var out []mail.Query
	if base.Subject == "" {
		x := base
		x.Subject = q.Q
		out = append(out, x)
	}
	if base.From == "" {
		x := base
		x.From = q.Q
		out = append(out, x)
	}
	if base.Body == "" {
		x := base
		x.Body = q.Q
		out = append(out, x)
	}
	if len(out) == 0 {
		// Every field is already constrained by the advanced form, which wins.
		return []mail.Query{base}, ""
	}
	return out, ""
}

// searchAny returns the union of several searches as one page. Because every search pages by UID, the union pages
// by UID too: take the newest n of all results, and the next page starts below the oldest one taken. Total is the
// largest single count, a lower bound, when there are several queries.
func searchAny(ctx context.Context, ms *mail.Session, box string, qs []mail.Query, before uint32, n int) (mail.Page, error) {
	if len(qs) == 1 {
		return ms.Search(ctx, box, qs[0], before, n)
	}
	seen := map[uint32]bool{}
	var (
		all  []mail.Summary
		out  mail.Page
		more bool
	)
	for _, q := range qs {
		p, err := ms.Search(ctx, box, q, before, n)
		if err != nil {
			return mail.Page{}, err
		}
		out.Total = max(out.Total, p.Total)
		more = more || p.Before != 0
		for _, m := range p.Summaries {
			if !seen[m.UID] {
				seen[m.UID] = true
				all = append(all, m)
			}
		}
	}
	slices.SortFunc(all, func(a, b mail.Summary) int { return int(int64(b.UID) - int64(a.UID)) })
	if len(all) > n {
		all, more = all[:n], true
	}
	out.Summaries = all
	out.Total = max(out.Total, uint32(len(all)))
	if more && len(all) > 0 {
		out.Before = all[len(all)-1].UID
	}
	return out, nil
}

// errNoMailbox is kept for callers written before mail.ErrNoMailbox existed; it is the same error.
var errNoMailbox = mail.ErrNoMailbox

func hasMailbox(boxes []mail.Mailbox, name string) bool {
	_, ok := findMailbox(boxes, name)
	return ok
}

// findMailbox returns the selectable mailbox called name.
func findMailbox(boxes []mail.Mailbox, name string) (mail.Mailbox, bool) {
	for _, b := range boxes {
		if b.Name == name && !b.NoSelect {
			return b, true
		}
	}
	return mail.Mailbox{}, false
}

// specialMailbox returns the name of the mailbox with a special-use role (mail.SpecialTrash…), "" if the account
// has none.
func specialMailbox(boxes []mail.Mailbox, role string) string {
	for _, b := range boxes {
		if b.Special == role && !b.NoSelect {
			return b.Name
		}
	}
	return ""
}

// mailError turns a mail failure that is not about authentication into a friendly, specific page: the message or
// folder is gone (moved or deleted in another window or app), the mailbox is full, or the server is unreachable.
// The cause goes to the log only. Auth failures pass through to serveError's mapping.
func mailError(err error) error {
	if errors.Is(err, auth.ErrNeedsSignIn) || idpUnavailable(err) || errors.Is(err, mail.ErrAuthFailed) || errors.Is(err, mail.ErrAuthUnavailable) {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	switch {
	case errors.Is(err, mail.ErrNoMessage):
		return &Error{Status: http.StatusNotFound, Msg: "This message is no longer there: it was probably moved or deleted in another window or mail app.", Retry: defaultReturnTo, Err: err}
	case errors.Is(err, mail.ErrNoMailbox):
		return &Error{Status: http.StatusNotFound, Msg: "This folder does not exist (any more): it may have been renamed or deleted in another window or mail app.", Retry: defaultReturnTo, Err: err}
	case errors.Is(err, mail.ErrQuota):
		return &Error{Status: http.StatusInsufficientStorage, Msg: "Your mailbox is full. Delete some messages (and empty the Trash), then try again.", Err: err}
	case unreachable(err):
		return &Error{Status: http.StatusBadGateway, Msg: "The mail server cannot be reached right now. Nothing is lost; reload this page in a moment.", Err: err}
	}
	return &Error{Status: http.StatusBadGateway, Msg: "The mail server could not do this just now. Please try again; if it keeps failing, the log has the details.", Err: err}
}

// unreachable reports a connection-level failure (refused, reset, timed out, closed mid-command), as opposed to the
// server answering NO.
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, mail.ErrPoolClosed)
}

func folderLinks(boxes []mail.Mailbox, current string) []folderLink {
	out := make([]folderLink, 0, len(boxes))
	for _, b := range boxes {
		if b.NoSelect {
			continue
		}
		out = append(out, folderLink{Name: b.Name, Label: boxLabel(b.Name), URL: mailboxURL(b.Name), Special: b.Special, Unseen: b.Unseen, Current: b.Name == current})
	}
	return out
}

// mailboxURL escapes each segment of a mailbox name, keeping "/" as the separator so hierarchical names stay readable.
func mailboxURL(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/mail/" + strings.Join(segs, "/")
}

func boxLabel(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "Inbox"
	}
	return name
}
