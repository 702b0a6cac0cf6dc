package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

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

// submitCompose runs the four steps of a compose form: parse it (with its attachments and addresses), build the
// draft (folders and a forward's original from IMAP, then the message), then either store it in Drafts, or send it
// and do what follows a send. A step that cannot go on returns a *formProblem, and the form comes back with
// everything typed and attached, and the reason.
func (s *Server) submitCompose(w http.ResponseWriter, r *http.Request, send bool) error {
	j, err := s.parseCompose(w, r, send)
	if err == nil {
		err = j.draft()
	}
	if err == nil && !send {
		err = j.saveDraft()
	}
	if err == nil && send {
		if err = j.send(); err == nil {
			j.afterSend()
		}
	}
	var fp *formProblem
	if j != nil && j.autosave {
		// The script's background save (app.js): a small JSON answer instead of a page; the form stays as it is.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case errors.As(err, &fp):
			w.WriteHeader(fp.status)
			return json.NewEncoder(w).Encode(map[string]string{"problem": fp.msg})
		case err != nil:
			return err
		}
		return json.NewEncoder(w).Encode(map[string]uint32{"draft": j.savedUID})
	}
	if errors.As(err, &fp) {
		var f composeForm
		if j != nil {
			f = j.f
		}
		s.renderCompose(w, r, fp.status, s.addressOf(r.Context(), grantID(r)), nil, composePage{Form: f, Problem: fp.msg, Field: fp.field})
		return nil
	}
	return err
}

// formProblem is why a compose form comes back: a status, the input at fault ("" for none, or "attach") and the
// words for the user.
type formProblem struct {
	status     int
	field, msg string
}

func (p *formProblem) Error() string { return "web: compose: " + p.msg }

func problem(status int, field, msg string) error { return &formProblem{status, field, msg} }

// composeJob is one submitted compose form on its way to Drafts or out.
type composeJob struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	grant string
	f     composeForm
	d     mail.Draft
	rcpts []string
	// boxes are the account's folders and drafts the Drafts folder ("" if none), from the draft step.
	boxes  []mail.Mailbox
	drafts string
	// msg is the built message, without Bcc.
	msg []byte
	// autosave: this POST /drafts is the compose script's background save (field autosave=1).
	autosave bool
	// savedUID is the draft's UID in Drafts after saveDraft (0 if the server did not say).
	savedUID uint32
}

// parseCompose reads the form: the attachments go to the stash so that they survive a re-shown form, and the
// address fields are parsed. The job it returns carries the form even with an error, for the re-shown page.
func (s *Server) parseCompose(w http.ResponseWriter, r *http.Request, send bool) (*composeJob, error) {
	j := &composeJob{s: s, w: w, r: r, ctx: r.Context(), grant: grantID(r)}
	vals, files, rerr := readComposeForm(w, r, s.cfg.MaxUpload)
	j.f = composeFrom(vals)
	j.autosave = !send && len(vals["autosave"]) > 0 && vals["autosave"][0] == "1"
	var stashFull bool
	keepIDs := vals["keep"]
	for _, id := range keepIDs {
		if a, ok := s.uploads.get(j.grant, id); ok {
			j.f.Kept = append(j.f.Kept, keptFile{ID: id, Name: a.Filename, Size: int64(len(a.Data))})
		}
	}
	lostKept := len(j.f.Kept) < len(keepIDs)
	for _, a := range files {
		k, ok := s.uploads.put(userOf(r), j.grant, a)
		if !ok {
			stashFull = true
			continue
		}
		j.f.Kept = append(j.f.Kept, k)
	}
	switch {
	case errors.Is(rerr, errTooBig):
		s.log(r).Info("compose form too big", slog.Int64("limit", s.cfg.MaxUpload))
		return j, problem(http.StatusRequestEntityTooLarge, "attach", "The attachments are too big: at most "+formatSize(s.cfg.MaxUpload)+
			" in all. Your text is kept below; attach smaller files, or share big ones by link.")
	case errors.As(rerr, new(*formError)):
		s.log(r).Info("compose form refused", slog.Any("err", rerr))
		return j, problem(http.StatusBadRequest, "attach", formErrorText(rerr))
	case rerr != nil:
		s.log(r).Info("compose form unreadable", slog.Any("err", rerr))
		return j, problem(http.StatusBadRequest, "", "The form could not be read completely. Your text is kept below; please try again.")
	case stashFull:
		return j, problem(http.StatusServiceUnavailable, "attach", "The server is short of room for attachments right now. Please attach your files again in a moment.")
	case lostKept:
		return j, problem(http.StatusBadRequest, "attach", "An attachment you added earlier has expired. Please attach it again.")
	}

	for _, fld := range []struct {
		id, label, value string
		dst              *[]mail.Address
	}{{"to", "To", j.f.To, &j.d.To}, {"cc", "Cc", j.f.Cc, &j.d.Cc}, {"bcc", "Bcc", j.f.Bcc, &j.d.Bcc}} {
		list, err := mail.ParseAddressList(fld.value)
		if errors.Is(err, mail.ErrHeaderInjection) {
			s.log(r).Info("compose: header injection refused", slog.String("field", fld.id))
			return j, problem(http.StatusBadRequest, fld.id, "The "+fld.label+" field contains a line break, which mail headers cannot carry. Please remove it.")
		}
		if err != nil {
			return j, problem(http.StatusBadRequest, fld.id, "Check the "+fld.label+" field: "+addressProblem(err)+" Separate addresses with commas, like ana@example.com, Bo <bo@example.org>.")
		}
		*fld.dst = list
	}
	j.rcpts = j.d.Recipients()
	if send && len(j.rcpts) == 0 {
		return j, problem(http.StatusBadRequest, "to", "Add at least one recipient.")
	}
	if send && s.cfg.Sender == nil {
		return j, problem(http.StatusServiceUnavailable, "", "Sending mail is not set up on this Postern server. You can save the message as a draft.")
	}
	j.d.Subject, j.d.Text = j.f.Subject, j.f.Body
	j.d.InReplyTo = strings.Trim(strings.TrimSpace(j.f.InReplyTo), "<>")
	for _, ref := range strings.Fields(j.f.References) {
		j.d.References = append(j.d.References, strings.Trim(ref, "<>"))
	}
	for _, k := range j.f.Kept {
		a, _ := s.uploads.get(j.grant, k.ID)
		j.d.Attachments = append(j.d.Attachments, a)
	}
	return j, nil
}

// draft completes the draft in one IMAP round (the folders, and what a forward carries from its original; the
// round also yields the grant's address, the only From the mail server accepts) and builds the message.
func (j *composeJob) draft() error {
	s, ctx := j.s, j.ctx
	var (
		orig *mail.Message
		raw  []byte
	)
	addr, err := s.withMail(ctx, j.grant, func(ms *mail.Session) error {
		var err error
		if j.boxes, err = ms.Mailboxes(ctx); err != nil {
			return err
		}
		box, uid, ok := parseMsgRef(j.f.Fwd)
		if !ok {
			return nil
		}
		if orig, err = ms.Message(ctx, box, uid); err != nil {
			return err
		}
		raw, err = ms.Raw(ctx, box, uid)
		return err
	})
	if err != nil {
		fp := sendProblem(err)
		if errors.Is(err, mail.ErrNoMessage) {
			fp.msg = "The message you are forwarding is no longer there (moved or deleted elsewhere), so it cannot be attached. Your text is kept below."
		}
		s.log(j.r).Warn("compose: imap before send failed", slog.Any("err", err))
		return fp
	}
	if orig != nil {
		fwd := mail.Forward(orig, mail.Address{Email: addr}, raw, j.f.FwdAs != "inline")
		j.d.Forwarded = fwd.Forwarded
		j.d.Attachments = append(j.d.Attachments, fwd.Attachments...)
	}
	j.drafts = specialMailbox(j.boxes, mail.SpecialDrafts)
	j.d.From = mail.Address{Name: s.selfName(j.r), Email: addr}

	j.msg, err = j.d.Build(time.Now(), domainOf(addr))
	if errors.Is(err, mail.ErrHeaderInjection) {
		s.log(j.r).Info("compose: header injection refused")
		return problem(http.StatusBadRequest, "subject", "The subject or an address contains a line break, which mail headers cannot carry. Please remove it.")
	}
	if err != nil {
		s.log(j.r).Error("compose: build failed", slog.Any("err", err))
		return problem(http.StatusInternalServerError, "", "The message could not be put together. Your text is kept below; please try again.")
	}
	return nil
}

// saveDraft stores the message in Drafts with \Draft and \Seen, replacing the draft it was resumed from, and
// goes to the Drafts folder.
func (j *composeJob) saveDraft() error {
	s, ctx := j.s, j.ctx
	if j.drafts == "" {
		return problem(http.StatusConflict, "", "Your account has no Drafts folder, so the draft cannot be saved.")
	}
	_, err := s.withMail(ctx, j.grant, func(ms *mail.Session) error {
		uid, err := ms.AppendUID(ctx, j.drafts, []mail.Flag{mail.FlagDraft, mail.FlagSeen}, mail.OwnCopy(j.msg, j.d.Bcc))
		if err != nil {
			return err
		}
		j.savedUID = uid
		if j.f.Draft != 0 {
			// The new copy is stored; the old one would be a stale duplicate.
			if err := ms.Expunge(ctx, j.drafts, []uint32{j.f.Draft}); err != nil && !errors.Is(err, mail.ErrNoMessage) {
				s.log(j.r).Warn("compose: old draft not deleted", slog.Any("err", err))
			}
		}
		return nil
	})
	if err != nil {
		fp := sendProblem(err)
		if errors.Is(err, mail.ErrQuota) {
			fp.msg = "Your mailbox is full, so the draft cannot be saved. Your text is kept below."
		}
		s.log(j.r).Warn("compose: saving draft failed", slog.Any("err", err))
		return fp
	}
	if j.autosave {
		// The form stays open: its attachments stay in the stash, and the next save replaces this copy.
		return nil
	}
	s.uploads.drop(j.grant, idsOf(j.f.Kept))
	j.s.flashNext(j.w, j.r, flash{Text: "Your draft was saved in " + boxLabel(j.drafts) + "."}, nil)
	http.Redirect(j.w, j.r, mailboxURL(j.drafts), http.StatusSeeOther)
	return nil
}

// send submits the message from the grant's address to To, Cc and Bcc, with the retry on a refused token that
// every mail call has (mail.WithToken): a refused AUTH comes before MAIL FROM, so nothing can go out twice.
func (j *composeJob) send() error {
	s, ctx := j.s, j.ctx
	err := mail.WithToken(ctx, s.grantTokens(j.grant), func(c mail.Credentials) error {
		return s.cfg.Sender.Send(ctx, c, c.Address, j.rcpts, bytes.NewReader(j.msg))
	})
	if err != nil {
		fp := sendProblem(err)
		var se *mail.SendError
		if errors.As(err, &se) && se.Recipient != "" {
			fp.field = j.fieldOf(se.Recipient)
		}
		s.log(j.r).Warn("compose: send failed", slog.Int("recipients", len(j.rcpts)), slog.Any("err", err))
		return fp
	}
	s.uploads.drop(j.grant, idsOf(j.f.Kept))
	s.log(j.r).Info("message sent", slog.Int("recipients", len(j.rcpts)), slog.Int("bytes", len(j.msg)))
	return nil
}

// fieldOf names the address field (to, cc, bcc) that holds addr, for the form to mark.
func (j *composeJob) fieldOf(addr string) string {
	for _, fld := range []struct {
		id   string
		list []mail.Address
	}{{"to", j.d.To}, {"cc", j.d.Cc}, {"bcc", j.d.Bcc}} {
		for _, a := range fld.list {
			if strings.EqualFold(a.Email, addr) {
				return fld.id
			}
		}
	}
	return ""
}

// afterSend keeps a copy in Sent with \Seen, flags the original of a reply \Answered, deletes a resumed draft,
// and goes back to where the user came from. The message is gone: from here on nothing may look like a failure to
// send, or the user would send it twice; a missing copy in Sent is a notice.
func (j *composeJob) afterSend() {
	s, ctx := j.s, j.ctx
	notice := "Your message was sent."
	_, err := s.withMail(ctx, j.grant, func(ms *mail.Session) error {
		var errs []error
		if sent := specialMailbox(j.boxes, mail.SpecialSent); sent != "" {
			errs = append(errs, ms.Append(ctx, sent, []mail.Flag{mail.FlagSeen}, mail.OwnCopy(j.msg, j.d.Bcc)))
		} else {
			errs = append(errs, errors.New("web: no Sent folder"))
		}
		if box, uid, ok := parseMsgRef(j.f.Orig); ok {
			if err := ms.SetFlag(ctx, box, []uint32{uid}, mail.FlagAnswered, true); err != nil && !errors.Is(err, mail.ErrNoMessage) && !errors.Is(err, mail.ErrNoMailbox) {
				s.log(j.r).Warn("compose: could not flag the original answered", slog.Any("err", err))
			}
		}
		if j.f.Draft != 0 && j.drafts != "" {
			if err := ms.Expunge(ctx, j.drafts, []uint32{j.f.Draft}); err != nil && !errors.Is(err, mail.ErrNoMessage) {
				s.log(j.r).Warn("compose: sent draft not deleted", slog.Any("err", err))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		s.log(j.r).Warn("compose: copy to Sent failed", slog.Any("err", err))
		notice = "Your message was sent, but the copy for your Sent folder could not be saved."
	}
	back := defaultReturnTo
	if box, _, ok := parseMsgRef(j.f.Orig); ok {
		back = mailboxURL(box)
	} else if box, _, ok := parseMsgRef(j.f.Fwd); ok {
		back = mailboxURL(box)
	}
	s.flashNext(j.w, j.r, flash{Text: notice}, nil)
	http.Redirect(j.w, j.r, back, http.StatusSeeOther)
}

// sendProblem says why a message was not sent or saved, specifically, in the user's terms, with the status that
// goes with it. mail names the outcome (mail.SendError); the words are here.
func sendProblem(err error) *formProblem {
	const kept = " Your message was not sent; it is kept below."
	p := func(status int, msg string) *formProblem { return &formProblem{status: status, msg: msg} }
	var se *mail.SendError
	errors.As(err, &se)
	switch {
	case errors.Is(err, auth.ErrNeedsSignIn):
		return p(http.StatusUnauthorized, "Your sign-in has ended, so nothing was sent. Copy your text somewhere safe, then sign in again.")
	case errors.Is(err, mail.ErrAuthFailed):
		return p(http.StatusBadGateway, "The mail server did not accept your sign-in."+kept+" Signing in again usually fixes this (copy your text first).")
	case errors.Is(err, mail.ErrAuthUnavailable):
		return p(http.StatusServiceUnavailable, "The mail server could not check your sign-in just now (is the identity provider down?)."+kept+" Try again in a minute.")
	case errors.Is(err, mail.ErrQuota):
		return p(http.StatusInsufficientStorage, "Your mailbox is full."+kept+" Delete some messages, then try again.")
	case errors.Is(err, mail.ErrMaybeSent):
		return p(http.StatusGatewayTimeout, "The connection to the mail server broke just as your message was handed over, so it may "+
			"have been sent. Check with the recipient (or your Sent folder) before you send it again; your text is kept below.")
	case errors.Is(err, mail.ErrRecipientFull):
		if se != nil && se.Recipient != "" {
			return p(http.StatusUnprocessableEntity, "The mailbox of “"+se.Recipient+"” is full."+kept)
		}
		return p(http.StatusUnprocessableEntity, "A recipient's mailbox is full."+kept)
	case errors.Is(err, mail.ErrMessageTooBig):
		return p(http.StatusRequestEntityTooLarge, "The message is too big for the mail server."+kept+" Remove or shrink an attachment.")
	case errors.Is(err, mail.ErrSenderRefused):
		return p(http.StatusBadGateway, "The mail server does not let your account send from its address."+kept)
	case errors.Is(err, mail.ErrRecipientRefused):
		if se != nil && se.Recipient != "" {
			return p(http.StatusUnprocessableEntity, "The mail server refused a recipient, “"+se.Recipient+"” (the address may not exist)."+kept+" Check the addresses.")
		}
		return p(http.StatusUnprocessableEntity, "The mail server refused a recipient (the address may not exist)."+kept+" Check the addresses.")
	case errors.Is(err, mail.ErrSubmitBusy):
		return p(http.StatusServiceUnavailable, "The mail server is busy or refusing mail for a moment."+kept+" Try again in a minute.")
	case errors.Is(err, mail.ErrMessageRefused):
		return p(http.StatusBadGateway, "The mail server refused the message."+kept)
	case errors.Is(err, mail.ErrServerUnavailable), unreachable(err):
		return p(http.StatusBadGateway, "The mail server cannot be reached right now."+kept+" Try again in a moment.")
	}
	var e *Error
	if errors.As(mailError(err), &e) {
		return p(e.Status, e.Msg)
	}
	return p(http.StatusBadGateway, "Something went wrong talking to the mail server."+kept)
}

// addressProblem names the entry of an address field that is not an address (mail.AddressError), so that the page
// never carries a library's error text; an entry too long or with control characters is not repeated.
func addressProblem(err error) string {
	var ae *mail.AddressError
	if errors.As(err, &ae) && len(ae.Entry) <= 200 && !hasControl(ae.Entry) {
		return "“" + ae.Entry + "” is not an email address."
	}
	return "one of the addresses is not valid."
}

// domainOf is the right-hand side of an address, used for Message-ID (RFC 5322 section 3.6.4 suggests a domain
// the sender controls).
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return "postern.invalid"
}

// selfName is the user's display name for the From header: their setting, else the grant's identity (prefs); ""
// if unknown.
func (s *Server) selfName(r *http.Request) string { return s.prefs(r).Name }
