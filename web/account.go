package web

import (
	"net/http"
	"time"

	"github.com/postern/postern/auth"
)

type sessionPage struct {
	pageBase
	Info auth.GrantInfo
	Now  time.Time
}

// handleSession is the account page: who the user is signed in as, links to their settings and devices, and "Sign
// out". The grant's state (so that a "degraded" IdP or an ended grant is visible instead of a mystery) is kept in a
// collapsed "Technical details" section, and raised as a notice when it needs the user.
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) error {
	info, err := s.tokens.Info(r.Context(), grantID(r))
	if err != nil {
		return err
	}
	page := sessionPage{pageBase: s.base(r, "Your account"), Info: info, Now: time.Now()}
	page.User = info.Identity.Email
	s.render(w, r, http.StatusOK, "session", &page)
	return nil
}
