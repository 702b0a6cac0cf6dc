package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/postern/postern/auth"
)

// flowLifetime bounds the flow cookie; auth refuses flows older than its own 10 minutes anyway.
const flowLifetime = 10 * time.Minute

// flowCookies keep a sign-in flow (state, nonce, PKCE verifier, return_to) in the browser that started it, sealed,
// instead of in a database row. An anonymous GET /login therefore writes nothing on the server: a flood of them
// costs a random number and a cookie each, not a row with an fsync (finding 6 of issue 10).
//
// The seal is gorilla/securecookie's encrypt-then-MAC (AES-256-CTR, HMAC-SHA256 over the cookie name, a timestamp
// and the ciphertext), with keys derived from the session secret for this use only, so that the browser can neither
// read the nonce and verifier nor change any of it, and a sealed flow expires after flowLifetime. Binding to the
// browser is what the session cookie had: only the browser holding the cookie can complete the flow, the cookie is
// HttpOnly, SameSite=Lax (the IdP's redirect back is a cross-site top-level GET, which Lax lets through) and, on
// https, named __Host- so that a sibling subdomain cannot plant one (login CSRF by cookie tossing). One flow per
// browser at a time, as before: a second /login replaces the first.
type flowCookies struct {
	codec  *securecookie.SecureCookie
	name   string
	secure bool
}

func newFlowCookies(secret []byte, sessionCookie string, secure bool) *flowCookies {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("postern flow cookie " + label))
		return m.Sum(nil)
	}
	codec := securecookie.New(derive("mac"), derive("enc"))
	codec.MaxAge(int(flowLifetime / time.Second))
	return &flowCookies{codec: codec, name: sessionCookie + "_flow", secure: secure}
}

// set seals f into the flow cookie.
func (fc *flowCookies) set(w http.ResponseWriter, f auth.Flow) error { return fc.seal(w, f) }

// get opens the flow cookie; ok is false when there is none or it is forged, altered or expired.
func (fc *flowCookies) get(r *http.Request) (auth.Flow, bool) {
	var f auth.Flow
	return f, fc.open(r, &f)
}

// seal puts v, as JSON, into the cookie (the device flow carries a device name beside its auth.Flow).
func (fc *flowCookies) seal(w http.ResponseWriter, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	enc, err := fc.codec.Encode(fc.name, raw)
	if err != nil {
		return err
	}
	http.SetCookie(w, fc.cookie(enc, int(flowLifetime/time.Second)))
	return nil
}

// open reads the cookie into v; false when there is none or it is forged, altered or expired.
func (fc *flowCookies) open(r *http.Request, v any) bool {
	c, err := r.Cookie(fc.name)
	if err != nil {
		return false
	}
	var raw []byte
	if fc.codec.Decode(fc.name, c.Value, &raw) != nil {
		return false
	}
	return json.Unmarshal(raw, v) == nil
}

// clear deletes the flow cookie.
func (fc *flowCookies) clear(w http.ResponseWriter) { http.SetCookie(w, fc.cookie("", -1)) }

func (fc *flowCookies) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: fc.name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, Secure: fc.secure, SameSite: http.SameSiteLaxMode}
}
