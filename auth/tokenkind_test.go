package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
)

// unsignedJWT builds a compact JWS with the given header and claims and a dummy signature: InspectAccessToken never
// verifies, so the signature does not matter to it.
func unsignedJWT(t *testing.T, header, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(claims) + ".c2ln"
}

func TestInspectAccessToken(t *testing.T) {
	exp := time.Unix(1_900_000_000, 0)
	claims := map[string]any{"iss": "https://auth.example", "aud": []string{"stalwart", "other"}, "exp": exp.Unix(), "scp": []string{"openid", "email"}}
	tests := []struct {
		name, token, want string
		kind              TokenKind
	}{
		{"authelia opaque", "authelia_at_0123456789abcdef.sigsigsig", "", TokenOpaque},
		{"at+jwt", unsignedJWT(t, map[string]any{"alg": "RS256", "typ": "at+jwt"}, claims), "", TokenJWT},
		{"application/at+jwt", unsignedJWT(t, map[string]any{"alg": "RS256", "typ": "application/at+jwt"}, claims), "", TokenJWT},
		{"typ JWT not expected", unsignedJWT(t, map[string]any{"alg": "RS256", "typ": "JWT"}, claims), "", TokenOpaque},
		{"typ JWT expected (Hydra)", unsignedJWT(t, map[string]any{"alg": "RS256", "typ": "JWT"}, claims), "JWT", TokenJWT},
		{"no exp", unsignedJWT(t, map[string]any{"alg": "RS256", "typ": "at+jwt"}, map[string]any{"aud": "stalwart"}), "", TokenOpaque},
		{"not base64", "a!.b!.c", "", TokenOpaque},
		{"empty", "", "", TokenOpaque},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := InspectAccessToken(tt.token, tt.want)
			if got.Kind != tt.kind {
				t.Fatalf("InspectAccessToken().Kind = %v, want %v", got.Kind, tt.kind)
			}
			if got.Kind != TokenJWT {
				if got.Issuer != "" || got.Audience != nil || !got.Expiry.IsZero() {
					t.Errorf("opaque token info = %+v, want no claims", got)
				}
				return
			}
			if !got.Expiry.Equal(exp) || !got.HasAudience("stalwart") || got.HasAudience("stal") || got.Issuer != "https://auth.example" ||
				!slices.Equal(got.Scopes, []string{"openid", "email"}) {
				t.Errorf("InspectAccessToken() = %+v, want the claims", got)
			}
		})
	}
}

// TestRefreshJWTExpiry: a JWT's exp caps the expiry the keeper times refreshes from, when expires_in claims longer;
// a shorter expires_in is kept.
func TestRefreshJWTExpiry(t *testing.T) {
	for _, tt := range []struct {
		name      string
		expiresIn int
		expIn     time.Duration
		want      time.Duration
	}{
		{"exp earlier", 3600, 5 * time.Minute, 5 * time.Minute},
		{"expires_in earlier", 60, 5 * time.Minute, time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			at := unsignedJWT(t, map[string]any{"alg": "RS256", "typ": "at+jwt"}, map[string]any{"exp": start.Add(tt.expIn).Unix()})
			p, _ := newFakeProvider(t, nil, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": tt.expiresIn})
			})
			ts, err := p.Refresh(context.Background(), "rt1")
			if err != nil {
				t.Fatalf("Refresh() = %v", err)
			}
			if ts.Kind != TokenJWT {
				t.Errorf("Refresh().Kind = %v, want jwt", ts.Kind)
			}
			if d := ts.Expiry.Sub(start); d < tt.want-2*time.Second || d > tt.want+2*time.Second {
				t.Errorf("Expiry - start = %v, want about %v", d, tt.want)
			}
		})
	}
}

// TestSignInJWT: against the dev IdP issuing JWT access tokens, the audience is requested at sign-in and carried
// through refresh, and both token sets are classified as JWTs; with opaque tokens they are opaque.
func TestSignInJWT(t *testing.T) {
	for _, jwtMode := range []bool{false, true} {
		t.Run(map[bool]string{false: "opaque", true: "jwt"}[jwtMode], func(t *testing.T) {
			ip, err := idp.Start("127.0.0.1:0", idp.Options{
				Users: []idp.User{{Username: "ann", Password: "pw-ann", Email: "ann@example.org"}},
				Clients: []idp.Client{{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect},
					Audience: []string{"stalwart"}}},
				SigningKey:          testKey(),
				AccessTokenLifespan: 5 * time.Minute,
				JWTAccessTokens:     jwtMode,
			})
			if err != nil {
				t.Fatalf("idp.Start() = %v", err)
			}
			t.Cleanup(func() { ip.Close() })
			p, err := New(context.Background(), Config{
				Issuer: ip.Issuer(), ClientID: testClientID, ClientSecret: testSecret,
				RedirectURL: testRedirect, Audience: []string{"stalwart"},
			}, &http.Client{Timeout: 5 * time.Second})
			if err != nil {
				t.Fatalf("New() = %v", err)
			}
			jar, _ := cookiejar.New(nil)
			e := &devEnv{idp: ip, p: p, hc: &http.Client{Jar: jar, Timeout: 5 * time.Second}}
			_, authURL := p.Begin("/")
			if !strings.Contains(authURL, "audience=stalwart") {
				t.Errorf("Begin() URL has no audience=stalwart parameter")
			}
			l := e.login(t)
			want := TokenOpaque
			if jwtMode {
				want = TokenJWT
			}
			check := func(what string, ts TokenSet) {
				t.Helper()
				info := InspectAccessToken(ts.AccessToken, "")
				if ts.Kind != want || info.Kind != want {
					t.Fatalf("%s: Kind = %v (inspected %v), want %v", what, ts.Kind, info.Kind, want)
				}
				if !jwtMode {
					return
				}
				if !info.HasAudience("stalwart") || info.Issuer != ip.Issuer() {
					t.Errorf("%s: aud %v, iss %q, want stalwart and the issuer", what, info.Audience, info.Issuer)
				}
				if !ts.Expiry.Equal(info.Expiry) && ts.Expiry.After(info.Expiry) {
					t.Errorf("%s: Expiry %v after the token's exp %v", what, ts.Expiry, info.Expiry)
				}
			}
			check("sign-in", l.Tokens)
			// Identity is still userinfo's, and userinfo accepts the JWT (it is stored like an opaque token).
			if l.Identity.Email != "ann@example.org" {
				t.Errorf("Identity.Email = %q", l.Identity.Email)
			}
			ts, err := p.Refresh(context.Background(), l.Tokens.RefreshToken)
			if err != nil {
				t.Fatalf("Refresh() = %v", err)
			}
			check("refresh", ts)
		})
	}
}
