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
	if box == "" {
		return &Error{Status: http.StatusBadRequest, Msg: "This form did not say which folder to act on. Go back to the folder and try again.", Retry: back}
	}
	op := f.Get("op")
	to := f.Get("to")
	if len(uids) == 0 {
		// Not a dead end: back to the same page, with the reason on it.
		s.flashNext(w, r, flash{Text: "Select at least one message first: tick the box at the start of its row.", Problem: true, Back: back}, nil)
		http.Redirect(w, r, back, http.StatusSeeOther)
		return nil
	}
	if _, ok := actOps[op]; !ok {
		s.flashNext(w, r, flash{Text: "Choose what to do with the selected messages.", Problem: true, Back: back, Selected: uids}, nil)
		http.Redirect(w, r, back, http.StatusSeeOther)
		return nil
	}
	if op == "move" && to == "" {
		s.flashNext(w, r, flash{Text: "Choose the folder to move the messages to, then press Move.", Problem: true, Back: back, Selected: uids}, nil)
		http.Redirect(w, r, back, http.StatusSeeOther)
		return nil
	}
	var (
		refusal *Error
		dest    string
		moved   []uint32
		forever bool
	)
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
				forever = true
				return ms.Expunge(r.Context(), box, uids)
			}
		}
		d, refused := moveTarget(boxes, op, to)
		if refused != nil {
			refused.Retry = back
			refusal = refused
			return nil
		}
		dest = d
		if dest == box {
			return nil // already there: nothing to do, and not worth an error
		}
		moved, err = ms.MoveUIDs(r.Context(), box, uids, dest)
		return err
	})
	if refusal != nil {
		return refusal
	}
	if err != nil {
		return actError(err, op, back)
	}
	fl, undo := actFlash(op, box, dest, uids, moved, forever)
	fl.Back = back
	s.flashNext(w, r, fl, undo)
	http.Redirect(w, r, back+anchorAfter(f.Get("page_uids"), uids, fl.Selected != nil), http.StatusSeeOther)
	return nil
}

// actFlash says what an action did, and how to undo it: a flag change by the opposite change, a move by moving the
// messages' new UIDs (COPYUID) back. A server that does not report the new UIDs gets no Undo; nor does deleting for
// good.
func actFlash(op, box, dest string, uids, moved []uint32, forever bool) (flash, *undoRecord) {
	n := countMessages(len(uids))
	inverse := map[string]string{"read": "unread", "unread": "read", "flag": "unflag", "unflag": "flag"}
	switch op {
	case "read", "unread", "flag", "unflag":
		what := map[string]string{"read": "read", "unread": "unread", "flag": "flagged", "unflag": "not flagged"}[op]
		return flash{Text: "Marked " + n + " as " + what + ".", Undo: true, Selected: uids},
			&undoRecord{Op: inverse[op], Box: box, UIDs: uids}
	}
	if forever {
		return flash{Text: "Deleted " + n + " for good."}, nil
	}
	if dest == box {
		return flash{Text: "The messages are already in " + boxLabel(dest) + ".", Selected: uids}, nil
	}
	text := "Moved " + n + " to " + boxLabel(dest) + "."
	if op == "delete" {
		text = "Deleted " + n + " (moved to " + boxLabel(dest) + ")."
	}
	if len(moved) != len(uids) {
		// Without the new UIDs (no COPYUID, or some messages were gone) an undo could move the wrong messages.
		return flash{Text: text}, nil
	}
	return flash{Text: text, Undo: true}, &undoRecord{Op: "move", Box: dest, To: box, UIDs: moved}
}

// anchorAfter is the fragment that brings the user back to where they were in the list: the first selected row when
// the rows stay (a flag change), else the row after the last one acted on (or before it, at the end of the page).
// page is the list's UIDs in order, as the form sent them.
func anchorAfter(page string, acted []uint32, stay bool) string {
	if stay {
		return "#m-" + strconv.FormatUint(uint64(acted[0]), 10)
	}
	rows, err := parseUIDsOrdered(page)
	if err != nil || len(rows) == 0 {
		return ""
	}
	gone := map[uint32]bool{}
	for _, u := range acted {
		gone[u] = true
	}
	last := -1
	for i, u := range rows {
		if gone[u] {
			last = i
		}
	}
	if last < 0 {
		return ""
	}
	for i := last + 1; i < len(rows); i++ {
		if !gone[rows[i]] {
			return "#m-" + strconv.FormatUint(uint64(rows[i]), 10)
		}
	}
	for i := last - 1; i >= 0; i-- {
		if !gone[rows[i]] {
			return "#m-" + strconv.FormatUint(uint64(rows[i]), 10)
		}
	}
	return ""
}

// parseUIDsOrdered reads a comma-separated UID list keeping its order (the page's), at most maxActUIDs.
func parseUIDsOrdered(s string) ([]uint32, error) {
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil || n == 0 || len(out) >= maxActUIDs {
			return nil, errors.New("web: bad page uid list")
		}
		out = append(out, uint32(n))
	}
	return out, nil
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
