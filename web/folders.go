package web

import (
	"errors"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/postern/postern/mail"
)

// foldersPage is the data of templates/folders.html: every folder with its rename and delete forms, and a create
// form. After a refused change the page is shown again with Problem and the user's input in Form.
type foldersPage struct {
	pageBase
	Rows    []folderRow
	Delim   string
	Problem string
	Form    folderForm
}

type folderRow struct {
	Name, Label, Special, URL string
	Messages, Unseen          uint32
	// Protected folders (Inbox and the special-use ones) cannot be renamed or deleted: other mail apps and the
	// server itself file mail into them by role.
	Protected bool
}

// folderForm is what the user submitted, kept to re-show it.
type folderForm struct {
	Action, Name, To string
}

var folderNotices = map[string]string{
	"create": "Folder created.",
	"rename": "Folder renamed.",
	"delete": "Folder deleted.",
}

// handleFolders shows the folder manager. The folder list in the side bar only links; changing folders is a
// separate page so that a stray click in the list can never rename or delete anything.
func (s *Server) handleFolders(w http.ResponseWriter, r *http.Request) error {
	var boxes []mail.Mailbox
	addr, err := s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		var err error
		boxes, err = ms.Mailboxes(r.Context())
		return err
	})
	if err != nil {
		return mailError(err)
	}
	s.renderFolders(w, r, http.StatusOK, addr, boxes, foldersPage{})
	return nil
}

func (s *Server) renderFolders(w http.ResponseWriter, r *http.Request, status int, addr string, boxes []mail.Mailbox, p foldersPage) {
	p.pageBase = s.base(r, "Folders")
	p.User = addr
	p.Folders = folderLinks(boxes, "")
	p.Delim = delimiterOf(boxes)
	for _, b := range boxes {
		if b.NoSelect {
			continue
		}
		p.Rows = append(p.Rows, folderRow{Name: b.Name, Label: boxLabel(b.Name), URL: mailboxURL(b.Name), Special: b.Special, Messages: b.Messages, Unseen: b.Unseen, Protected: b.Special != ""})
	}
	s.render(w, r, status, "folders", &p)
}

// handleFolderAction creates, renames or deletes a folder (POST /folders, action=create|rename|delete). The checks
// run against a fresh folder list in the same IMAP session as the change, and a refused change shows the manager
// again with a specific reason and the name as typed.
func (s *Server) handleFolderAction(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return &Error{Status: http.StatusBadRequest, Msg: "This form could not be read. Please try again.", Retry: "/folders", Err: err}
	}
	form := folderForm{
		Action: r.PostForm.Get("action"),
		Name:   strings.TrimSpace(r.PostForm.Get("name")),
		To:     strings.TrimSpace(r.PostForm.Get("to")),
	}
	confirmed := r.PostForm.Get("confirm") != ""
	var (
		boxes   []mail.Mailbox
		problem string
		status  int
	)
	addr, err := s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		var err error
		if boxes, err = ms.Mailboxes(r.Context()); err != nil {
			return err
		}
		if problem, status = checkFolderAction(boxes, form, confirmed); problem != "" {
			return nil
		}
		switch form.Action {
		case "create":
			return ms.CreateMailbox(r.Context(), form.Name)
		case "rename":
			return ms.RenameMailbox(r.Context(), form.Name, form.To)
		default:
			return ms.DeleteMailbox(r.Context(), form.Name)
		}
	})
	if errors.Is(err, mail.ErrNoMailbox) {
		problem, status, err = "That folder does not exist any more: it may have been renamed or deleted elsewhere.", http.StatusNotFound, nil
		s.log(r).Info("folder gone", "action", form.Action)
	}
	if err != nil {
		return mailError(err)
	}
	if problem != "" {
		s.renderFolders(w, r, status, addr, boxes, foldersPage{Problem: problem, Form: form})
		return nil
	}
	s.flashNext(w, r, flash{Text: folderNotices[form.Action]}, nil)
	http.Redirect(w, r, "/folders", http.StatusSeeOther)
	return nil
}

// checkFolderAction returns why a folder change must not be attempted ("" if it may), with the status to answer.
func checkFolderAction(boxes []mail.Mailbox, f folderForm, confirmed bool) (string, int) {
	existing := func(name string) (mail.Mailbox, bool) {
		for _, b := range boxes {
			if b.Name == name {
				return b, true
			}
		}
		return mail.Mailbox{}, false
	}
	delim := delimiterOf(boxes)
	switch f.Action {
	case "create":
		if p := checkFolderName(f.Name, delim); p != "" {
			return p, http.StatusBadRequest
		}
		if _, ok := existing(f.Name); ok {
			return "A folder with this name already exists.", http.StatusConflict
		}
	case "rename", "delete":
		b, ok := existing(f.Name)
		if !ok {
			return "That folder does not exist any more: it may have been renamed or deleted elsewhere.", http.StatusNotFound
		}
		if b.Special != "" {
			return boxLabel(b.Name) + " is a special folder (your mail apps file mail into it), so it cannot be renamed or deleted.", http.StatusBadRequest
		}
		if f.Action == "delete" {
			if !confirmed {
				return "Tick the box to confirm that the folder and the messages in it should be deleted.", http.StatusBadRequest
			}
			return "", 0
		}
		if p := checkFolderName(f.To, delim); p != "" {
			return p, http.StatusBadRequest
		}
		if f.To == f.Name {
			return "The new name is the same as the old one.", http.StatusBadRequest
		}
		if _, ok := existing(f.To); ok {
			return "A folder with this name already exists.", http.StatusConflict
		}
		if strings.HasPrefix(f.To, f.Name+delim) {
			return "A folder cannot be moved inside itself.", http.StatusBadRequest
		}
	default:
		return "Choose whether to create, rename or delete a folder.", http.StatusBadRequest
	}
	return "", 0
}

// checkFolderName returns why name cannot be a folder name, "" if it can. IMAP allows nearly anything (RFC 9051
// section 5.1), but "*" and "%" are LIST wildcards that make such a folder hard to list in every client, empty
// hierarchy levels are refused by most servers, and INBOX is reserved in any case.
func checkFolderName(name, delim string) string {
	switch {
	case name == "":
		return "Enter a folder name."
	case len(name) > 200:
		return "This name is too long; keep it under 200 characters."
	case !utf8.ValidString(name) || strings.IndexFunc(name, invisible) >= 0:
		// C0 and C1 controls, bidi controls (a U+202E makes "Invoices" and "Archive" trade places in the list) and
		// invisible characters (two folders that look alike): display.go.
		return "Folder names cannot contain control, invisible or text-direction characters."
	case strings.ContainsAny(name, "*%"):
		return "Folder names cannot contain * or %."
	case strings.EqualFold(name, "INBOX"):
		return "INBOX is reserved for incoming mail; choose another name."
	}
	if delim != "" {
		for _, level := range strings.Split(name, delim) {
			if strings.TrimSpace(level) == "" {
				return "Each level of a folder name needs some text: no leading, trailing or doubled “" + delim + "”."
			}
		}
	}
	return ""
}

// errNoFolder answers a request for a folder that does not exist, or that no folder could be called.
var errNoFolder = &Error{Status: http.StatusNotFound, Msg: "There is no folder with this name.", Retry: defaultReturnTo}

// validBoxName reports whether name could name a folder at all: valid UTF-8 (IMAP4rev2 names are UTF-8, RFC 9051
// section 5.1), no C0 or C1 control character (no server accepts them, and some answer BAD rather than "no such
// mailbox"), and a sane length. Others are answered 404 here, before any IMAP command: a name no folder can have is
// a missing page, not a mail-server failure (502).
func validBoxName(name string) bool {
	return name != "" && len(name) <= 1000 && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsControl) < 0
}

// delimiterOf returns the account's hierarchy delimiter ("/" on Stalwart, "." on some Dovecot setups).
func delimiterOf(boxes []mail.Mailbox) string {
	for _, b := range boxes {
		if b.Delimiter != "" {
			return b.Delimiter
		}
	}
	return "/"
}
