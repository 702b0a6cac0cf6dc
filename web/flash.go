package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/postern/postern/mail"
)

// A flash is the one-off notice the page after an action shows ("Moved 3 messages to Archive — Undo"). It lives in
// the server-side session, not in the URL: a reloaded, bookmarked or shared address never repeats it, and a crafted
// link cannot put words on a page. The next page rendered for the session takes it (render), so it is shown once.
type flash struct {
	Text string `json:"t"`
	// Problem shows it as a problem (role=alert), e.g. acting with nothing selected.
	Problem bool `json:"p,omitempty"`
	// Undo offers the Undo button; the session holds the undo record (undoRecord) until it is used or replaced.
	Undo bool `json:"u,omitempty"`
	// Back is the page the action returned to; the Undo form returns there too.
	Back string `json:"b,omitempty"`
	// Selected are the UIDs of the list page to show selected again, so that a second action can follow the first.
	Selected []uint32 `json:"s,omitempty"`
}

// IsSelected reports whether the list row uid was selected before the action.
func (f *flash) IsSelected(uid uint32) bool {
	if f == nil {
		return false
	}
	for _, u := range f.Selected {
		if u == uid {
			return true
		}
	}
	return false
}

// undoRecord is how to reverse the last action: move UIDs of Box back to To, or set a flag back.
type undoRecord struct {
	// Op is "move" (UIDs are in Box, they go back to To) or one of read, unread, flag, unflag (applied to UIDs in
	// Box).
	Op   string   `json:"o"`
	Box  string   `json:"b"`
	To   string   `json:"to,omitempty"`
	UIDs []uint32 `json:"u"`
}

// Session keys of the flash and the undo record, JSON strings (gob needs nothing registered for a string).
const (
	keyFlash = "flash"
	keyUndo  = "undo"
)

func (x session) setJSON(key string, v any) {
	if v == nil {
		delete(x.s.Values, key)
		return
	}
	b, _ := json.Marshal(v)
	x.s.Values[key] = string(b)
}

func (x session) getJSON(key string, v any) bool {
	raw, ok := x.s.Values[key].(string)
	return ok && json.Unmarshal([]byte(raw), v) == nil
}

// flashNext stores f (and the undo record u, or none) for the next page. A failure to save costs only the notice.
func (s *Server) flashNext(w http.ResponseWriter, r *http.Request, f flash, u *undoRecord) {
	sess, err := s.session(r)
	if err != nil || sess.GrantID() == "" {
		return
	}
	sess.setJSON(keyFlash, f)
	if u != nil {
		sess.setJSON(keyUndo, u)
	} else {
		sess.setJSON(keyUndo, nil)
	}
	if err := sess.s.Save(r, w); err != nil {
		s.log(r).Warn("flash not saved", "err", err)
	}
}

// takeFlash returns the pending flash of a signed-in session and forgets it; nil if there is none.
func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	if grantID(r) == "" {
		return nil
	}
	sess, err := s.session(r)
	if err != nil {
		return nil
	}
	var f flash
	if !sess.getJSON(keyFlash, &f) {
		return nil
	}
	sess.setJSON(keyFlash, nil)
	if err := sess.s.Save(r, w); err != nil {
		s.log(r).Warn("flash not cleared", "err", err)
	}
	return &f
}

// flashHolder is implemented by every page (through pageBase), so that render can hand it the pending flash.
type flashHolder interface{ flashSlot() **flash }

func (p *pageBase) flashSlot() **flash { return &p.Flash }

// handleUndo reverses the action the last flash offered to undo (POST /undo), once: the record is dropped whether
// it works or not, so a double click cannot move the messages back and forth.
func (s *Server) handleUndo(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	_ = r.ParseForm()
	back := defaultReturnTo
	if rt := r.PostForm.Get("return_to"); rt != "" && safeReturnTo(rt) == rt {
		back = rt
	}
	sess, err := s.session(r)
	if err != nil {
		return err
	}
	var u undoRecord
	if !sess.getJSON(keyUndo, &u) || len(u.UIDs) == 0 {
		s.flashNext(w, r, flash{Text: "There is nothing to undo any more.", Problem: true, Back: back}, nil)
		http.Redirect(w, r, back, http.StatusSeeOther)
		return nil
	}
	var restored []uint32
	_, err = s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		switch u.Op {
		case "move":
			var err error
			restored, err = ms.MoveUIDs(r.Context(), u.Box, u.UIDs, u.To)
			return err
		case "read", "unread":
			return ms.SetFlag(r.Context(), u.Box, u.UIDs, mail.FlagSeen, u.Op == "read")
		case "flag", "unflag":
			return ms.SetFlag(r.Context(), u.Box, u.UIDs, mail.FlagFlagged, u.Op == "flag")
		}
		return errors.New("web: unknown undo op")
	})
	if err != nil {
		s.flashNext(w, r, flash{}, nil) // drops the record
		return actError(err, "move", back)
	}
	f := flash{Back: back}
	switch u.Op {
	case "move":
		f.Text = "Undone: " + countMessages(len(u.UIDs)) + " back in " + boxLabel(u.To) + "."
		if back == mailboxURL(u.To) || len(back) > len(mailboxURL(u.To)) && back[:len(mailboxURL(u.To))+1] == mailboxURL(u.To)+"?" {
			f.Selected = restored
		}
	default:
		f.Text = "Undone."
		f.Selected = u.UIDs
	}
	s.flashNext(w, r, f, nil)
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}

// countMessages is "1 message" or "3 messages".
func countMessages(n int) string {
	if n == 1 {
		return "1 message"
	}
	return strconv.Itoa(n) + " messages"
}
