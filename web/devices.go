package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/devices"
)

// The Devices page (issue 11): mail clients reach the mail server through Postern's IMAP/SMTP bridge with a
// password Postern generates per device. Each device holds its own grant at the IdP, obtained by an authorization
// flow of its own (auth.Provider.BeginDevice, prompt=consent) and stored with Keeper.StartDevice, so signing out of
// the browser does not cut devices off, and revoking one device revokes only its grant.

// Devices keeps the devices; *devices.Service implements it.
type Devices interface {
	Create(ctx context.Context, o devices.Owner, name, grantID string) (devices.Device, string, error)
	List(ctx context.Context, issuer, subject string) ([]devices.Device, error)
	Revoke(ctx context.Context, issuer, subject, id string) (devices.Device, error)
	Reconnect(ctx context.Context, issuer, subject, id, grantID string) (devices.Device, string, error)
	// Room returns an error wrapping devices.ErrTooMany when the user may connect no more devices.
	Room(ctx context.Context, issuer, subject string) error
	// Max is the number of live devices a user may have.
	Max() int
}

// DeviceCloser closes a device's live bridge connections; the bridge implements it.
type DeviceCloser interface{ CloseDevice(id string) }

// Bridge is the public face of the IMAP/SMTP bridge, for the set-up help and the set-up documents. An empty Host
// means the bridge is not enabled.
type Bridge struct {
	// Host is the name mail clients connect to (it must match the bridge's certificate).
	Host string
	// IMAPPort and SMTPPort are the ports clients use (default 993 and 465).
	IMAPPort, SMTPPort int
	// IMAPStartTLS and SMTPStartTLS say the port speaks STARTTLS (143/587 style) instead of implicit TLS (993/465
	// style, the default and the better choice: RFC 8314 §3).
	IMAPStartTLS, SMTPStartTLS bool
}

func (b Bridge) enabled() bool { return b.Host != "" }

// deviceFlow is what the device flow cookie carries between "Connect a device" and the IdP's callback.
// Name is set when connecting a new device; DeviceID when signing an existing device in again.
type deviceFlow struct {
	Flow     auth.Flow
	Name     string
	DeviceID string `json:",omitempty"`
}

// maxDeviceName bounds a device's name (devices.Service refuses longer ones too).
const maxDeviceName = 100

type deviceRow struct {
	devices.Device
	State auth.State // the grant's state; StateDeleted once it is gone
}

type devicesPage struct {
	pageBase
	Enabled bool
	Bridge  Bridge
	Address string
	Rows    []deviceRow
	Problem string
	Notice  string
	// Created is set once, on the callback's page: the new device and its password, shown only here.
	Created  *devices.Device
	Password string
}

// owner is the signed-in user as the devices package knows them.
func (s *Server) owner(r *http.Request) (devices.Owner, error) {
	info, err := s.tokens.Info(r.Context(), grantID(r))
	if err != nil {
		return devices.Owner{}, err
	}
	return devices.Owner{Issuer: info.Identity.Issuer, Subject: info.Identity.Subject, Address: info.Identity.Email}, nil
}

func (s *Server) devicesEnabled() bool { return s.cfg.Devices != nil && s.cfg.Bridge.enabled() }

// handleDevices lists the user's devices with their grants' states, the "Connect a device" form and the set-up help.
func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request) error {
	page, err := s.devicesPage(r)
	if err != nil {
		return err
	}
	switch r.URL.Query().Get("done") {
	case "revoked":
		page.Notice = "The device was revoked: its password no longer works and its connections were closed."
	case "reconnected":
		page.Notice = "The device is signed in again. Its password is unchanged: the mail app works again as it is."
	}
	s.render(w, r, http.StatusOK, "devices", page)
	return nil
}

func (s *Server) devicesPage(r *http.Request) (*devicesPage, error) {
	o, err := s.owner(r)
	if err != nil {
		return nil, err
	}
	page := &devicesPage{pageBase: s.base(r, "Devices"), Enabled: s.devicesEnabled(), Bridge: s.cfg.Bridge, Address: strings.ToLower(o.Address)}
	page.User = o.Address
	if !page.Enabled {
		return page, nil
	}
	ds, err := s.cfg.Devices.List(r.Context(), o.Issuer, o.Subject)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		row := deviceRow{Device: d, State: auth.StateDeleted}
		if !d.Revoked() {
			if info, err := s.tokens.Info(r.Context(), d.GrantID); err == nil {
				row.State = info.State
			} else if !errors.Is(err, auth.ErrNeedsSignIn) {
				return nil, err
			}
		}
		page.Rows = append(page.Rows, row)
	}
	return page, nil
}

// handleConnectDevice starts a device's own authorization flow: the name and the flow go into a sealed cookie of
// this browser (as the sign-in flow does, flowcookie.go), and the browser goes to the IdP to consent.
func (s *Server) handleConnectDevice(w http.ResponseWriter, r *http.Request) error {
	if !s.devicesEnabled() {
		return &Error{Status: http.StatusNotFound, Msg: "The mail-client bridge is not enabled on this server.", Retry: "/devices"}
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	if name == "" || len(name) > maxDeviceName {
		page, err := s.devicesPage(r)
		if err != nil {
			return err
		}
		page.Problem = "Give the device a name of 1 to 100 characters, such as “iPhone” or “Laptop”."
		s.render(w, r, http.StatusBadRequest, "devices", page)
		return nil
	}
	// Said before the IdP round trip, not after: a grant Create would refuse is not worth the user's consent.
	o, err := s.owner(r)
	if err != nil {
		return err
	}
	if err := s.cfg.Devices.Room(r.Context(), o.Issuer, o.Subject); errors.Is(err, devices.ErrTooMany) {
		page, err := s.devicesPage(r)
		if err != nil {
			return err
		}
		page.Problem = s.tooManyDevices()
		s.render(w, r, http.StatusConflict, "devices", page)
		return nil
	} else if err != nil {
		return err
	}
	flow, authURL := s.auth.BeginDevice("/devices")
	if err := s.deviceFlows.seal(w, deviceFlow{Flow: flow, Name: name}); err != nil {
		return err
	}
	http.Redirect(w, r, authURL, http.StatusSeeOther)
	return nil
}

// handleReconnectDevice signs a device whose grant ended in again: a device flow like "Connect a device", whose
// callback gives the device the new grant and keeps its password (the bridge's "sign in again" answer sends here).
func (s *Server) handleReconnectDevice(w http.ResponseWriter, r *http.Request) error {
	if !s.devicesEnabled() {
		return &Error{Status: http.StatusNotFound, Msg: "The mail-client bridge is not enabled on this server.", Retry: "/devices"}
	}
	o, err := s.owner(r)
	if err != nil {
		return err
	}
	ds, err := s.cfg.Devices.List(r.Context(), o.Issuer, o.Subject)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if !slices.ContainsFunc(ds, func(d devices.Device) bool { return d.ID == id && !d.Revoked() }) {
		return &Error{Status: http.StatusNotFound, Msg: "There is no such device.", Retry: "/devices"}
	}
	flow, authURL := s.auth.BeginDevice("/devices")
	if err := s.deviceFlows.seal(w, deviceFlow{Flow: flow, DeviceID: id}); err != nil {
		return err
	}
	http.Redirect(w, r, authURL, http.StatusSeeOther)
	return nil
}

// deviceCallback reports whether the callback belongs to a device flow started in this browser (its state is that
// flow's), and returns the flow.
func (s *Server) deviceCallback(r *http.Request) (deviceFlow, bool) {
	var df deviceFlow
	if !s.deviceFlows.open(r, &df) {
		return df, false
	}
	return df, subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("state")), []byte(df.Flow.State)) == 1
}

// finishDevice completes a device flow: auth.Finish does every check of the callback; the IdP's user must be the
// signed-in user; the grant is stored as a device grant, the device created, and its password shown on this one
// response (never stored, never logged, never put in a URL).
func (s *Server) finishDevice(w http.ResponseWriter, r *http.Request, df deviceFlow) error {
	s.deviceFlows.clear(w) // single-use whatever happens next
	sess, err := s.session(r)
	if err != nil {
		return err
	}
	if sess.GrantID() == "" {
		return &Error{Status: http.StatusUnauthorized, Msg: "Please sign in first, then connect the device again.", Retry: "/login?return_to=%2Fdevices"}
	}
	r = withGrant(r, sess)
	login, err := s.auth.Finish(r.Context(), df.Flow, r.URL.Query())
	if err != nil {
		var ce *auth.CallbackError
		if errors.As(err, &ce) {
			return &Error{Status: http.StatusBadRequest, Msg: ce.Reason, Retry: "/devices", Err: err}
		}
		return &Error{Status: http.StatusBadGateway, Msg: "The identity provider could not connect the device. Please try again.", Retry: "/devices", Err: err}
	}
	if userKey(login.Identity.Issuer, login.Identity.Subject) != userOf(r) {
		// Someone else signed in at the IdP in the middle: their grant must not become this user's device.
		return &Error{Status: http.StatusForbidden, Msg: "You signed in at the identity provider as someone else. Connect the device while signed in as yourself.", Retry: "/devices"}
	}
	if !login.Offline() {
		return &Error{Status: http.StatusBadGateway, Msg: "The identity provider did not grant offline access, which a device needs. Please try again and allow it.", Retry: "/devices"}
	}
	gid, err := s.tokens.StartDevice(r.Context(), login)
	if err != nil {
		return err
	}
	if df.DeviceID != "" {
		return s.reconnected(w, r, login.Identity, df.DeviceID, gid)
	}
	o := devices.Owner{Issuer: login.Identity.Issuer, Subject: login.Identity.Subject, Address: login.Identity.Email}
	d, pw, err := s.cfg.Devices.Create(r.Context(), o, df.Name, gid)
	if err != nil {
		if serr := s.tokens.SignOut(context.WithoutCancel(r.Context()), gid); serr != nil {
			s.log(r).Warn("retire the grant of a device not created", slog.Any("err", serr))
		}
		if errors.Is(err, devices.ErrTooMany) {
			// Another device was connected meanwhile (another tab): the grant just made is retired above.
			return &Error{Status: http.StatusConflict, Msg: s.tooManyDevices(), Retry: "/devices"}
		}
		return err
	}
	s.log(r).Info("device connected", slog.String("user", userHash(o.Issuer, o.Subject)), slog.String("device", d.ID))
	page, err := s.devicesPage(r)
	if err != nil {
		return err
	}
	page.Created, page.Password = &d, pw
	s.render(w, r, http.StatusOK, "devices", page)
	return nil
}

// reconnected binds the new grant gid to the device and retires the grant it replaces, with the connections that
// used it.
func (s *Server) reconnected(w http.ResponseWriter, r *http.Request, id auth.Identity, deviceID, gid string) error {
	ctx := context.WithoutCancel(r.Context())
	d, old, err := s.cfg.Devices.Reconnect(r.Context(), id.Issuer, id.Subject, deviceID, gid)
	if err != nil {
		if serr := s.tokens.SignOut(ctx, gid); serr != nil {
			s.log(r).Warn("retire the grant of a device not reconnected", slog.Any("err", serr))
		}
		if errors.Is(err, devices.ErrNotFound) {
			return &Error{Status: http.StatusNotFound, Msg: "This device was revoked in the meantime; connect it as a new device.", Retry: "/devices"}
		}
		return err
	}
	if err := s.tokens.SignOut(ctx, old); err != nil {
		s.log(r).Warn("retire a device's previous grant", slog.Any("err", err))
	}
	if s.cfg.DeviceCloser != nil {
		s.cfg.DeviceCloser.CloseDevice(d.ID)
	}
	s.log(r).Info("device signed in again", slog.String("user", userHash(id.Issuer, id.Subject)), slog.String("device", d.ID))
	http.Redirect(w, r, "/devices?done=reconnected", http.StatusSeeOther)
	return nil
}

// handleRevokeDevice revokes a device: its record first (its password stops working at once, even if the IdP is
// down), then its grant at the IdP (Keeper.SignOut: RFC 7009 revocation and deletion), then its live bridge
// connections, which would otherwise stay authenticated upstream.
func (s *Server) handleRevokeDevice(w http.ResponseWriter, r *http.Request) error {
	if !s.devicesEnabled() {
		return &Error{Status: http.StatusNotFound, Msg: "The mail-client bridge is not enabled on this server.", Retry: "/devices"}
	}
	o, err := s.owner(r)
	if err != nil {
		return err
	}
	d, err := s.cfg.Devices.Revoke(r.Context(), o.Issuer, o.Subject, r.PathValue("id"))
	if errors.Is(err, devices.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Msg: "There is no such device.", Retry: "/devices"}
	}
	if err != nil {
		return err
	}
	if err := s.tokens.SignOut(context.WithoutCancel(r.Context()), d.GrantID); err != nil {
		s.log(r).Warn("device revoked; revocation of its grant at the IdP failed", slog.Any("err", err))
	}
	if s.cfg.DeviceCloser != nil {
		s.cfg.DeviceCloser.CloseDevice(d.ID)
	}
	s.log(r).Info("device revoked", slog.String("user", userHash(o.Issuer, o.Subject)), slog.String("device", d.ID))
	http.Redirect(w, r, "/devices?done=revoked", http.StatusSeeOther)
	return nil
}

// tooManyDevices says what to do when the user has bridge.max_devices_per_user devices.
func (s *Server) tooManyDevices() string {
	return fmt.Sprintf("You have %d connected devices, the most this server allows. Revoke one you no longer use, then connect the new one.", s.cfg.Devices.Max())
}
