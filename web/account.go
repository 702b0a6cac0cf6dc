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
	// DevicesOn says the bridge is enabled; Devices are the names of the user's connected (not revoked) mail apps.
	DevicesOn bool
	Devices   []string
}

// handleSession is the account page: who the user is signed in as, their devices, links to Settings and Devices,
// and "Sign out". The grant's state (so that a "degraded" IdP or an ended grant is visible instead of a mystery) is
// kept in a collapsed "Technical details" section, and raised as a notice when it needs the user.
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) error {
	info, err := s.tokens.Info(r.Context(), grantID(r))
	if err != nil {
		return err
	}
	page := sessionPage{pageBase: s.base(r, "Your account"), Info: info, Now: time.Now(), DevicesOn: s.devicesEnabled()}
	page.User = info.Identity.Email
	if page.DevicesOn {
		ds, err := s.cfg.Devices.List(r.Context(), info.Identity.Issuer, info.Identity.Subject)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if !d.Revoked() {
				page.Devices = append(page.Devices, d.Name)
			}
		}
	}
	s.render(w, r, http.StatusOK, "session", &page)
	return nil
}
