package web

import (
	"context"
	"encoding/xml"
	"errors"
	"html"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/devices"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/store"
)

// closedDevices records CloseDevice calls, as the bridge would act on them.
type closedDevices struct {
	mu  sync.Mutex
	ids []string
}

func (c *closedDevices) CloseDevice(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids = append(c.ids, id)
}

func (c *closedDevices) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ids)
}

var testBridge = Bridge{Host: "mail.example.test", IMAPPort: 993, SMTPPort: 587, SMTPStartTLS: true}

var passwordRE = regexp.MustCompile(`<code>([a-z0-9-]+)</code>`)

// connectDevice runs "Connect a device" in b, signed in as user, through the dev IdP, and returns the page shown
// after the callback and the password on it.
func (s *stack) connectDevice(b *browser, user, name string) (response, string) {
	b.t.Helper()
	r := b.post(s.ts.URL+"/devices", url.Values{"name": {name}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, s.idp.Issuer()) {
		b.t.Fatalf("POST /devices = %d to %q, want 303 to the IdP", r.status, r.location)
	}
	if u, _ := url.Parse(r.location); u.Query().Get("prompt") != "consent" || !strings.Contains(u.Query().Get("scope"), "offline_access") {
		b.t.Errorf("device authorization URL: prompt %q scope %q, want consent and offline_access", u.Query().Get("prompt"), u.Query().Get("scope"))
	}
	cb, err := idp.SignIn(context.Background(), b.hc, r.location, user, user+"-password", true)
	if err != nil {
		b.t.Fatalf("sign in at the IdP: %v", err)
	}
	page := b.get(cb.String())
	m := passwordRE.FindStringSubmatch(page.body)
	if page.status != http.StatusOK || m == nil {
		b.t.Fatalf("device callback = %d, password shown %v; body:\n%s", page.status, m != nil, page.body)
	}
	return page, m[1]
}

// TestDevices: the whole life of a device through the web layer, against the dev IdP and a real store: connect
// (its own grant, kind device), the password shown once and verified by internal/devices, the browser's sign-out
// leaves it working, revoke ends it at the IdP and closes its connections.
func TestDevices(t *testing.T) {
	s := newStack(t, withBridge(testBridge))
	b := newBrowser(t)
	s.signIn(b, "alice", "/devices")

	r := b.get(s.ts.URL + "/devices")
	if r.status != http.StatusOK || !strings.Contains(r.body, `id="no-devices"`) || !strings.Contains(r.body, "mail.example.test, port 993, SSL/TLS") ||
		!strings.Contains(r.body, "port 587, STARTTLS") || !strings.Contains(r.body, "<dd>alice@example.test</dd>") {
		t.Fatalf("GET /devices = %d, want the empty list and the settings; body:\n%s", r.status, r.body)
	}
	if r := b.get(s.ts.URL + "/session"); !strings.Contains(r.body, `href="/devices"`) {
		t.Error("the session page does not link to /devices")
	}
	if r := b.post(s.ts.URL+"/devices", url.Values{"name": {"  "}}); r.status != http.StatusBadRequest || !strings.Contains(r.body, `aria-invalid="true"`) {
		t.Errorf("POST /devices without a name = %d, want 400 with the field marked invalid", r.status)
	}

	page, pw := s.connectDevice(b, "alice", "iPhone")
	if strings.Count(page.body, pw) != 2 { // shown, and in the profile form
		t.Errorf("the password appears %d times on the page, want 2 (shown, profile form)", strings.Count(page.body, pw))
	}
	if cc := page.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control of the password page = %q, want no-store", cc)
	}
	login, err := s.devices.Verify(t.Context(), "alice@example.test", pw, netip.MustParseAddr("192.0.2.9"))
	if err != nil {
		t.Fatalf("Verify(shown password) = %v", err)
	}
	g, err := s.store.Grant(t.Context(), login.GrantID)
	if err != nil || g.Kind != store.KindDevice || g.Email != "alice@example.test" {
		t.Fatalf("device grant = kind %q email %q, %v; want a device grant of alice", g.Kind, g.Email, err)
	}
	s.devices.Used(login.DeviceID, netip.MustParseAddr("192.0.2.9"), "Thunderbird 128")

	// The list shows it; a reload shows no password.
	r = b.get(s.ts.URL + "/devices")
	if !strings.Contains(r.body, `id="device-`+login.DeviceID+`"`) || !strings.Contains(r.body, "from 192.0.2.9") ||
		!strings.Contains(r.body, "Thunderbird 128") || !strings.Contains(r.body, ">working<") || strings.Contains(r.body, pw) {
		t.Errorf("GET /devices after connecting: want the device, its last use and state, and no password; body:\n%s", r.body)
	}

	// The profile, posted from the password page, parses as a plist with the mail payload.
	req, _ := http.NewRequest(http.MethodPost, s.ts.URL+"/devices/"+login.DeviceID+"/mobileconfig", strings.NewReader(url.Values{"password": {pw}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	prof := b.do(req)
	if prof.status != http.StatusOK || prof.header.Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("POST mobileconfig = %d %q", prof.status, prof.header.Get("Content-Type"))
	}
	checkProfile(t, prof.body, "alice@example.test", pw, testBridge)
	if r := b.post(s.ts.URL+"/devices/"+login.DeviceID+"/mobileconfig", url.Values{"password": {"zzzzz-x"}}); r.status != http.StatusNotFound {
		t.Errorf("POST mobileconfig with another device's password = %d, want 404", r.status)
	}

	// Signing the browser out leaves the device working.
	if r := b.post(s.ts.URL+"/logout", nil); r.status != http.StatusSeeOther {
		t.Fatalf("POST /logout = %d", r.status)
	}
	if _, err := s.devices.Verify(t.Context(), "alice@example.test", pw, netip.Addr{}); err != nil {
		t.Errorf("Verify after browser sign-out = %v, want the device still working", err)
	}
	if tok, err := s.keeper.Token(t.Context(), login.GrantID); err != nil || !s.idp.Active(tok.Access) {
		t.Errorf("device grant's token after browser sign-out: %v, want an active one", err)
	}

	// Bob cannot revoke Alice's device.
	bob := newBrowser(t)
	s.signIn(bob, "bob", "/devices")
	if r := bob.post(s.ts.URL+"/devices/"+login.DeviceID+"/revoke", nil); r.status != http.StatusNotFound {
		t.Errorf("bob revoking alice's device = %d, want 404", r.status)
	}
	// A cross-site POST is refused before any handler runs.
	s.signIn(b, "alice", "/devices")
	req, _ = http.NewRequest(http.MethodPost, s.ts.URL+"/devices/"+login.DeviceID+"/revoke", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := b.do(req); r.status != http.StatusForbidden {
		t.Errorf("cross-site revoke = %d, want 403", r.status)
	}

	// Revoke: password dead, grant revoked at the IdP, connections closed, other devices untouched.
	_, pw2 := s.connectDevice(b, "alice", "Laptop")
	rt := mustGrant(t, s, login.GrantID).RefreshToken
	if r := b.post(s.ts.URL+"/devices/"+login.DeviceID+"/revoke", nil); r.status != http.StatusSeeOther || r.location != "/devices?done=revoked" {
		t.Fatalf("POST revoke = %d to %q", r.status, r.location)
	}
	if _, err := s.devices.Verify(t.Context(), "alice@example.test", pw, netip.Addr{}); !errors.Is(err, devices.ErrBadCredentials) {
		t.Errorf("Verify(revoked) = %v, want ErrBadCredentials", err)
	}
	if s.idp.Active(rt) {
		t.Error("the revoked device's refresh token is still active at the IdP")
	}
	if _, err := s.keeper.Token(t.Context(), login.GrantID); !errors.Is(err, auth.ErrNeedsSignIn) {
		t.Errorf("Token(revoked device's grant) = %v, want ErrNeedsSignIn", err)
	}
	if got := s.closed.list(); !slices.Equal(got, []string{login.DeviceID}) {
		t.Errorf("CloseDevice calls = %v, want [%s]", got, login.DeviceID)
	}
	if _, err := s.devices.Verify(t.Context(), "alice@example.test", pw2, netip.Addr{}); err != nil {
		t.Errorf("Verify(other device) after revoking one = %v", err)
	}
	r = b.get(s.ts.URL + "/devices?done=revoked")
	if !strings.Contains(r.body, `id="notice"`) || !strings.Contains(r.body, ">revoked<") {
		t.Errorf("GET /devices after revoking: want the notice and the device marked revoked")
	}
}

// TestDeviceOtherIdPUser: a device flow completed at the IdP by someone else than the signed-in user is refused,
// and no device or grant is made.
func TestDeviceOtherIdPUser(t *testing.T) {
	s := newStack(t, withBridge(testBridge))
	alice, bob := newBrowser(t), newBrowser(t)
	s.signIn(alice, "alice", "/devices")
	s.signIn(bob, "bob", "/devices") // bob's browser holds bob's IdP session
	r := alice.post(s.ts.URL+"/devices", url.Values{"name": {"Phone"}})
	cb, err := idp.SignIn(context.Background(), bob.hc, r.location, "bob", "bob-password", true)
	if err != nil {
		t.Fatal(err)
	}
	if r := alice.get(cb.String()); r.status != http.StatusForbidden {
		t.Errorf("callback with bob's consent in alice's browser = %d, want 403", r.status)
	}
	ds, _ := s.devices.List(t.Context(), s.idp.Issuer(), idp.Subject("alice"))
	if r := alice.get(s.ts.URL + "/devices"); !strings.Contains(r.body, `id="no-devices"`) || len(ds) != 0 {
		t.Errorf("a device was created from bob's consent")
	}
}

func TestDevicesBridgeOff(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)
	s.signIn(b, "alice", "/devices")
	if r := b.get(s.ts.URL + "/devices"); r.status != http.StatusOK || !strings.Contains(r.body, `id="bridge-off"`) || strings.Contains(r.body, `id="connect"`) {
		t.Errorf("GET /devices without a bridge = %d, want the not-enabled notice and no connect form", r.status)
	}
	if r := b.post(s.ts.URL+"/devices", url.Values{"name": {"x"}}); r.status != http.StatusNotFound {
		t.Errorf("POST /devices without a bridge = %d, want 404", r.status)
	}
	if r := b.get(s.ts.URL + "/.well-known/autoconfig/mail/config-v1.1.xml"); r.status != http.StatusNotFound {
		t.Errorf("autoconfig without a bridge = %d, want 404", r.status)
	}
}

// TestAutoconfig parses Thunderbird's document back against the fields Mozilla documents.
func TestAutoconfig(t *testing.T) {
	s := newStack(t, withBridge(testBridge))
	for _, path := range []string{"/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"} {
		resp, err := http.Get(s.ts.URL + path + "?emailaddress=" + url.QueryEscape("Alice@Example.TEST"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/xml") {
			t.Fatalf("GET %s = %d %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		// Decode into the documented shape, independently of the server's own types.
		var doc struct {
			XMLName  xml.Name `xml:"clientConfig"`
			Version  string   `xml:"version,attr"`
			Provider struct {
				ID      string   `xml:"id,attr"`
				Domains []string `xml:"domain"`
				Servers []struct {
					XMLName        xml.Name
					Type           string `xml:"type,attr"`
					Hostname       string `xml:"hostname"`
					Port           int    `xml:"port"`
					SocketType     string `xml:"socketType"`
					Authentication string `xml:"authentication"`
					Username       string `xml:"username"`
				} `xml:",any"`
			} `xml:"emailProvider"`
		}
		if err := xml.Unmarshal(body, &doc); err != nil {
			t.Fatalf("%s does not parse: %v\n%s", path, err, body)
		}
		if doc.Version != "1.1" || doc.Provider.ID != "example.test" || !slices.Equal(doc.Provider.Domains, []string{"example.test"}) {
			t.Errorf("%s: version %q provider %q domains %v", path, doc.Version, doc.Provider.ID, doc.Provider.Domains)
		}
		type want struct {
			elem, typ, host string
			port            int
			socket          string
		}
		var got []want
		for _, sv := range doc.Provider.Servers {
			if sv.XMLName.Local != "incomingServer" && sv.XMLName.Local != "outgoingServer" {
				continue
			}
			if sv.Authentication != "password-cleartext" || sv.Username != "%EMAILADDRESS%" {
				t.Errorf("%s %s: authentication %q username %q", path, sv.XMLName.Local, sv.Authentication, sv.Username)
			}
			got = append(got, want{sv.XMLName.Local, sv.Type, sv.Hostname, sv.Port, sv.SocketType})
		}
		wantServers := []want{{"incomingServer", "imap", "mail.example.test", 993, "SSL"}, {"outgoingServer", "smtp", "mail.example.test", 587, "STARTTLS"}}
		if !slices.Equal(got, wantServers) {
			t.Errorf("%s servers = %+v, want %+v", path, got, wantServers)
		}
	}
}

// checkProfile parses a .mobileconfig (an XML plist) with a small plist decoder and checks the payload types and the
// mail payload's keys.
func checkProfile(t *testing.T, body, address, password string, b Bridge) {
	t.Helper()
	if !strings.Contains(body, `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN"`) {
		t.Error("profile lacks the plist DOCTYPE")
	}
	d := xml.NewDecoder(strings.NewReader(body))
	d.Strict = true
	top, err := decodePlist(d)
	if err != nil {
		t.Fatalf("profile does not parse as a plist: %v\n%s", err, body)
	}
	root, ok := top.(map[string]any)
	if !ok || root["PayloadType"] != "Configuration" || root["PayloadVersion"] != 1 || root["PayloadUUID"] == "" || root["PayloadIdentifier"] == "" {
		t.Fatalf("profile root = %v, want a Configuration dict", top)
	}
	content, _ := root["PayloadContent"].([]any)
	if len(content) != 1 {
		t.Fatalf("PayloadContent = %v, want one payload", root["PayloadContent"])
	}
	p, _ := content[0].(map[string]any)
	wants := map[string]any{
		"PayloadType": "com.apple.mail.managed", "PayloadVersion": 1, "EmailAccountType": "EmailTypeIMAP",
		"EmailAddress": address, "IncomingMailServerHostName": b.Host, "IncomingMailServerPortNumber": b.IMAPPort,
		"IncomingMailServerUseSSL": true, "IncomingMailServerUsername": address, "IncomingPassword": password,
		"IncomingMailServerAuthentication": "EmailAuthPassword", "OutgoingMailServerAuthentication": "EmailAuthPassword",
		"OutgoingMailServerHostName": b.Host, "OutgoingMailServerPortNumber": b.SMTPPort, "OutgoingMailServerUseSSL": true,
		"OutgoingMailServerUsername": address, "OutgoingPassword": password,
	}
	for k, v := range wants {
		if p[k] != v {
			t.Errorf("mail payload %s = %v, want %v", k, p[k], v)
		}
	}
	if p["PayloadUUID"] == root["PayloadUUID"] || !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(p["PayloadUUID"].(string)) {
		t.Errorf("payload UUIDs %v and %v: want two distinct v4 UUIDs", p["PayloadUUID"], root["PayloadUUID"])
	}
}

// decodePlist decodes the plist element's one value: dict → map, array → slice, string, integer → int, true/false.
func decodePlist(d *xml.Decoder) (any, error) {
	var value func(xml.StartElement) (any, error)
	next := func() (xml.Token, error) {
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			switch tok := tok.(type) {
			case xml.CharData:
				if strings.TrimSpace(string(tok)) == "" {
					continue
				}
			case xml.ProcInst, xml.Directive, xml.Comment:
				continue
			}
			return tok, nil
		}
	}
	text := func(se xml.StartElement) (string, error) {
		var s string
		err := d.DecodeElement(&s, &se)
		return html.UnescapeString(s), err
	}
	value = func(se xml.StartElement) (any, error) {
		switch se.Name.Local {
		case "string", "key":
			return text(se)
		case "integer":
			s, err := text(se)
			if err != nil {
				return nil, err
			}
			n := 0
			for _, c := range s {
				if c < '0' || c > '9' {
					return nil, errors.New("bad integer " + s)
				}
				n = n*10 + int(c-'0')
			}
			return n, nil
		case "true", "false":
			return se.Name.Local == "true", d.Skip()
		case "array":
			var out []any
			for {
				tok, err := next()
				if err != nil {
					return nil, err
				}
				if _, ok := tok.(xml.EndElement); ok {
					return out, nil
				}
				v, err := value(tok.(xml.StartElement))
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
		case "dict":
			out := map[string]any{}
			for {
				tok, err := next()
				if err != nil {
					return nil, err
				}
				if _, ok := tok.(xml.EndElement); ok {
					return out, nil
				}
				ks, ok := tok.(xml.StartElement)
				if !ok || ks.Name.Local != "key" {
					return nil, errors.New("dict: want a key")
				}
				k, err := text(ks)
				if err != nil {
					return nil, err
				}
				vt, err := next()
				if err != nil {
					return nil, err
				}
				vs, ok := vt.(xml.StartElement)
				if !ok {
					return nil, errors.New("dict: key " + k + " has no value")
				}
				if out[k], err = value(vs); err != nil {
					return nil, err
				}
			}
		}
		return nil, errors.New("unknown plist element " + se.Name.Local)
	}
	tok, err := next()
	if err != nil {
		return nil, err
	}
	if se, ok := tok.(xml.StartElement); !ok || se.Name.Local != "plist" {
		return nil, errors.New("want <plist>")
	}
	tok, err = next()
	if err != nil {
		return nil, err
	}
	return value(tok.(xml.StartElement))
}

func mustGrant(t *testing.T, s *stack, id string) store.Grant {
	t.Helper()
	g, err := s.store.Grant(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestDeviceReconnect: a device whose grant ended (here: gone, as after the IdP revoked it) answers "sign in
// again"; "Sign in again" on the Devices page runs a device flow that gives it a new grant, keeps its password, and
// retires the old grant with its connections.
func TestDeviceReconnect(t *testing.T) {
	s := newStack(t, withBridge(testBridge))
	b := newBrowser(t)
	s.signIn(b, "alice", "/devices")
	_, pw := s.connectDevice(b, "alice", "iPad")
	login, err := s.devices.Verify(t.Context(), "alice@example.test", pw, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.keeper.SignOut(t.Context(), login.GrantID); err != nil { // the grant ends behind the device's back
		t.Fatal(err)
	}
	if _, err := s.devices.Verify(t.Context(), "alice@example.test", pw, netip.Addr{}); !errors.Is(err, devices.ErrSignInAgain) {
		t.Fatalf("Verify(grant gone) = %v, want ErrSignInAgain", err)
	}
	r := b.get(s.ts.URL + "/devices")
	action := "/devices/" + login.DeviceID + "/reconnect"
	if !strings.Contains(r.body, `action="`+action+`"`) || !strings.Contains(r.body, "sign it in again") {
		t.Fatalf("GET /devices: want a Sign in again form for the ended device; body:\n%s", r.body)
	}
	if r := b.post(s.ts.URL+"/devices/nope/reconnect", nil); r.status != http.StatusNotFound {
		t.Errorf("reconnect of an unknown device = %d, want 404", r.status)
	}
	r = b.post(s.ts.URL+action, nil)
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, s.idp.Issuer()) {
		t.Fatalf("POST reconnect = %d to %q, want 303 to the IdP", r.status, r.location)
	}
	cb, err := idp.SignIn(context.Background(), b.hc, r.location, "alice", "alice-password", true)
	if err != nil {
		t.Fatal(err)
	}
	if r := b.get(cb.String()); r.status != http.StatusSeeOther || r.location != "/devices?done=reconnected" {
		t.Fatalf("reconnect callback = %d to %q, want 303 to /devices?done=reconnected", r.status, r.location)
	}
	again, err := s.devices.Verify(t.Context(), "alice@example.test", pw, netip.Addr{})
	if err != nil || again.DeviceID != login.DeviceID || again.GrantID == login.GrantID {
		t.Fatalf("Verify after reconnect = %+v, %v; want the same device on a new grant", again, err)
	}
	if g := mustGrant(t, s, again.GrantID); g.Kind != store.KindDevice {
		t.Errorf("new grant kind = %q, want device", g.Kind)
	}
	if got := s.closed.list(); !slices.Equal(got, []string{login.DeviceID}) {
		t.Errorf("CloseDevice calls = %v, want [%s]", got, login.DeviceID)
	}
	if r := b.get(s.ts.URL + "/devices?done=reconnected"); strings.Contains(r.body, `action="`+action+`"`) || !strings.Contains(r.body, ">working<") {
		t.Errorf("GET /devices after reconnecting: want the device working and no Sign in again form")
	}
}

// TestDevicesCap: bridge.max_devices_per_user. At the cap, "Connect a device" answers on the Devices page with what
// to do, before any trip to the IdP (no flow started, no grant made); revoking one makes room again.
func TestDevicesCap(t *testing.T) {
	s := newStack(t, withBridge(testBridge), withMaxDevices(2))
	b := newBrowser(t)
	s.signIn(b, "alice", "/devices")
	s.connectDevice(b, "alice", "Phone")
	s.connectDevice(b, "alice", "Laptop")
	grantsBefore := s.idp.Stats()

	r := b.post(s.ts.URL+"/devices", url.Values{"name": {"Tablet"}})
	if r.status != http.StatusConflict || !strings.Contains(r.body, `id="problem"`) ||
		!strings.Contains(r.body, "You have 2 connected devices, the most this server allows. Revoke one") {
		t.Fatalf("POST /devices at the cap = %d (to %q), want 409 with the problem; body:\n%s", r.status, r.location, r.body)
	}
	if got := s.idp.Stats(); got.AuthorizeRequests != grantsBefore.AuthorizeRequests || got.CodeExchanges != grantsBefore.CodeExchanges {
		t.Errorf("the IdP saw a sign-in for a device refused at the cap: authorize %d→%d, code exchanges %d→%d",
			grantsBefore.AuthorizeRequests, got.AuthorizeRequests, grantsBefore.CodeExchanges, got.CodeExchanges)
	}
	ds, err := s.devices.List(t.Context(), s.idp.Issuer(), idp.Subject("alice"))
	if err != nil || len(ds) != 2 {
		t.Fatalf("devices = %d, %v; want 2", len(ds), err)
	}
	// Another user is not counted against alice.
	bob := newBrowser(t)
	s.signIn(bob, "bob", "/devices")
	s.connectDevice(bob, "bob", "Phone")

	if r := b.post(s.ts.URL+"/devices/"+ds[0].ID+"/revoke", nil); r.status != http.StatusSeeOther {
		t.Fatalf("POST revoke = %d", r.status)
	}
	s.connectDevice(b, "alice", "Tablet") // fatal if refused
}
