package auth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/postern/postern/internal/devstack/idp"
)

// signIn runs one sign-in through the dev IdP's pages and returns its tokens.
func (e *keeperEnv) signIn(t *testing.T) TokenSet {
	t.Helper()
	f, authURL := e.p.Begin("/")
	return e.finish(t, f, authURL).Tokens
}

// TestIntrospectDevIdP pins the facts issue 17 measured at Authelia 4.39, on
// the dev IdP: an unused refresh token is active, a rotated one is not, and
// asking about the rotated one does not revoke the grant.
func TestIntrospectDevIdP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		if !e.p.CanIntrospect() {
			t.Fatal("CanIntrospect() = false, want true (the dev IdP advertises introspection_endpoint)")
		}
		ts := e.signIn(t)
		introspect := func(tok, hint string) bool {
			t.Helper()
			active, err := e.p.Introspect(t.Context(), tok, hint)
			if err != nil {
				t.Fatalf("Introspect(%s) = %v", hint, err)
			}
			return active
		}
		if !introspect(ts.RefreshToken, "refresh_token") {
			t.Error("unused refresh token: active = false, want true")
		}
		if !introspect(ts.AccessToken, "access_token") {
			t.Error("access token: active = false, want true")
		}
		next, err := e.p.Refresh(t.Context(), ts.RefreshToken)
		if err != nil {
			t.Fatalf("Refresh() = %v", err)
		}
		if introspect(ts.RefreshToken, "refresh_token") {
			t.Error("rotated refresh token: active = true, want false")
		}
		// Asked twice, and without a hint: still no reuse, still no revocation.
		if introspect(ts.RefreshToken, "") {
			t.Error("rotated refresh token, no hint: active = true, want false")
		}
		if !introspect(next.RefreshToken, "refresh_token") || !e.idp.Active(next.RefreshToken) {
			t.Error("new refresh token inactive after introspecting the rotated one, want active")
		}
		if introspect("authelia_rt_unknown.x", "refresh_token") {
			t.Error("unknown token: active = true, want false")
		}
		e.checkNoReuse(t)
		if got := e.idp.Stats().Introspections; got != 6 {
			t.Errorf("IdP Introspections = %d, want 6", got)
		}
	})
}

func TestIntrospectErrors(t *testing.T) {
	const secretToken = "tok-ABC-never-shown"
	tests := []struct {
		name string
		// setup breaks something and returns a context for the call and an undo.
		setup func(t *testing.T, e *keeperEnv) (*Provider, context.Context, func())
		want  error
	}{
		{"wrong client secret", func(t *testing.T, e *keeperEnv) (*Provider, context.Context, func()) {
			p, err := New(t.Context(), Config{Issuer: keeperIssuer, ClientID: keeperClient,
				ClientSecret: "wrong", RedirectURL: keeperRedirect}, &http.Client{Transport: e.idp.Transport()})
			if err != nil {
				t.Fatal(err)
			}
			return p, t.Context(), func() {}
		}, ErrRejected},
		{"down", func(t *testing.T, e *keeperEnv) (*Provider, context.Context, func()) {
			e.idp.SetDown(true)
			return e.p, t.Context(), func() { e.idp.SetDown(false) }
		}, ErrTransient},
		{"refused", func(t *testing.T, e *keeperEnv) (*Provider, context.Context, func()) {
			e.faults.set(func(f *faults) { f.refuse = true })
			return e.p, t.Context(), func() { e.faults.set(func(f *faults) { f.refuse = false }) }
		}, ErrTransient},
		{"frozen past the deadline", func(t *testing.T, e *keeperEnv) (*Provider, context.Context, func()) {
			e.idp.Freeze(idp.FreezeOptions{})
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			return e.p, ctx, func() { cancel(); e.idp.Thaw(); synctest.Wait() }
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newKeeperEnv(t)
				p, ctx, undo := tt.setup(t, e)
				_, err := p.Introspect(ctx, secretToken, "refresh_token")
				undo()
				if !errors.Is(err, tt.want) || errors.Is(err, ErrOutcomeUnknown) {
					t.Errorf("Introspect() = %v, want %v and not ErrOutcomeUnknown", err, tt.want)
				}
				if tt.want != ErrRejected && !errors.Is(err, ErrTransient) {
					t.Errorf("Introspect() = %v, want ErrTransient", err)
				}
				if err != nil && strings.Contains(err.Error(), secretToken) {
					t.Errorf("error shows the token: %v", err)
				}
			})
		})
	}
}

func TestIntrospectClassification(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		active bool
		want   error
	}{
		{"active", 200, `{"active":true,"client_id":"postern"}`, true, nil},
		{"inactive", 200, `{"active":false}`, false, nil},
		{"not RFC 7662", 200, `<html>login</html>`, false, ErrRejected},
		{"no active member", 200, `{"sub":"x"}`, false, ErrRejected},
		{"invalid_client", 401, `{"error":"invalid_client"}`, false, ErrRejected},
		{"bad request", 400, `{"error":"invalid_request"}`, false, ErrRejected},
		{"429", 429, ``, false, ErrTransient},
		{"500", 500, ``, false, ErrTransient},
		{"502", 502, ``, false, ErrTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got url.Values
			var user, pass string
			p, srv := newFakeProvider(t, map[string]any{"introspection_endpoint": nil}, func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				got = r.PostForm
				user, pass, _ = r.BasicAuth()
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			})
			if p.CanIntrospect() {
				t.Fatal("CanIntrospect() = true without introspection_endpoint")
			}
			if _, err := p.Introspect(t.Context(), "rt", "refresh_token"); !errors.Is(err, ErrIntrospectionUnsupported) {
				t.Fatalf("Introspect() without endpoint = %v, want ErrIntrospectionUnsupported", err)
			}
			// The override, as for Hydra's admin port.
			p, err := New(t.Context(), Config{Issuer: srv.URL, ClientID: "postern", ClientSecret: "s3cret+/:%",
				RedirectURL: "http://127.0.0.1:9/callback", IntrospectionURL: srv.URL + "/admin/introspect"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !p.CanIntrospect() || p.IntrospectionEndpoint() != srv.URL+"/admin/introspect" {
				t.Fatalf("CanIntrospect, IntrospectionEndpoint = %v, %q", p.CanIntrospect(), p.IntrospectionEndpoint())
			}
			active, err := p.Introspect(t.Context(), "rt-value", "refresh_token")
			if active != tt.active || !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Introspect() = %v, %v; want %v, %v", active, err, tt.active, tt.want)
			}
			if got.Get("token") != "rt-value" || got.Get("token_type_hint") != "refresh_token" {
				t.Errorf("form = %v", got)
			}
			if user != "postern" || pass != url.QueryEscape("s3cret+/:%") {
				t.Errorf("basic auth = %q, %q; want form-encoded client credentials (RFC 6749 §2.3.1)", user, pass)
			}
		})
	}
}

func TestNewIntrospectionURL(t *testing.T) {
	_, err := New(t.Context(), Config{Issuer: "http://127.0.0.1:9", ClientID: "c", ClientSecret: "s",
		RedirectURL: "http://x/cb", IntrospectionURL: "/relative"}, nil)
	if err == nil || !strings.Contains(err.Error(), "introspection url") {
		t.Errorf("New() = %v, want an introspection url error", err)
	}
}

// TestTimeouts: discovery-class requests give up after Config.Timeout, token
// endpoint requests wait for Config.TokenTimeout.
func TestTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newKeeperEnv(t)
		ts := e.signIn(t)
		p, err := New(t.Context(), Config{Issuer: keeperIssuer, ClientID: keeperClient, ClientSecret: keeperSecret,
			RedirectURL: keeperRedirect, Timeout: 5 * time.Second, TokenTimeout: 2 * time.Minute},
			&http.Client{Transport: e.idp.Transport(), Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		e.idp.Freeze(idp.FreezeOptions{For: 90 * time.Second})
		start := time.Now()
		if _, err := p.UserInfo(t.Context(), ts.AccessToken); !errors.Is(err, ErrTransient) {
			t.Errorf("UserInfo() during a 90 s freeze = %v, want ErrTransient", err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("UserInfo gave up after %v, want 5s (Config.Timeout)", d)
		}
		next, err := p.Refresh(t.Context(), ts.RefreshToken)
		if err != nil {
			t.Fatalf("Refresh() during the freeze = %v, want the late answer", err)
		}
		if d := time.Since(start); d != 90*time.Second {
			t.Errorf("Refresh answered after %v, want at the thaw (90s)", d)
		}
		if !e.idp.Active(next.RefreshToken) {
			t.Error("new refresh token inactive")
		}
		if err := p.Probe(t.Context()); err != nil {
			t.Errorf("Probe() after the thaw = %v", err)
		}
		synctest.Wait()
		e.checkNoReuse(t)
	})
}
