package web

import (
	"bytes"
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
)

// Set-up documents for mail clients: Thunderbird's autoconfig (Mozilla's clientConfig v1.1, fetched by Thunderbird
// from https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml or https://autoconfig.<domain>/mail/...) and an
// Apple configuration profile with a com.apple.mail.managed payload. Both name the bridge, never the upstream mail
// server, and username = the user's address. Only the profile holds a password, and only because the user asked
// for it on the page that showed the password.

// clientConfig is Mozilla's autoconfig document, the fields Thunderbird documents
// (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
type clientConfig struct {
	XMLName  xml.Name      `xml:"clientConfig"`
	Version  string        `xml:"version,attr"`
	Provider emailProvider `xml:"emailProvider"`
}

type emailProvider struct {
	ID               string         `xml:"id,attr"`
	Domain           string         `xml:"domain"`
	DisplayName      string         `xml:"displayName"`
	DisplayShortName string         `xml:"displayShortName"`
	Incoming         serverConfig   `xml:"incomingServer"`
	Outgoing         serverConfig   `xml:"outgoingServer"`
	Documentation    *documentation `xml:"documentation,omitempty"`
}

type serverConfig struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`     // SSL (implicit TLS) or STARTTLS
	Authentication string `xml:"authentication"` // password-cleartext: AUTH PLAIN/LOGIN over TLS
	Username       string `xml:"username"`
}

type documentation struct {
	URL   string `xml:"url,attr"`
	Descr descr  `xml:"descr"`
}

type descr struct {
	Lang string `xml:"lang,attr"`
	Text string `xml:",chardata"`
}

func socketType(startTLS bool) string {
	if startTLS {
		return "STARTTLS"
	}
	return "SSL"
}

// autoconfigDomain is the domain the document is for: that of ?emailaddress= (Thunderbird sends it), else the
// bridge's host.
func autoconfigDomain(r *http.Request, fallback string) string {
	if a, err := mail.ParseAddress(r.URL.Query().Get("emailaddress")); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok && d != "" {
			return strings.ToLower(d)
		}
	}
	return fallback
}

// handleAutoconfig serves Thunderbird's autoconfig document for the bridge.
func (s *Server) handleAutoconfig(w http.ResponseWriter, r *http.Request) error {
	b := s.cfg.Bridge
	if !s.devicesEnabled() {
		return &Error{Status: http.StatusNotFound, Msg: "The mail-client bridge is not enabled on this server.", Retry: "/"}
	}
	domain := autoconfigDomain(r, b.Host)
	devicesURL := *s.cfg.PublicURL
	devicesURL.Path, devicesURL.RawQuery = "/devices", ""
	cc := clientConfig{Version: "1.1", Provider: emailProvider{
		ID: domain, Domain: domain, DisplayName: "Mail via Postern (" + domain + ")", DisplayShortName: "Postern",
		Incoming: serverConfig{Type: "imap", Hostname: b.Host, Port: b.IMAPPort, SocketType: socketType(b.IMAPStartTLS),
			Authentication: "password-cleartext", Username: "%EMAILADDRESS%"},
		Outgoing: serverConfig{Type: "smtp", Hostname: b.Host, Port: b.SMTPPort, SocketType: socketType(b.SMTPStartTLS),
			Authentication: "password-cleartext", Username: "%EMAILADDRESS%"},
		Documentation: &documentation{URL: devicesURL.String(), Descr: descr{Lang: "en",
			Text: "Use a device password from the Devices page, not your account password."}},
	}}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(cc); err != nil {
		return err
	}
	buf.WriteByte('\n')
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
	return nil
}

// plist values for the profile: string, int, bool, []any (array) and plistDict.
type plistDict []plistEntry

type plistEntry struct {
	Key   string
	Value any
}

// encodePlist writes v as Apple's XML property list (PropertyList-1.0.dtd) with encoding/xml, which escapes every
// string.
func encodePlist(v plistDict) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	buf.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	start := func(n string) error { return enc.EncodeToken(xml.StartElement{Name: xml.Name{Local: n}}) }
	end := func(n string) error { return enc.EncodeToken(xml.EndElement{Name: xml.Name{Local: n}}) }
	leaf := func(n, text string) error {
		if err := start(n); err != nil {
			return err
		}
		if err := enc.EncodeToken(xml.CharData(text)); err != nil {
			return err
		}
		return end(n)
	}
	var value func(any) error
	value = func(x any) error {
		switch x := x.(type) {
		case string:
			return leaf("string", x)
		case int:
			return leaf("integer", strconv.Itoa(x))
		case bool:
			n := "false"
			if x {
				n = "true"
			}
			if err := start(n); err != nil {
				return err
			}
			return end(n)
		case []any:
			if err := start("array"); err != nil {
				return err
			}
			for _, e := range x {
				if err := value(e); err != nil {
					return err
				}
			}
			return end("array")
		case plistDict:
			if err := start("dict"); err != nil {
				return err
			}
			for _, e := range x {
				if err := leaf("key", e.Key); err != nil {
					return err
				}
				if err := value(e.Value); err != nil {
					return err
				}
			}
			return end("dict")
		}
		return fmt.Errorf("plist: unsupported %T", x)
	}
	if err := enc.EncodeToken(xml.StartElement{Name: xml.Name{Local: "plist"}, Attr: []xml.Attr{{Name: xml.Name{Local: "version"}, Value: "1.0"}}}); err != nil {
		return nil, err
	}
	if err := value(v); err != nil {
		return nil, err
	}
	if err := end("plist"); err != nil {
		return nil, err
	}
	if err := enc.Flush(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// newUUID is a random (version 4) UUID for PayloadUUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// mobileconfig is the Apple configuration profile for one device: a Configuration profile holding one
// com.apple.mail.managed payload (Apple's "Mail" payload: incoming IMAP and outgoing SMTP, both with the device
// password). UseSSL is TLS either way; on a STARTTLS port iOS upgrades the connection.
func mobileconfig(b Bridge, address, deviceName, deviceID, password string) ([]byte, error) {
	id := "postern." + strings.ToLower(b.Host) + ".device." + deviceID
	mailPayload := plistDict{
		{"EmailAccountDescription", "Mail via Postern (" + deviceName + ")"},
		{"EmailAccountName", address},
		{"EmailAccountType", "EmailTypeIMAP"},
		{"EmailAddress", address},
		{"IncomingMailServerAuthentication", "EmailAuthPassword"},
		{"IncomingMailServerHostName", b.Host},
		{"IncomingMailServerPortNumber", b.IMAPPort},
		{"IncomingMailServerUseSSL", true},
		{"IncomingMailServerUsername", address},
		{"IncomingPassword", password},
		{"OutgoingMailServerAuthentication", "EmailAuthPassword"},
		{"OutgoingMailServerHostName", b.Host},
		{"OutgoingMailServerPortNumber", b.SMTPPort},
		{"OutgoingMailServerUseSSL", true},
		{"OutgoingMailServerUsername", address},
		{"OutgoingPassword", password},
		{"OutgoingPasswordSameAsIncomingPassword", true},
		{"PayloadDisplayName", "Mail account " + address},
		{"PayloadIdentifier", id + ".mail"},
		{"PayloadType", "com.apple.mail.managed"},
		{"PayloadUUID", newUUID()},
		{"PayloadVersion", 1},
	}
	return encodePlist(plistDict{
		{"PayloadContent", []any{mailPayload}},
		{"PayloadDescription", "Sets up " + address + " in Mail, through Postern, with the password of the device “" + deviceName + "”."},
		{"PayloadDisplayName", "Postern mail: " + deviceName},
		{"PayloadIdentifier", id},
		{"PayloadRemovalDisallowed", false},
		{"PayloadType", "Configuration"},
		{"PayloadUUID", newUUID()},
		{"PayloadVersion", 1},
	})
}

// handleMobileconfig returns the profile of a device just created: the page that showed the password posts it back
// (the server never stored it). The device must be the user's and live, and the password must carry its id.
func (s *Server) handleMobileconfig(w http.ResponseWriter, r *http.Request) error {
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
	id, pw := r.PathValue("id"), strings.TrimSpace(r.PostFormValue("password"))
	for _, d := range ds {
		if d.ID != id || d.Revoked() {
			continue
		}
		if !strings.HasPrefix(strings.ToLower(pw), d.ID+"-") || len(pw) > 64 {
			break
		}
		body, err := mobileconfig(s.cfg.Bridge, d.Address, d.Name, d.ID, pw)
		if err != nil {
			return err
		}
		h := w.Header()
		h.Set("Content-Type", "application/x-apple-aspen-config")
		h.Set("Content-Disposition", `attachment; filename="postern-`+d.ID+`.mobileconfig"`)
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
		return nil
	}
	return &Error{Status: http.StatusNotFound, Msg: "The profile can only be made right after connecting the device. Revoke it and connect it again to get a new one.", Retry: "/devices"}
}
