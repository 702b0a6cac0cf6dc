package auth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeIdP serves a discovery document and hands every other request to h, so
// the provider's HTTP handling can be tested answer by answer.
func fakeIdP(t *testing.T, meta map[string]any, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" {
			doc := map[string]any{
				"issuer":                           srv.URL,
				"authorization_endpoint":           srv.URL + "/authorize",
				"token_endpoint":                   srv.URL + "/token",
				"userinfo_endpoint":                srv.URL + "/userinfo",
				"revocation_endpoint":              srv.URL + "/revoke",
				"introspection_endpoint":           srv.URL + "/introspect",
				"jwks_uri":                         srv.URL + "/jwks",
				"code_challenge_methods_supported": []string{"S256"},
				"authorization_response_iss_parameter_supported": true,
			}
			for k, v := range meta {
				if v == nil {
					delete(doc, k)
				} else {
					doc[k] = v
				}
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(doc)
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newFakeProvider(t *testing.T, meta map[string]any, h http.HandlerFunc) (*Provider, *httptest.Server) {
	t.Helper()
	srv := fakeIdP(t, meta, h)
	p, err := New(context.Background(), Config{
		Issuer: srv.URL, ClientID: "postern", ClientSecret: "s3cret+/:%",
		RedirectURL: "http://127.0.0.1:9/callback",
	}, &http.Client{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return p, srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func TestNew(t *testing.T) {
	t.Run("missing config", func(t *testing.T) {
		_, err := New(context.Background(), Config{Issuer: "http://127.0.0.1:9"}, nil)
		if err == nil || !strings.Contains(err.Error(), "client id, client secret, redirect url") {
			t.Errorf("New() = %v, want an error naming every missing field", err)
		}
	})
	t.Run("issuer mismatch", func(t *testing.T) {
		srv := fakeIdP(t, map[string]any{"issuer": "https://elsewhere.example"}, http.NotFound)
		_, err := New(context.Background(), Config{Issuer: srv.URL, ClientID: "c", ClientSecret: "s", RedirectURL: "http://127.0.0.1/cb"}, nil)
		if err == nil {
			t.Error("New() = nil error, want an issuer mismatch")
		}
	})
	t.Run("no userinfo endpoint", func(t *testing.T) {
		srv := fakeIdP(t, map[string]any{"userinfo_endpoint": nil}, http.NotFound)
		_, err := New(context.Background(), Config{Issuer: srv.URL, ClientID: "c", ClientSecret: "s", RedirectURL: "http://127.0.0.1/cb"}, nil)
		if err == nil || !strings.Contains(err.Error(), "userinfo") {
			t.Errorf("New() = %v, want a userinfo error", err)
		}
	})
	t.Run("defaults and warnings", func(t *testing.T) {
		p, _ := newFakeProvider(t, map[string]any{
			"code_challenge_methods_supported":               []string{"plain"},
			"authorization_response_iss_parameter_supported": nil,
			"revocation_endpoint":                            nil,
			"introspection_endpoint":                         nil,
		}, http.NotFound)
		if got, want := strings.Join(p.oauth.Scopes, " "), "openid profile email offline_access"; got != want {
			t.Errorf("scopes = %q, want %q", got, want)
		}
		if p.SupportsIssParameter() {
			t.Error("SupportsIssParameter() = true, want false")
		}
		if got := len(p.Warnings()); got != 4 {
			t.Errorf("Warnings() = %q, want 4 warnings", p.Warnings())
		}
		if err := p.Revoke(context.Background(), "t", ""); !errors.Is(err, ErrRevocationUnsupported) {
			t.Errorf("Revoke() = %v, want ErrRevocationUnsupported", err)
		}
	})
	t.Run("openid added", func(t *testing.T) {
		srv := fakeIdP(t, nil, http.NotFound)
		p, err := New(context.Background(), Config{Issuer: srv.URL, ClientID: "c", ClientSecret: "s",
			RedirectURL: "http://127.0.0.1/cb", Scopes: []string{"email"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(p.oauth.Scopes, " "), "openid email"; got != want {
			t.Errorf("scopes = %q, want %q", got, want)
		}
		if len(p.Warnings()) != 0 {
			t.Errorf("Warnings() = %q, want none", p.Warnings())
		}
	})
}

// TestRefreshRequest checks the wire format: RFC 6749 §6 form, and
// client_secret_basic with form-urlencoded id and secret (§2.3.1).
func TestRefreshRequest(t *testing.T) {
	var got *http.Request
	var form url.Values
	p, _ := newFakeProvider(t, nil, func(w http.ResponseWriter, r *http.Request) {
		got = r
		r.ParseForm()
		form = r.PostForm
		writeJSON(w, 200, map[string]any{"access_token": "at2", "token_type": "Bearer", "expires_in": 3600})
	})
	start := time.Now()
	ts, err := p.Refresh(context.Background(), "rt1")
	if err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	user, pass, ok := got.BasicAuth()
	if !ok || user != "postern" || pass != url.QueryEscape("s3cret+/:%") {
		t.Errorf("basic auth = %q, %q, %v, want postern and the escaped secret", user, pass, ok)
	}
	if got.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q", got.Header.Get("Content-Type"))
	}
	if form.Get("grant_type") != "refresh_token" || form.Get("refresh_token") != "rt1" || form.Has("client_secret") || form.Has("client_id") {
		t.Errorf("form = %v, want grant_type and refresh_token only", form)
	}
	if ts.AccessToken != "at2" || ts.RefreshToken != "rt1" {
		t.Errorf("Refresh() = %q, %q, want the new access token and the old refresh token kept", ts.AccessToken, ts.RefreshToken)
	}
	if d := ts.Expiry.Sub(start); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("Expiry - start = %v, want about 1h", d)
	}
}

// TestRefreshClassification covers every answer class of the token endpoint.
func TestRefreshClassification(t *testing.T) {
	errorBody := func(status int, code string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, status, map[string]string{"error": code, "error_description": "desc"})
		}
	}
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
	}
	hangUp := func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	slow := func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}
	tests := []struct {
		name string
		h    http.HandlerFunc
		want error
	}{
		{"rotated", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"access_token": "at2", "refresh_token": "rt2", "expires_in": "60"})
		}, nil},
		{"invalid_grant", errorBody(400, "invalid_grant"), ErrInvalidGrant},
		{"invalid_client", errorBody(401, "invalid_client"), ErrRejected},
		{"invalid_request", errorBody(400, "invalid_request"), ErrRejected},
		{"unauthorized_client", errorBody(400, "unauthorized_client"), ErrRejected},
		{"400 without body", status(400), ErrRejected},
		{"404", status(404), ErrRejected},
		{"503", status(503), ErrTransient},
		{"429", status(429), ErrTransient},
		{"500", status(500), ErrOutcomeUnknown},
		{"502", status(502), ErrOutcomeUnknown},
		{"504", status(504), ErrOutcomeUnknown},
		{"200 without access token", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"token_type": "Bearer"})
		}, ErrOutcomeUnknown},
		{"200 not json", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>") }, ErrOutcomeUnknown},
		{"connection closed after sending", hangUp, ErrOutcomeUnknown},
		{"timeout after sending", slow, ErrOutcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newFakeProvider(t, nil, tt.h)
			p.hc.Timeout = 300 * time.Millisecond
			ts, err := p.Refresh(context.Background(), "secret-rt")
			if tt.want == nil {
				if err != nil || ts.RefreshToken != "rt2" || ts.Expiry.IsZero() {
					t.Errorf("Refresh() = %+v, %v, want rotated tokens", ts, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Refresh() error = %v, want %v", err, tt.want)
			}
			for _, other := range []error{ErrInvalidGrant, ErrTransient, ErrOutcomeUnknown, ErrRejected} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("Refresh() error = %v, also matches %v", err, other)
				}
			}
			if strings.Contains(err.Error(), "secret-rt") {
				t.Errorf("Refresh() error = %v, contains the refresh token", err)
			}
		})
	}
}

func TestRefreshNotSent(t *testing.T) {
	p, _ := newFakeProvider(t, nil, http.NotFound)
	t.Run("connection refused", func(t *testing.T) {
		q := *p
		q.oauth.Endpoint.TokenURL = closedPortURL(t)
		if _, err := q.Refresh(context.Background(), "rt"); !errors.Is(err, ErrTransient) {
			t.Errorf("Refresh() = %v, want ErrTransient", err)
		}
	})
	t.Run("empty refresh token", func(t *testing.T) {
		if _, err := p.Refresh(context.Background(), ""); !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("Refresh(\"\") = %v, want ErrInvalidGrant", err)
		}
	})
}

// TestRefreshUntraced covers transports that report no httptrace events (an
// in-process one, for example): the error type decides.
func TestRefreshUntraced(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, ErrTransient},
		{"dns", &net.DNSError{Err: "no such host", Name: "idp.example", IsNotFound: true}, ErrTransient},
		{"tls", &tls.CertificateVerificationError{Err: errors.New("bad cert")}, ErrTransient},
		{"eof", io.ErrUnexpectedEOF, ErrOutcomeUnknown},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, ErrOutcomeUnknown},
	}
	p, _ := newFakeProvider(t, nil, http.NotFound)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := *p
			q.hc = &http.Client{Transport: failing{tt.err}}
			q.tokenHC = q.hc
			if _, err := q.Refresh(context.Background(), "rt"); !errors.Is(err, tt.want) {
				t.Errorf("Refresh() = %v, want %v", err, tt.want)
			}
		})
	}
}

// failing is a transport that fails every request with err.
type failing struct{ err error }

func (f failing) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// closedPortURL returns a URL on 127.0.0.1 where nothing listens.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/token"
}

func TestUserInfo(t *testing.T) {
	tests := []struct {
		name    string
		h       http.HandlerFunc
		want    Identity
		wantErr error
		errText string
	}{
		{"ok", func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer at" {
				w.WriteHeader(401)
				return
			}
			writeJSON(w, 200, map[string]any{"sub": "u1", "email": "Ann@Example.org", "preferred_username": "ann", "name": "Ann", "rat": 1})
		}, Identity{Subject: "u1", Email: "Ann@Example.org", Username: "ann", Name: "Ann"}, nil, ""},
		{"401", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }, Identity{}, ErrTokenRejected, ""},
		{"403", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(403) }, Identity{}, ErrTokenRejected, ""},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, Identity{}, ErrTransient, ""},
		{"signed", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/jwt")
			io.WriteString(w, "a.b.c")
		}, Identity{}, nil, "userinfo_signed_response_alg: none"},
		{"no sub", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"email": "a@example.org"})
		}, Identity{}, nil, "no sub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, srv := newFakeProvider(t, nil, tt.h)
			got, err := p.UserInfo(context.Background(), "at")
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("UserInfo() = %v, want %v", err, tt.wantErr)
				}
			case tt.errText != "":
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("UserInfo() = %v, want an error containing %q", err, tt.errText)
				}
			default:
				tt.want.Issuer = srv.URL
				if err != nil || got != tt.want {
					t.Errorf("UserInfo() = %+v, %v, want %+v", got, err, tt.want)
				}
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		p, _ := newFakeProvider(t, nil, http.NotFound)
		p.meta.UserinfoEndpoint = closedPortURL(t)
		if _, err := p.UserInfo(context.Background(), "at"); !errors.Is(err, ErrTransient) {
			t.Errorf("UserInfo() = %v, want ErrTransient", err)
		}
	})
}

func TestRevokeRequest(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   error
	}{
		{"ok", 200, nil},
		{"rejected", 401, ErrRejected},
		{"down", 503, ErrTransient},
		{"unknown", 502, ErrOutcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var form url.Values
			var basic bool
			p, _ := newFakeProvider(t, nil, func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				form = r.PostForm
				_, _, basic = r.BasicAuth()
				if tt.status != 200 {
					writeJSON(w, tt.status, map[string]string{"error": "invalid_client"})
				}
			})
			err := p.Revoke(context.Background(), "rt", "refresh_token")
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Errorf("Revoke() = %v, want %v", err, tt.want)
			}
			if !basic || form.Get("token") != "rt" || form.Get("token_type_hint") != "refresh_token" || form.Has("client_secret") {
				t.Errorf("request form = %v, basic auth %v; want token, hint and basic auth", form, basic)
			}
		})
	}
}

func TestSafeCode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"access_denied", "access_denied"},
		{"", "invalid_error_code"},
		{"<script>", "invalid_error_code"},
		{strings.Repeat("a", 65), "invalid_error_code"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := safeCode(tt.in); got != tt.want {
				t.Errorf("safeCode(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
