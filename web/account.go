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

// handleSession shows who the user is and the state of their grant, so a "degraded" IdP or an ended grant is
// visible instead of a mystery.
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) error {
	info, err := s.tokens.Info(r.Context(), grantID(r))
	if err != nil {
		return err
	}
	page := sessionPage{pageBase: s.base(r, "Your session"), Info: info, Now: time.Now()}
	page.User = info.Identity.Email
	s.render(w, r, http.StatusOK, "session", &page)
	return nil
}
