package web

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/postern/postern/mail"
)

// composePage is the data of templates/compose.html.
type composePage struct {
	pageBase
	Heading string
	From    string
	Form    composeForm
	// Problem says why the form came back; Field names the input at fault (to, cc, bcc, subject), which the
	// template marks aria-invalid and focuses.
	Problem, Field string
	// Focus is the input that gets autofocus: the field at fault, else To while it is empty, else the text.
	Focus     string
	CanSend   bool
	MaxUpload string
}

// composeForm is everything the editor carries between requests. Replies and forwards keep only a reference to
// the original (Orig, Fwd as "box/uid"): what is attached from it is fetched again when sending, so nothing large or
// forgeable travels through the browser.
type composeForm struct {
	To, Cc, Bcc, Subject, Body string
	// InReplyTo and References (space-separated) thread the reply (RFC 5322 section 3.6.4); Build refuses them
	// if they were tampered with to carry a line break.
	InReplyTo, References string
	// Orig is the message replied to, flagged \Answered once the reply is sent.
	Orig string
	// Fwd is the message forwarded; FwdAs is "attachment" or "inline".
	Fwd, FwdAs string
	// Draft is the UID in Drafts this form was resumed from; saving replaces it, sending deletes it.
	Draft uint32
	// Kept are attachments from earlier rounds of this form (see uploadStash).
	Kept []keptFile
	// FwdNote describes what the forward carries, for the user.
	FwdNote string
}

// composeFrom reads a submitted form.
func composeFrom(v map[string][]string) composeForm {
	g := func(k string) string {
		if x := v[k]; len(x) > 0 {
			return x[0]
		}
		return ""
	}
	f := composeForm{
		To: g("to"), Cc: g("cc"), Bcc: g("bcc"), Subject: g("subject"), Body: normalizeNewlines(g("body")),
		InReplyTo: g("in_reply_to"), References: g("references"), Orig: g("orig"), Fwd: g("fwd"), FwdAs: g("fwd_as"),
	}
	if n, err := strconv.ParseUint(g("draft"), 10, 32); err == nil {
		f.Draft = uint32(n)
	}
	return f
}

// normalizeNewlines turns the CRLF that browsers submit in a textarea (HTML "textarea wrapping") into LF; Build
// writes CRLF on the wire.
func normalizeNewlines(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// handleCompose opens the editor: empty, or prefilled as a reply (?reply=box/uid, ?replyall=box/uid), a forward
// (?forward=box/uid&as=attachment|inline) or a saved draft (?draft=UID in the Drafts folder).
func (s *Server) handleCompose(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var (
		f       composeForm
		heading = "New message"
		boxes   []mail.Mailbox
	)
	refBox, refUID, refKind := "", uint32(0), ""
	for _, k := range []string{"reply", "replyall", "forward"} {
		if v := q.Get(k); v != "" {
			box, uid, ok := parseMsgRef(v)
			if !ok {
				return &Error{Status: http.StatusBadRequest, Msg: "This link does not point to a message.", Retry: defaultReturnTo}
			}
			refBox, refUID, refKind = box, uid, k
			break
		}
	}
	draftUID := parseBefore(q.Get("draft"))
	asAttachment := q.Get("as") != "inline"
	grant := grantID(r)
	// self leaves the user out of a reply-all.
	self := mail.Address{Email: s.addressOf(r.Context(), grant)}
	var problem string
	addr, err := s.withMail(r.Context(), grant, func(ms *mail.Session) error {
		var err error
		if boxes, err = ms.Mailboxes(r.Context()); err != nil {
			return err
		}
		switch {
		case refKind != "":
			m, err := ms.Message(r.Context(), refBox, refUID)
			if err != nil {
				return err
			}
			ref := refBox + "/" + strconv.FormatUint(uint64(refUID), 10)
			if refKind == "forward" {
				raw, err := ms.Raw(r.Context(), refBox, refUID)
				if err != nil {
					return err
				}
				d := mail.Forward(m, self, raw, asAttachment)
				f = formFromDraft(d)
				f.Fwd, f.FwdAs = ref, map[bool]string{true: "attachment", false: "inline"}[asAttachment]
				f.FwdNote = forwardNote(d)
				heading = "Forward"
				return nil
			}
			f = formFromDraft(mail.Reply(m, self, refKind == "replyall"))
			f.Orig = ref
			heading = "Reply"
		case draftUID != 0:
			drafts := specialMailbox(boxes, mail.SpecialDrafts)
			if drafts == "" {
				return mail.ErrNoMailbox
			}
			var dropped int
			if f, dropped, err = s.resumeDraft(r.Context(), ms, grant, drafts, draftUID); err != nil {
				return err
			}
			if dropped > 0 {
				problem = "The server is short of room for attachments right now, so " + strconv.Itoa(dropped) + " attachment(s) of this draft could not be loaded. Saving or sending now would leave them out."
			}
			heading = "Draft"
		}
		return nil
	})
	if err != nil {
		return mailError(err)
	}
	if refKind == "" && draftUID == 0 {
		f.Body = signatureBlock(s.prefs(r).Signature) // a new message starts with the user's signature (settings.go)
	}
	s.renderCompose(w, r, http.StatusOK, addr, boxes, composePage{Heading: heading, Form: f, Problem: problem})
	return nil
}

// forwardNote tells the user what a forward will carry besides their text.
func forwardNote(d mail.Draft) string {
	switch {
	case len(d.Forwarded) > 0:
		return "The original message is attached."
	case len(d.Attachments) > 0:
		return "The original's " + strconv.Itoa(len(d.Attachments)) + " attachment(s) will be included."
	}
	return ""
}

// resumeDraft loads a saved draft into the editor. Its attachments go to the stash, so that the draft can be saved
// again or sent with them (dropped counts those the full stash refused); Bcc comes back from the draft's own header
// (mail.OwnCopy).
func (s *Server) resumeDraft(ctx context.Context, ms *mail.Session, grant, drafts string, uid uint32) (f composeForm, dropped int, err error) {
	m, err := ms.Message(ctx, drafts, uid)
	if err != nil {
		return composeForm{}, 0, err
	}
	f = composeForm{
		To: formatAddresses(m.To), Cc: formatAddresses(m.Cc), Bcc: formatAddresses(m.Bcc), Subject: m.Subject, Body: m.Text,
		InReplyTo: m.InReplyTo, References: strings.Join(m.References, " "), Draft: uid,
	}
	for _, p := range m.Attachments {
		part, data, err := ms.Part(ctx, drafts, uid, p.Path)
		if err != nil {
			return composeForm{}, 0, err
		}
		k, ok := s.uploads.put(userOfCtx(ctx, grant), grant, mail.Attachment{Filename: cleanFilename(part.Filename), ContentType: part.ContentType, Data: data})
		if !ok {
			dropped++
			continue
		}
		f.Kept = append(f.Kept, k)
	}
	return f, dropped, nil
}

func formFromDraft(d mail.Draft) composeForm {
	return composeForm{
		To: formatAddresses(d.To), Cc: formatAddresses(d.Cc), Bcc: formatAddresses(d.Bcc),
		Subject: d.Subject, Body: d.Text, InReplyTo: d.InReplyTo, References: strings.Join(d.References, " "),
	}
}

func (s *Server) renderCompose(w http.ResponseWriter, r *http.Request, status int, addr string, boxes []mail.Mailbox, p composePage) {
	if p.Heading == "" {
		p.Heading = "New message"
		switch {
		case p.Form.Orig != "":
			p.Heading = "Reply"
		case p.Form.Fwd != "":
			p.Heading = "Forward"
		case p.Form.Draft != 0:
			p.Heading = "Draft"
		}
	}
	p.pageBase = s.base(r, p.Heading)
	p.User = addr
	p.From = addr
	if boxes != nil {
		p.Folders = folderLinks(boxes, "")
	}
	p.CanSend = s.cfg.Sender != nil
	switch {
	case p.Field != "" && p.Field != "attach":
		p.Focus = p.Field
	case p.Field == "" && p.Form.To == "":
		p.Focus = "to"
	case p.Field == "":
		p.Focus = "body"
	}
	p.MaxUpload = formatSize(s.cfg.MaxUpload)
	s.render(w, r, status, "compose", &p)
}

// parseMsgRef splits "box/uid" at the last slash, since hierarchical mailbox names contain slashes themselves.
func parseMsgRef(ref string) (string, uint32, bool) {
	i := strings.LastIndexByte(ref, '/')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(ref[i+1:], 10, 32)
	if err != nil || n == 0 || !validBoxName(ref[:i]) {
		return "", 0, false
	}
	return ref[:i], uint32(n), true
}

// formatAddresses writes addresses back into an editable field, quoting display names that would not parse bare.
func formatAddresses(l []mail.Address) string {
	var out string
	for _, a := range l {
		out = joinNonEmpty(out, formatAddress(a))
	}
	return out
}

func formatAddress(a mail.Address) string {
	if a.Name == "" || a.Name == a.Email {
		return a.Email
	}
	name := a.Name
	if strings.ContainsAny(name, `()<>[]:;@\,."`) {
		name = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
	}
	return name + " <" + a.Email + ">"
}

func joinNonEmpty(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}

func idsOf(k []keptFile) []string {
	out := make([]string, len(k))
	for i, x := range k {
		out[i] = x.ID
	}
	return out
}

// addressOf is the grant's address (for the page header, and to leave the user out of a reply-all) read from the
// grant's identity, without asking for a token; "" if unknown.
func (s *Server) addressOf(ctx context.Context, grant string) string {
	info, err := s.tokens.Info(ctx, grant)
	if err != nil {
		return ""
	}
	return info.Identity.Email
}
