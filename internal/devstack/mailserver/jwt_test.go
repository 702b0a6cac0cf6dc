package mailserver

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/go-jose/go-jose/v3"
)

// issuer is a fake OpenID provider serving discovery and a JWKS, minting tokens with go-jose directly, so the
// validator is tested against tokens made independently of the dev IdP.
type issuer struct {
	url       string
	key       *rsa.PrivateKey
	jwksCalls atomic.Int64
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": is.url, "jwks_uri": is.url + "/jwks.json"})
		case "/jwks.json":
			is.jwksCalls.Add(1)
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

// mint signs claims with header typ and kid; alg HS256 signs with a shared secret instead of the RSA key.
func (is *issuer) mint(t *testing.T, alg jose.SignatureAlgorithm, typ, kid string, claims map[string]any) string {
	t.Helper()
	var key any = is.key
	if alg == jose.HS256 {
		key = []byte("0123456789abcdef0123456789abcdef")
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", kid)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTMode(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	now := time.Unix(1_900_000_000, 0)
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{
			"iss": is.url, "sub": "u1", "aud": []string{"stalwart"}, "exp": now.Add(5 * time.Minute).Unix(),
			"iat": now.Unix(), "nbf": now.Unix(), "scp": []string{"openid", "email"}, "client_id": "postern",
			"preferred_username": "alice", "email": "Alice@Example.test",
		}
		if mod != nil {
			mod(c)
		}
		return c
	}
	tests := []struct {
		name         string
		token        string
		clock        time.Duration // added to now
		ok           bool
		userinfoWant int64
	}{
		{"valid", is.mint(t, jose.RS256, "at+jwt", "k1", claims(nil)), 0, true, 0},
		{"aud as string", is.mint(t, jose.RS256, "at+jwt", "k1", claims(func(c map[string]any) { c["aud"] = "stalwart" })), 0, true, 0},
		{"application/at+jwt", is.mint(t, jose.RS256, "application/at+jwt", "k1", claims(nil)), 0, true, 0},
		{"within leeway", is.mint(t, jose.RS256, "at+jwt", "k1", claims(nil)), 5*time.Minute + 59*time.Second, true, 0},
		{"expired", is.mint(t, jose.RS256, "at+jwt", "k1", claims(nil)), 6*time.Minute + time.Second, false, 0},
		{"not yet valid", is.mint(t, jose.RS256, "at+jwt", "k1", claims(nil)), -2 * time.Minute, false, 0},
		{"wrong audience", is.mint(t, jose.RS256, "at+jwt", "k1", claims(func(c map[string]any) { c["aud"] = []string{"other"} })), 0, false, 0},
		{"no audience", is.mint(t, jose.RS256, "at+jwt", "k1", claims(func(c map[string]any) { delete(c, "aud") })), 0, false, 0},
		{"wrong issuer", is.mint(t, jose.RS256, "at+jwt", "k1", claims(func(c map[string]any) { c["iss"] = "https://evil.example" })), 0, false, 0},
		{"id token typ", is.mint(t, jose.RS256, "JWT", "k1", claims(nil)), 0, false, 0},
		{"HS256", is.mint(t, jose.HS256, "at+jwt", "k1", claims(nil)), 0, false, 0},
		{"unknown kid", is.mint(t, jose.RS256, "at+jwt", "k2", claims(nil)), 0, false, 0},
		{"no username claim", is.mint(t, jose.RS256, "at+jwt", "k1", claims(func(c map[string]any) { delete(c, "preferred_username") })), 0, false, 0},
		// Stalwart 0.16 asks userinfo only for a missing claim; the fake userinfo refuses this token.
		{"no email claim", is.mint(t, jose.RS256, "at+jwt", "k1", claims(func(c map[string]any) { delete(c, "email") })), 0, false, 1},
		{"opaque token", "good-alice@example.test", 0, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := now.Add(tt.clock)
			s, calls := newServer(t, Options{JWT: &JWTOptions{IssuerURL: is.url, Now: func() time.Time { return clock }}})
			c := dialIMAP(t, s)
			err := c.Authenticate(bearer{"OAUTHBEARER", "alice@example.test", tt.token})
			if tt.ok != (err == nil) {
				t.Fatalf("Authenticate() = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				var ie *imap.Error
				if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAuthenticationFailed {
					t.Errorf("Authenticate() = %v, want NO [AUTHENTICATIONFAILED]", err)
				}
			} else if got := s.Accounts(); len(got) != 1 || got[0] != "alice@example.test" {
				t.Errorf("Accounts() = %v, want [alice@example.test]", got)
			}
			if got := calls.Load(); got != tt.userinfoWant {
				t.Errorf("userinfo calls = %d, want %d", got, tt.userinfoWant)
			}
			if st := s.Stats(); st.UserinfoCalls != tt.userinfoWant {
				t.Errorf("Stats().UserinfoCalls = %d, want %d", st.UserinfoCalls, tt.userinfoWant)
			}
		})
	}
}

// TestJWTModeCachesKeys: many logins fetch the key set once; an unknown kid does not refetch within 300 s.
func TestJWTModeCachesKeys(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	now := time.Now()
	s, calls := newServer(t, Options{JWT: &JWTOptions{IssuerURL: is.url, Now: func() time.Time { return now }}})
	c := map[string]any{"iss": is.url, "aud": "stalwart", "exp": now.Add(time.Minute).Unix(), "preferred_username": "bob", "email": "bob@example.test"}
	good, unknown := is.mint(t, jose.RS256, "at+jwt", "k1", c), is.mint(t, jose.RS256, "at+jwt", "k9", c)
	for range 5 {
		if err := dialIMAP(t, s).Authenticate(bearer{"OAUTHBEARER", "bob@example.test", good}); err != nil {
			t.Fatalf("Authenticate() = %v", err)
		}
	}
	for range 3 {
		if err := dialIMAP(t, s).Authenticate(bearer{"OAUTHBEARER", "bob@example.test", unknown}); err == nil {
			t.Fatal("Authenticate() with an unknown kid succeeded")
		}
	}
	if got := is.jwksCalls.Load(); got != 1 {
		t.Errorf("JWKS fetches = %d, want 1", got)
	}
	if st := s.Stats(); st.JWTValidations != 5 || st.JWKSFetches != 1 || calls.Load() != 0 {
		t.Errorf("Stats() = %+v, userinfo %d; want 5 JWT validations, 1 JWKS fetch, 0 userinfo", st, calls.Load())
	}
}
