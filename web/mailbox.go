package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// withMail runs fn on a pooled IMAP session of the request's grant and returns the user's address.
//
// Every view asks the keeper for the current token first, even when the pool will reuse a connection: that is how
// the keeper learns the grant is in use (the refresher keeps active grants' access tokens fresh) and how a grant
// that ended (revoked, signed out elsewhere, refresh token expired) stops serving mail at once instead of riding on
// an already-authenticated IMAP connection.
//
// Each new IMAP login costs Stalwart one userinfo call to the IdP, so the pool reuses authenticated connections. If
// the server refuses a token that the grant has since replaced (a refresh revokes every older access token), the
// work is retried exactly once with the current token: Stalwart disconnects after 3 failures and 0.16 bans after
// 100 a day, so never more.
func (s *Server) withMail(ctx context.Context, grant string, fn func(*mail.Session) error) (string, error) {
	tok, err := s.tokens.Token(ctx, grant)
	if err != nil {
		return "", err
	}
	creds := func(context.Context) (mail.Credentials, error) {
		return mail.Credentials{Address: tok.Address, Token: tok.Access}, nil
	}
	err = s.mail.Do(ctx, grant, creds, fn)
	if errors.Is(err, mail.ErrAuthFailed) {
		if tok, err = s.tokens.Replace(ctx, grant, tok.Access); err != nil {
			return "", err
		}
		err = s.mail.Do(ctx, grant, creds, fn)
	}
	return tok.Address, err
}

type mailboxPage struct {
	pageBase
	Box      string
	BoxLabel string
	Messages []mail.Summary
}

func (s *Server) handleMailbox(w http.ResponseWriter, r *http.Request) error {
	box := r.PathValue("box")
	if box == "" {
		box = "INBOX"
	}
	var (
		boxes []mail.Mailbox
		msgs  []mail.Summary
	)
	addr, err := s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		var err error
		if boxes, err = ms.Mailboxes(r.Context()); err != nil {
			return err
		}
		if !hasMailbox(boxes, box) {
			return errNoMailbox
		}
		msgs, err = ms.Summaries(r.Context(), box, s.cfg.PageSize)
		return err
	})
	if errors.Is(err, errNoMailbox) {
		return &Error{Status: http.StatusNotFound, Msg: "There is no folder with this name.", Retry: defaultReturnTo}
	}
	if err != nil {
		return mailError(err)
	}
	page := mailboxPage{pageBase: s.base(r, boxLabel(box)), Box: box, BoxLabel: boxLabel(box), Messages: msgs}
	page.User = addr
	page.Folders = folderLinks(boxes, box)
	s.render(w, r, http.StatusOK, "mailbox", &page)
	return nil
}

var errNoMailbox = errors.New("web: no such mailbox")

func hasMailbox(boxes []mail.Mailbox, name string) bool {
	for _, b := range boxes {
		if b.Name == name && !b.NoSelect {
			return true
		}
	}
	return false
}

// mailError turns a mail failure that is not about authentication into a friendly page; auth failures pass through
// to serveError's mapping.
func mailError(err error) error {
	if errors.Is(err, auth.ErrNeedsSignIn) || errors.Is(err, mail.ErrAuthFailed) || errors.Is(err, mail.ErrAuthUnavailable) {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Status: http.StatusBadGateway, Msg: "The mail server cannot be reached right now. Nothing is lost; reload this page in a moment.", Err: err}
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
