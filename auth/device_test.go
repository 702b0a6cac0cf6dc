package auth

import (
	"errors"
	"net/url"
	"testing"
	"testing/synctest"
	"time"

	"github.com/postern/postern/internal/store"
)

// startDevice connects a device the way web does: BeginDevice, sign-in with consent at the dev IdP, Finish,
// StartDevice.
func (e *keeperEnv) startDevice(t *testing.T, k *Keeper) string {
	t.Helper()
	f, authURL := e.p.BeginDevice("/devices")
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query().Get("prompt"); got != "consent" {
		t.Errorf("BeginDevice URL prompt = %q, want consent", got)
	}
	l := e.finish(t, f, authURL)
	id, err := k.StartDevice(t.Context(), l)
	if err != nil {
		t.Fatalf("StartDevice() = %v", err)
	}
	return id
}

// TestDeviceGrant: a device grant is its own refresh-token family, kept alive by Run while nobody uses it, past
// the browser session's idle timeout and lifetime and through the browser's sign-out; SignOut on it (revoking the
// device) ends it at the IdP; DeviceLifetime ends it at last.
func TestDeviceGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		k := e.keeper(t, e.st, KeeperOptions{IdleTimeout: 3 * time.Hour, Lifetime: 5 * time.Hour, DeviceLifetime: 48 * time.Hour})
		web := e.start(t, k)
		dev := e.startDevice(t, k)
		other := e.startDevice(t, k)
		if g := e.grant(t, dev); g.Kind != store.KindDevice {
			t.Fatalf("StartDevice stored kind %q, want %q", g.Kind, store.KindDevice)
		}
		if g := e.grant(t, web); g.Kind != store.KindWeb {
			t.Fatalf("Start stored kind %q, want %q", g.Kind, store.KindWeb)
		}
		if e.grant(t, dev).RefreshToken == e.grant(t, other).RefreshToken {
			t.Fatal("two devices share a refresh token: want a grant each")
		}
		stop := runKeeper(t, k)

		// The browser signs out: the devices keep working.
		if err := k.SignOut(t.Context(), web); err != nil {
			t.Fatalf("SignOut(web) = %v", err)
		}
		// A day without any use: past the 3 h idle timeout and the 5 h lifetime of browser grants.
		time.Sleep(24 * time.Hour)
		tok, err := k.Token(t.Context(), dev)
		if err != nil || tok.Access == "" || !e.idp.Active(tok.Access) {
			t.Fatalf("Token(device) after a day idle = %v; want a live access token", err)
		}
		if e.grant(t, dev).LastRefresh.IsZero() {
			t.Error("device grant never refreshed in a day")
		}

		// Revoking one device ends its grant at the IdP, and only its.
		rt := e.grant(t, dev).RefreshToken
		if err := k.SignOut(t.Context(), dev); err != nil {
			t.Fatalf("SignOut(device) = %v", err)
		}
		if e.idp.Active(rt) {
			t.Error("revoked device's refresh token is still active at the IdP")
		}
		if _, err := k.Token(t.Context(), dev); !errors.Is(err, ErrNeedsSignIn) {
			t.Errorf("Token(revoked device) = %v, want ErrNeedsSignIn", err)
		}
		if _, err := k.Token(t.Context(), other); err != nil {
			t.Errorf("Token(other device) after revoking one = %v, want a token", err)
		}

		// DeviceLifetime (48 h) ends the other at last, revoked at the IdP.
		rt = e.grant(t, other).RefreshToken
		time.Sleep(25 * time.Hour)
		if _, err := e.st.Grant(t.Context(), other); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("device grant after 49 h (device lifetime 48 h) = %v, want deleted", err)
		}
		if e.idp.Active(rt) {
			t.Error("device grant past its lifetime is still active at the IdP")
		}
		stop()
		e.checkNoReuse(t)
	})
}
