package web

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/postern/postern/mail"
)

// maxActUIDs bounds one action; a page shows 50 messages, so this only stops abuse.
const maxActUIDs = 1000

// handleAct applies one operation to the selected messages of a folder (POST /act: box, uids, op, optional to and
// return_to) and sends the browser back with 303, so that reload does not repeat it.
//
// op is read, unread, flag, unflag, move (to=folder), archive, junk or delete. The destination of archive, junk and
// delete is found by special-use role (RFC 6154), not by name, so it works with "Deleted Items" or "Papierkorb"
// alike. Delete moves to Trash, the undo-friendly default; only inside Trash does it delete for good.
//
// return_to lets the message page send the user on to the next message; it must be a same-origin path
// (safeReturnTo), else the folder's list is used.
func (s *Server) handleAct(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	if err := r.ParseForm(); err != nil {
		return &Error{Status: http.StatusBadRequest, Msg: "This form could not be read. Please try again.", Retry: defaultReturnTo, Err: err}
	}
	f := r.PostForm
	box := f.Get("box")
	back := mailboxURL(box)
	if box == "" {
		back = defaultReturnTo
	}
	if rt := f.Get("return_to"); rt != "" && safeReturnTo(rt) == rt {
		back = rt
	}
	uids, err := parseUIDs(append(f["uids"], f["uids[]"]...))
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Msg: "The selection could not be read. Please reload the page and try again.", Retry: back, Err: err}
	}
	if box == "" || len(uids) == 0 {
		return &Error{Status: http.StatusBadRequest, Msg: "Select at least one message first.", Retry: back}
	}
	op := f.Get("op")
	to := f.Get("to")
	if _, ok := actOps[op]; !ok {
		return &Error{Status: http.StatusBadRequest, Msg: "Choose what to do with the selected messages.", Retry: back}
	}
	var refusal *Error
	_, err = s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		boxes, err := ms.Mailboxes(r.Context())
		if err != nil {
			return err
		}
		from, ok := findMailbox(boxes, box)
		if !ok {
			refusal = &Error{Status: http.StatusNotFound, Msg: "This folder does not exist (any more): it may have been renamed or deleted in another window or mail app.", Retry: defaultReturnTo}
			return nil
		}
		switch op {
		case "read", "unread":
			return ms.SetFlag(r.Context(), box, uids, mail.FlagSeen, op == "read")
		case "flag", "unflag":
			return ms.SetFlag(r.Context(), box, uids, mail.FlagFlagged, op == "flag")
		case "delete":
			if from.Special == mail.SpecialTrash {
				return ms.Expunge(r.Context(), box, uids)
			}
		}
		dest, refused := moveTarget(boxes, op, to)
		if refused != nil {
			refused.Retry = back
			refusal = refused
			return nil
		}
		if dest == box {
			return nil // already there: nothing to do, and not worth an error
		}
		return ms.Move(r.Context(), box, uids, dest)
	})
	if refusal != nil {
		return refusal
	}
	if err != nil {
		return actError(err, op, back)
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}

// actOps are the operations POST /act knows, with the special-use role their destination has.
var actOps = map[string]string{
	"read": "", "unread": "", "flag": "", "unflag": "", "move": "",
	"delete":  mail.SpecialTrash,
	"archive": mail.SpecialArchive,
	"junk":    mail.SpecialJunk,
}

// moveTarget returns the folder op moves to, or the reason it cannot.
func moveTarget(boxes []mail.Mailbox, op, to string) (string, *Error) {
	if op == "move" {
		if to == "" {
			return "", &Error{Status: http.StatusBadRequest, Msg: "Choose the folder to move the messages to."}
		}
		if !hasMailbox(boxes, to) {
			return "", &Error{Status: http.StatusNotFound, Msg: "That folder does not exist (any more). Pick another one."}
		}
		return to, nil
	}
	role := actOps[op]
	dest := specialMailbox(boxes, role)
	if dest == "" {
		name := map[string]string{mail.SpecialTrash: "Trash", mail.SpecialArchive: "Archive", mail.SpecialJunk: "Junk"}[role]
		return "", &Error{Status: http.StatusConflict, Msg: "Your account has no " + name + " folder. Create a folder for it on your mail server, or move the messages to a folder of your choice."}
	}
	return dest, nil
}

// actError names what went wrong in terms of the action; the cause goes to the log.
func actError(err error, op, back string) error {
	var e *Error
	switch {
	case errors.Is(err, mail.ErrNoMessage):
		e = &Error{Status: http.StatusNotFound, Msg: "Some of the selected messages are no longer there: they were probably moved or deleted in another window or mail app. Reload and try again.", Err: err}
	case errors.Is(err, mail.ErrNoMailbox) && (op == "move" || actOps[op] != ""):
		e = &Error{Status: http.StatusNotFound, Msg: "The folder the messages were to go to does not exist (any more).", Err: err}
	case errors.Is(err, mail.ErrQuota):
		e = &Error{Status: http.StatusInsufficientStorage, Msg: "The destination folder is over your quota. Empty the Trash or delete some messages, then try again.", Err: err}
	default:
		me := mailError(err)
		if !errors.As(me, &e) {
			return me // authentication: serveError sends the user to sign in
		}
	}
	e.Retry = back
	return e
}

// parseUIDs reads the selected UIDs: positive 32-bit integers (RFC 9051 section 2.3.1.1), deduplicated, sorted.
func parseUIDs(in []string) ([]uint32, error) {
	var out []uint32
	for _, v := range in {
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil || n == 0 {
				return nil, errors.New("web: bad uid in selection")
			}
			out = append(out, uint32(n))
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > maxActUIDs {
		return nil, errors.New("web: selection too large")
	}
	return out, nil
}
