package web

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// Sender submits one message over SMTP with the user's bearer token. SMTPSender implements it; tests and cmd may
// substitute their own.
type Sender interface {
	Send(ctx context.Context, c mail.Credentials, from string, to []string, msg io.Reader) error
}

// SMTPSender sends through one submission server with mail.Send, a connection per message: sending is rare next to
// reading, and Stalwart validates the token at each AUTH anyway.
type SMTPSender struct {
	Server mail.Server
}

// Send implements Sender.
func (s SMTPSender) Send(ctx context.Context, c mail.Credentials, from string, to []string, msg io.Reader) error {
	return mail.Send(ctx, s.Server, c, from, to, msg)
}

// handleSend sends the composed message (POST /send): From is the grant's address, never the form's (Stalwart
// refuses any other sender); the envelope goes to To, Cc and Bcc; then a copy is saved in Sent with \Seen, the
// original of a reply gets \Answered and a resumed draft is deleted. Whatever goes wrong before the message is
// accepted, the form comes back with everything typed and attached, and a reason.
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) error {
	return s.submitCompose(w, r, true)
}

// handleSaveDraft saves the form in Drafts (POST /drafts) with \Draft and \Seen, replacing the draft it was
// resumed from.
func (s *Server) handleSaveDraft(w http.ResponseWriter, r *http.Request) error {
	return s.submitCompose(w, r, false)
}

func (s *Server) submitCompose(w http.ResponseWriter, r *http.Request, send bool) error {
	ctx := r.Context()
	grant := grantID(r)
	vals, files, rerr := readComposeForm(w, r, s.cfg.MaxUpload)
	f := composeFrom(vals)
	// What the user attached must survive a re-shown form: stash the new files, keep the old ids.
	var stashFull bool
	keepIDs := vals["keep"]
	for _, id := range keepIDs {
		if a, ok := s.uploads.get(grant, id); ok {
			f.Kept = append(f.Kept, keptFile{ID: id, Name: a.Filename, Size: int64(len(a.Data))})
		}
	}
	lostKept := len(f.Kept) < len(keepIDs)
	for _, a := range files {
		k, ok := s.uploads.put(userOf(r), grant, a)
		if !ok {
			stashFull = true
			continue
		}
		f.Kept = append(f.Kept, k)
	}
	again := func(status int, field, problem string) error {
		s.renderCompose(w, r, status, s.addressOf(ctx, grant), nil, composePage{Form: f, Problem: problem, Field: field})
		return nil
	}
	switch {
	case errors.Is(rerr, errTooBig):
		s.log(r).Info("compose form too big", slog.Int64("limit", s.cfg.MaxUpload))
		return again(http.StatusRequestEntityTooLarge, "attach", "The attachments are too big: at most "+formatSize(s.cfg.MaxUpload)+
			" in all. Your text is kept below; attach smaller files, or share big ones by link.")
	case errors.As(rerr, new(*formError)):
		s.log(r).Info("compose form refused", slog.Any("err", rerr))
		return again(http.StatusBadRequest, "attach", formProblem(rerr))
	case rerr != nil:
		s.log(r).Info("compose form unreadable", slog.Any("err", rerr))
		return again(http.StatusBadRequest, "", "The form could not be read completely. Your text is kept below; please try again.")
	case stashFull:
		return again(http.StatusServiceUnavailable, "attach", "The server is short of room for attachments right now. Please attach your files again in a moment.")
	case lostKept:
		return again(http.StatusBadRequest, "attach", "An attachment you added earlier has expired. Please attach it again.")
	}

	var d mail.Draft
	for _, fld := range []struct {
		id, label, value string
		dst              *[]mail.Address
	}{{"to", "To", f.To, &d.To}, {"cc", "Cc", f.Cc, &d.Cc}, {"bcc", "Bcc", f.Bcc, &d.Bcc}} {
		if strings.TrimSpace(fld.value) == "" {
			continue
		}
		list, err := mail.ParseAddressList(fld.value)
		if errors.Is(err, mail.ErrHeaderInjection) {
			s.log(r).Info("compose: header injection refused", slog.String("field", fld.id))
			return again(http.StatusBadRequest, fld.id, "The "+fld.label+" field contains a line break, which mail headers cannot carry. Please remove it.")
		}
		if err != nil {
			return again(http.StatusBadRequest, fld.id, "Check the "+fld.label+" field: "+addressProblem(fld.value)+" Separate addresses with commas, like ana@example.com, Bo <bo@example.org>.")
		}
		*fld.dst = list
	}
	rcpts := d.Recipients()
	if send && len(rcpts) == 0 {
		return again(http.StatusBadRequest, "to", "Add at least one recipient.")
	}
	if send && s.cfg.Sender == nil {
		return again(http.StatusServiceUnavailable, "", "Sending mail is not set up on this Postern server. You can save the message as a draft.")
	}
	d.Subject, d.Text = f.Subject, f.Body
	d.InReplyTo = strings.Trim(strings.TrimSpace(f.InReplyTo), "<>")
	for _, ref := range strings.Fields(f.References) {
		d.References = append(d.References, strings.Trim(ref, "<>"))
	}
	for _, k := range f.Kept {
		a, _ := s.uploads.get(grant, k.ID)
		d.Attachments = append(d.Attachments, a)
	}

	tok, err := s.tokens.Token(ctx, grant)
	if err != nil {
		st, msg := sendProblem(err)
		s.log(r).Info("compose: no token", slog.Any("err", err))
		return again(st, "", msg)
	}
	d.From = mail.Address{Name: s.selfName(ctx, grant), Email: tok.Address}

	// First IMAP round: the folders, and what a forward carries from its original.
	var boxes []mail.Mailbox
	_, err = s.withMail(ctx, grant, func(ms *mail.Session) error {
		var err error
		if boxes, err = ms.Mailboxes(ctx); err != nil {
			return err
		}
		if f.Fwd == "" {
			return nil
		}
		box, uid, ok := parseMsgRef(f.Fwd)
		if !ok {
			return nil
		}
		m, err := ms.Message(ctx, box, uid)
		if err != nil {
			return err
		}
		raw, err := ms.Raw(ctx, box, uid)
		if err != nil {
			return err
		}
		orig := mail.Forward(m, mail.Address{Email: tok.Address}, raw, f.FwdAs != "inline")
		d.Forwarded = orig.Forwarded
		d.Attachments = append(d.Attachments, orig.Attachments...)
		return nil
	})
	if err != nil {
		st, msg := sendProblem(err)
		if errors.Is(err, mail.ErrNoMessage) {
			msg = "The message you are forwarding is no longer there (moved or deleted elsewhere), so it cannot be attached. Your text is kept below."
		}
		s.log(r).Warn("compose: imap before send failed", slog.Any("err", err))
		return again(st, "", msg)
	}
	drafts := specialMailbox(boxes, mail.SpecialDrafts)
	if !send && drafts == "" {
		return again(http.StatusConflict, "", "Your account has no Drafts folder, so the draft cannot be saved.")
	}

	msg, err := d.Build(time.Now(), domainOf(tok.Address))
	if errors.Is(err, mail.ErrHeaderInjection) {
		s.log(r).Info("compose: header injection refused")
		return again(http.StatusBadRequest, "subject", "The subject or an address contains a line break, which mail headers cannot carry. Please remove it.")
	}
	if err != nil {
		s.log(r).Error("compose: build failed", slog.Any("err", err))
		return again(http.StatusInternalServerError, "", "The message could not be put together. Your text is kept below; please try again.")
	}

	if !send {
		_, err = s.withMail(ctx, grant, func(ms *mail.Session) error {
			if err := ms.Append(ctx, drafts, []mail.Flag{mail.FlagDraft, mail.FlagSeen}, withBcc(msg, d.Bcc)); err != nil {
				return err
			}
			if f.Draft != 0 {
				// The new copy is stored; the old one would be a stale duplicate.
				if err := ms.Expunge(ctx, drafts, []uint32{f.Draft}); err != nil && !errors.Is(err, mail.ErrNoMessage) {
					s.log(r).Warn("compose: old draft not deleted", slog.Any("err", err))
				}
			}
			return nil
		})
		if err != nil {
			st, m := sendProblem(err)
			if errors.Is(err, mail.ErrQuota) {
				m = "Your mailbox is full, so the draft cannot be saved. Your text is kept below."
			}
			s.log(r).Warn("compose: saving draft failed", slog.Any("err", err))
			return again(st, "", m)
		}
		s.uploads.drop(grant, idsOf(f.Kept))
		http.Redirect(w, r, mailboxURL(drafts)+"?notice=draft", http.StatusSeeOther)
		return nil
	}

	// Send, with the same single retry on a refused token as withMail.
	creds := mail.Credentials{Address: tok.Address, Token: tok.Access}
	err = s.cfg.Sender.Send(ctx, creds, tok.Address, rcpts, bytes.NewReader(msg))
	if errors.Is(err, mail.ErrAuthFailed) {
		if tok, err = s.tokens.Replace(ctx, grant, tok.Access); err == nil {
			creds = mail.Credentials{Address: tok.Address, Token: tok.Access}
			err = s.cfg.Sender.Send(ctx, creds, tok.Address, rcpts, bytes.NewReader(msg))
		}
	}
	if err != nil {
		st, m := sendProblem(err)
		s.log(r).Warn("compose: send failed", slog.Int("recipients", len(rcpts)), slog.Any("err", err))
		return again(st, "", m)
	}
	s.uploads.drop(grant, idsOf(f.Kept))
	s.log(r).Info("message sent", slog.Int("recipients", len(rcpts)), slog.Int("bytes", len(msg)))

	// The message is gone; from here on nothing may look like a failure to send, or the user would send it twice.
	notice := "sent"
	_, err = s.withMail(ctx, grant, func(ms *mail.Session) error {
		var errs []error
		if sent := specialMailbox(boxes, mail.SpecialSent); sent != "" {
			errs = append(errs, ms.Append(ctx, sent, []mail.Flag{mail.FlagSeen}, withBcc(msg, d.Bcc)))
		} else {
			errs = append(errs, errors.New("web: no Sent folder"))
		}
		if box, uid, ok := parseMsgRef(f.Orig); ok {
			if err := ms.SetFlag(ctx, box, []uint32{uid}, mail.FlagAnswered, true); err != nil && !errors.Is(err, mail.ErrNoMessage) && !errors.Is(err, mail.ErrNoMailbox) {
				s.log(r).Warn("compose: could not flag the original answered", slog.Any("err", err))
			}
		}
		if f.Draft != 0 && drafts != "" {
			if err := ms.Expunge(ctx, drafts, []uint32{f.Draft}); err != nil && !errors.Is(err, mail.ErrNoMessage) {
				s.log(r).Warn("compose: sent draft not deleted", slog.Any("err", err))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		s.log(r).Warn("compose: copy to Sent failed", slog.Any("err", err))
		notice = "sent-nocopy"
	}
	back := defaultReturnTo
	if box, _, ok := parseMsgRef(f.Orig); ok {
		back = mailboxURL(box)
	} else if box, _, ok := parseMsgRef(f.Fwd); ok {
		back = mailboxURL(box)
	}
	http.Redirect(w, r, back+"?notice="+notice, http.StatusSeeOther)
	return nil
}

// sendProblem says why a message was not sent or saved, specifically, in the user's terms; the status goes with it.
func sendProblem(err error) (int, string) {
	const kept = " Your message was not sent; it is kept below."
	var se *smtp.SMTPError
	switch {
	case errors.Is(err, auth.ErrNeedsSignIn):
		return http.StatusUnauthorized, "Your sign-in has ended, so nothing was sent. Copy your text somewhere safe, then sign in again."
	case errors.Is(err, mail.ErrAuthFailed):
		return http.StatusBadGateway, "The mail server did not accept your sign-in." + kept + " Signing in again usually fixes this (copy your text first)."
	case errors.Is(err, mail.ErrAuthUnavailable):
		return http.StatusServiceUnavailable, "The mail server could not check your sign-in just now (is the identity provider down?)." + kept + " Try again in a minute."
	case errors.Is(err, mail.ErrQuota):
		return http.StatusInsufficientStorage, "Your mailbox is full." + kept + " Delete some messages, then try again."
	case errors.Is(err, mail.ErrMaybeSent):
		return http.StatusGatewayTimeout, "The connection to the mail server broke just as your message was handed over, so it may " +
			"have been sent. Check with the recipient (or your Sent folder) before you send it again; your text is kept below."
	case errors.As(err, &se):
		switch {
		case se.Code == 552 && (se.EnhancedCode == smtp.EnhancedCode{5, 2, 2}):
			return http.StatusUnprocessableEntity, "A recipient's mailbox is full." + kept
		case se.Code == 552 || se.EnhancedCode == smtp.EnhancedCode{5, 3, 4} || se.EnhancedCode == smtp.EnhancedCode{5, 2, 3}:
			return http.StatusRequestEntityTooLarge, "The message is too big for the mail server." + kept + " Remove or shrink an attachment."
		case se.Code == 501 && se.EnhancedCode == smtp.EnhancedCode{5, 5, 4}, se.Code == 553 && se.EnhancedCode[1] == 7:
			return http.StatusBadGateway, "The mail server does not let your account send from its address." + kept
		case se.Code == 550 || se.Code == 551 || se.Code == 553 || se.EnhancedCode[1] == 1:
			return http.StatusUnprocessableEntity, "The mail server refused a recipient (the address may not exist)." + kept + " Check the addresses."
		case se.Temporary():
			return http.StatusServiceUnavailable, "The mail server is busy or refusing mail for a moment." + kept + " Try again in a minute."
		}
		return http.StatusBadGateway, "The mail server refused the message." + kept
	case unreachable(err):
		return http.StatusBadGateway, "The mail server cannot be reached right now." + kept + " Try again in a moment."
	}
	var e *Error
	if errors.As(mailError(err), &e) {
		return e.Status, e.Msg
	}
	return http.StatusBadGateway, "Something went wrong talking to the mail server." + kept
}

// addressProblem names the first entry of an address field that is not an address, found by parsing the entries
// one by one, so that the page never carries a library's error text.
func addressProblem(field string) string {
	for _, entry := range splitAddresses(field) {
		if _, err := mail.ParseAddressList(entry); err != nil {
			if len(entry) > 200 || hasControl(entry) {
				break
			}
			return "“" + entry + "” is not an email address."
		}
	}
	return "one of the addresses is not valid."
}

// splitAddresses cuts an address field at the commas and semicolons that separate entries, not at those inside a
// quoted display name or angle brackets.
func splitAddresses(s string) []string {
	var (
		out         []string
		cur         strings.Builder
		quoted, esc bool
		angle       int
	)
	flush := func() {
		if e := strings.TrimSpace(cur.String()); e != "" {
			out = append(out, e)
		}
		cur.Reset()
	}
	for _, r := range s {
		switch {
		case esc:
			esc = false
		case quoted && r == '\\':
			esc = true
		case r == '"':
			quoted = !quoted
		case !quoted && r == '<':
			angle++
		case !quoted && r == '>' && angle > 0:
			angle--
		case !quoted && angle == 0 && (r == ',' || r == ';'):
			flush()
			continue
		}
		cur.WriteRune(r)
	}
	flush()
	return out
}

// withBcc puts a Bcc header field on the copy of a message kept in Sent or Drafts: mail.Draft.Build never writes
// Bcc, rightly for what goes out (RFC 5322 section 3.6.3), but the user's own copy should remember who was blind
// copied, and a resumed draft must get them back. The addresses come from mail.ParseAddressList (no CR or LF), and
// net/mail encodes the names (RFC 2047) and folds one address per line.
func withBcc(msg []byte, bcc []mail.Address) []byte {
	if len(bcc) == 0 {
		return msg
	}
	var b bytes.Buffer
	b.WriteString("Bcc: ")
	for i, a := range bcc {
		if i > 0 {
			b.WriteString(",\r\n ")
		}
		b.WriteString((&netmail.Address{Name: a.Name, Address: a.Email}).String())
	}
	b.WriteString("\r\n")
	b.Write(msg)
	return b.Bytes()
}

// domainOf is the right-hand side of an address, used for Message-ID (RFC 5322 section 3.6.4 suggests a domain
// the sender controls).
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return "postern.invalid"
}

// selfName is the user's display name for the From header, from the grant's identity; "" if unknown.
func (s *Server) selfName(ctx context.Context, grant string) string {
	info, err := s.tokens.Info(ctx, grant)
	if err != nil {
		return ""
	}
	return info.Identity.Name
}
