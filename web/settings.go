package web

// The Settings page (issue 15): display name, signature, time zone, page size, conversations, and the senders whose
// remote content is always shown. Settings are kept server-side per person (store.Settings, keyed by the OIDC
// identity like devices), so they follow the user to every browser; the store checks every value
// (store.Settings.Check) and this page shows its plain-words problems next to the fields.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/mail"
)

// SettingsStore keeps each person's settings; *store.SQLite and *store.Postgres implement it.
type SettingsStore interface {
	// Settings returns store.DefaultSettings for a person who never saved any.
	Settings(ctx context.Context, issuer, subject string) (store.Settings, error)
	// SaveSettings checks (and normalises) st and stores it whole; a store.InvalidSettingsError names the problems.
	SaveSettings(ctx context.Context, st *store.Settings) error
}

// prefs are the signed-in user's settings as the pages use them: what they chose, with the defaults filled in.
type prefs struct {
	// Issuer and Subject identify the user; empty on public pages.
	Issuer, Subject string
	// Name is the display name of mail they send: their setting, else the IdP's name claim.
	Name string
	// Signature is their plain-text signature, "" for none.
	Signature string
	// PageSize is the number of list rows per page: their choice, else Config.PageSize.
	PageSize int
	// Conversations says the list groups messages into conversations.
	Conversations bool
	// Zone is where their times are shown: their setting, else the browser's zone (tzCookie), else UTC.
	Zone *time.Location
	// saved is the settings as stored, for the remote-content allowlist.
	saved store.Settings
}

// ShowsRemote reports whether remote content from addr is always shown (the sender or its domain is on the list).
func (p prefs) ShowsRemote(addr string) bool { return p.saved.ShowsRemote(addr) }

// clock is the user's clock for the pages.
func (p prefs) clock() clock { return clock{loc: p.Zone} }

// prefsKey holds a *prefsMemo in a signed-in request's context (withGrant), so that a page reads the settings once
// however many times it asks.
type prefsKey struct{}

type prefsMemo struct {
	once sync.Once
	p    prefs
}

// prefs returns the request's user's settings; on a public page, or if they cannot be read (logged), the defaults.
func (s *Server) prefs(r *http.Request) prefs {
	if m, ok := r.Context().Value(prefsKey{}).(*prefsMemo); ok {
		m.once.Do(func() { m.p = s.loadPrefs(r) })
		return m.p
	}
	return s.loadPrefs(r)
}

func (s *Server) loadPrefs(r *http.Request) prefs {
	st := store.DefaultSettings("", "")
	var idpName string
	if g := grantID(r); g != "" {
		if info, err := s.tokens.Info(r.Context(), g); err == nil {
			id := info.Identity
			idpName, st = id.Name, store.DefaultSettings(id.Issuer, id.Subject)
			if s.cfg.Settings != nil {
				if got, err := s.cfg.Settings.Settings(r.Context(), id.Issuer, id.Subject); err == nil {
					st = got
				} else {
					s.log(r).Warn("settings not read; showing the defaults", slog.Any("err", err))
				}
			}
		}
	}
	p := prefs{Issuer: st.Issuer, Subject: st.Subject, Name: st.DisplayName, Signature: st.Signature,
		PageSize: st.PageSize, Conversations: st.Conversations, saved: st}
	if p.Name == "" {
		p.Name = idpName
	}
	if p.PageSize == 0 {
		p.PageSize = s.cfg.PageSize
	}
	if loc, ok := store.TimeZone(st.TimeZone); ok {
		p.Zone = loc
	} else if loc := browserZone(r); loc != nil {
		p.Zone = loc
	} else {
		p.Zone = time.UTC
	}
	return p
}

// settingsForm is what the form carries, as typed.
type settingsForm struct {
	DisplayName, Signature, TimeZone string
	// PageSize is 0 for the server's default.
	PageSize      int
	Conversations bool
	// RemoteSenders is one address or domain per line.
	RemoteSenders string
}

// settingsPage is the data of templates/settings.html.
type settingsPage struct {
	pageBase
	Form settingsForm
	// Problems are the fields at fault, shown next to them; nil when the form is fine.
	Problems store.InvalidSettingsError
	// IdPName is the name the identity provider gives, used when DisplayName is empty.
	IdPName string
	// BrowserZone is the zone the browser reported, "" if it did not (no script).
	BrowserZone     string
	DefaultPageSize int
	PageSizes       []int
	Zones           []string
	MaxDisplayName  int
	MaxSignature    int
}

// Problem is the problem with one field, "" if none.
func (p *settingsPage) Problem(field string) string { return p.Problems.Problem(field) }

// commonZones fill the time-zone field's suggestions; any other IANA name may be typed.
var commonZones = []string{
	"UTC",
	"Africa/Cairo", "Africa/Johannesburg", "Africa/Lagos", "Africa/Nairobi",
	"America/Anchorage", "America/Argentina/Buenos_Aires", "America/Bogota", "America/Chicago", "America/Denver",
	"America/Halifax", "America/Los_Angeles", "America/Mexico_City", "America/New_York", "America/Phoenix",
	"America/Santiago", "America/Sao_Paulo", "America/St_Johns", "America/Toronto", "America/Vancouver",
	"Asia/Bangkok", "Asia/Dhaka", "Asia/Dubai", "Asia/Hong_Kong", "Asia/Jakarta", "Asia/Jerusalem", "Asia/Karachi",
	"Asia/Kathmandu", "Asia/Kolkata", "Asia/Manila", "Asia/Seoul", "Asia/Shanghai", "Asia/Singapore", "Asia/Taipei",
	"Asia/Tehran", "Asia/Tokyo",
	"Atlantic/Azores", "Atlantic/Reykjavik",
	"Australia/Adelaide", "Australia/Brisbane", "Australia/Perth", "Australia/Sydney",
	"Europe/Amsterdam", "Europe/Athens", "Europe/Berlin", "Europe/Brussels", "Europe/Dublin", "Europe/Helsinki",
	"Europe/Istanbul", "Europe/Lisbon", "Europe/London", "Europe/Madrid", "Europe/Moscow", "Europe/Paris",
	"Europe/Prague", "Europe/Rome", "Europe/Stockholm", "Europe/Vienna", "Europe/Warsaw", "Europe/Zurich",
	"Pacific/Auckland", "Pacific/Honolulu",
}

// maxSettingsForm bounds the settings form's body: the longest valid form is well under it.
const maxSettingsForm = 64 << 10

// handleSettings shows the settings form with what the user saved.
func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Settings == nil {
		return errNoSettings
	}
	p := s.prefs(r)
	st := p.saved
	page := s.settingsPage(r, settingsForm{
		DisplayName: st.DisplayName, Signature: st.Signature, TimeZone: st.TimeZone, PageSize: st.PageSize,
		Conversations: st.Conversations, RemoteSenders: strings.Join(st.RemoteSenders, "\n"),
	})
	s.render(w, r, http.StatusOK, "settings", page)
	return nil
}

var errNoSettings = &Error{Status: http.StatusNotFound, Msg: "Settings are not available on this server.", Retry: defaultReturnTo}

// handleSaveSettings stores the form (POST /settings) and answers 303 to the form with a notice, or shows the form
// again with the problems next to the fields and everything typed kept.
func (s *Server) handleSaveSettings(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Settings == nil {
		return errNoSettings
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSettingsForm)
	if err := r.ParseForm(); err != nil {
		return &Error{Status: http.StatusRequestEntityTooLarge, Msg: "The form is too large to save. Please shorten the signature or the list of senders.", Retry: "/settings", Err: err}
	}
	f := settingsForm{
		DisplayName: r.PostForm.Get("display_name"), Signature: r.PostForm.Get("signature"),
		TimeZone: r.PostForm.Get("time_zone"), Conversations: r.PostForm.Get("conversations") == "on",
		RemoteSenders: r.PostForm.Get("remote_senders"),
	}
	if v := r.PostForm.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			n = -1 // not a number: Check names it
		}
		f.PageSize = n
	}
	p := s.prefs(r)
	if p.Issuer == "" {
		return &Error{Status: http.StatusUnauthorized, Msg: "Please sign in again to save your settings.", Retry: "/login?return_to=%2Fsettings"}
	}
	st := store.Settings{
		Issuer: p.Issuer, Subject: p.Subject, DisplayName: f.DisplayName, Signature: f.Signature,
		TimeZone: f.TimeZone, PageSize: f.PageSize, Conversations: f.Conversations,
		RemoteSenders: senderList(f.RemoteSenders),
	}
	err := s.cfg.Settings.SaveSettings(r.Context(), &st)
	var inv store.InvalidSettingsError
	if errors.As(err, &inv) {
		page := s.settingsPage(r, f)
		page.Problems = inv
		s.render(w, r, http.StatusBadRequest, "settings", page)
		return nil
	}
	if err != nil {
		return err
	}
	s.flashNext(w, r, flash{Text: "Your settings are saved.", Back: "/settings"}, nil)
	http.Redirect(w, r, "/settings", http.StatusSeeOther)
	return nil
}

// handleTrustSender puts a message's sender on the remote-content list (POST /settings/remote-senders with
// msg=box/uid, the message page's "Always show from …") and shows the message again, now with its remote content.
// The sender is read from the message on the server, so the form names only the message.
func (s *Server) handleTrustSender(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Settings == nil {
		return errNoSettings
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	_ = r.ParseForm()
	box, uid, ok := parseMsgRef(r.PostForm.Get("msg"))
	if !ok {
		return &Error{Status: http.StatusBadRequest, Msg: "This form does not point to a message.", Retry: defaultReturnTo}
	}
	p := s.prefs(r)
	if p.Issuer == "" {
		return &Error{Status: http.StatusUnauthorized, Msg: "Please sign in again to change your settings.", Retry: "/login?return_to=%2Fsettings"}
	}
	var sender string
	if _, err := s.withMail(r.Context(), grantID(r), func(ms *mail.Session) error {
		m, err := ms.Message(r.Context(), box, uid)
		if err == nil && len(m.From) > 0 {
			sender = m.From[0].Email
		}
		return err
	}); err != nil {
		return readError(err, box)
	}
	back := messagePath(box, uid)
	if sender == "" {
		return &Error{Status: http.StatusBadRequest, Msg: "This message names no sender.", Retry: back}
	}
	st := p.saved
	st.RemoteSenders = append(append([]string(nil), st.RemoteSenders...), sender)
	err := s.cfg.Settings.SaveSettings(r.Context(), &st)
	var inv store.InvalidSettingsError
	switch {
	case errors.As(err, &inv):
		s.flashNext(w, r, flash{Text: inv.Problem("remote_senders") + " Change the list in Settings.", Problem: true, Back: back}, nil)
	case err != nil:
		return err
	default:
		s.flashNext(w, r, flash{Text: "Remote content from " + text(sender) + " is now always shown. You can change this in Settings.", Back: back}, nil)
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}

// senderList splits the remote-senders field: one entry per line, commas and semicolons also separate (as pasted
// from an address field). Spaces do not, so that a mistyped entry is named whole in the problem.
func senderList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' || r == ';' })
}

func (s *Server) settingsPage(r *http.Request, f settingsForm) *settingsPage {
	page := &settingsPage{
		pageBase: s.base(r, "Settings"), Form: f, DefaultPageSize: s.cfg.PageSize, PageSizes: store.PageSizes,
		Zones: commonZones, MaxDisplayName: store.MaxDisplayName, MaxSignature: store.MaxSignature,
	}
	if info, err := s.tokens.Info(r.Context(), grantID(r)); err == nil {
		page.User, page.IdPName = info.Identity.Email, info.Identity.Name
	}
	if loc := browserZone(r); loc != nil {
		page.BrowserZone = loc.String()
	}
	return page
}

// signatureBlock is a new message's starting text: room to write, then the signature below the "-- " line (dash,
// dash, space: the separator mail clients recognise to fold or strip a signature, RFC 3676 §4.3). "" without one.
func signatureBlock(sig string) string {
	if sig == "" {
		return ""
	}
	return "\n\n-- \n" + sig
}
