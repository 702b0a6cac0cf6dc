package idp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// introspect asks the IdP about token with the client's own credentials, as Postern does.
func introspect(t *testing.T, hc *http.Client, p *IdP, token, hint string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+pathIntrospection, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	return doJSON(t, hc, req)
}

// TestIntrospectUsedRefreshToken pins the Authelia 4.39 facts of issue 17: a rotated refresh token introspects as
// inactive, and asking about it neither counts as reuse nor revokes the grant (only presenting it at the token
// endpoint does).
func TestIntrospectUsedRefreshToken(t *testing.T) {
	p := startIdP(t, nil)
	hc := newBrowser(t, nil)
	tok, _ := login(t, p, hc, oauthConfig(p), "alice", "alice-pw")
	if code, body := introspect(t, hc, p, tok.RefreshToken, "refresh_token"); code != 200 || body["active"] != true {
		t.Fatalf("unused RT: %d %v, want active", code, body)
	}
	code, body := refresh(t, hc, p, tok.RefreshToken)
	if code != 200 {
		t.Fatalf("refresh: %d %v", code, body)
	}
	next := body["refresh_token"].(string)
	for _, hint := range []string{"refresh_token", "access_token", ""} {
		if code, body := introspect(t, hc, p, tok.RefreshToken, hint); code != 200 || body["active"] != false || len(body) != 1 {
			t.Errorf("used RT, hint %q: %d %v, want exactly {active:false}", hint, code, body)
		}
	}
	if code, body := introspect(t, hc, p, next, "refresh_token"); code != 200 || body["active"] != true {
		t.Errorf("new RT after introspecting the used one: %d %v, want active", code, body)
	}
	if !p.Active(next) || !p.Active(body["access_token"].(string)) {
		t.Error("the grant's new tokens were revoked by introspection")
	}
	if s := p.Stats(); s.RefreshReuses != 0 || s.FamilyRevocations != 0 || s.Introspections != 5 {
		t.Errorf("Stats = %+v, want 0 reuses, 0 family revocations, 5 introspections", s)
	}
	// The counters still see a real reuse: presenting the used token at the token endpoint.
	if code, _ := refresh(t, hc, p, tok.RefreshToken); code != 400 {
		t.Errorf("reuse: %d, want 400", code)
	}
	if s := p.Stats(); s.RefreshReuses != 1 || s.FamilyRevocations != 1 || p.Active(next) {
		t.Errorf("after reuse: Stats = %+v, new RT active %v; want 1 reuse, 1 family revocation, inactive", s, p.Active(next))
	}
}

// TestFreezeInProcess: inside a bubble, a refresh sent to a frozen IdP times out at the client, is processed at the
// thaw, and commits its rotation: the old refresh token is dead although nobody saw the new one.
func TestFreezeInProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.Issuer = "http://idp.test"
		p, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		hc := newBrowser(t, p.Transport())
		tok, _ := login(t, p, hc, oauthConfig(p), "alice", "alice-pw")

		p.Freeze(FreezeOptions{For: 90 * time.Second})
		if !p.Frozen() {
			t.Fatal("Frozen() = false after Freeze")
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.Issuer()+pathToken, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
		if _, err := hc.Do(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("refresh during the freeze = %v, want the client's deadline", err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("client gave up after %v, want 5s", d)
		}
		synctest.Wait()
		if s := p.Stats(); s.Refreshes != 0 || s.HeldWhileFrozen != 1 || !p.Active(tok.RefreshToken) {
			t.Errorf("while frozen: Stats = %+v, RT active %v; want nothing processed, 1 held, RT active", s, p.Active(tok.RefreshToken))
		}

		time.Sleep(time.Until(start.Add(90 * time.Second)))
		synctest.Wait()
		if p.Frozen() {
			t.Error("Frozen() = true after For elapsed")
		}
		if s := p.Stats(); s.Refreshes != 1 || p.Active(tok.RefreshToken) {
			t.Errorf("after the thaw: Refreshes = %d, old RT active %v; want 1, false (the rotation committed)", s.Refreshes, p.Active(tok.RefreshToken))
		}
		// Served normally again.
		if code, body := introspect(t, hc, p, tok.RefreshToken, "refresh_token"); code != 200 || body["active"] != false {
			t.Errorf("introspect after the thaw: %d %v", code, body)
		}
	})
}

// TestFreezeUntilClientGone: with UntilClientGone a request is processed only after its client gave up, even when
// the freeze ended earlier; over a real socket, as a stopped Authelia behind the kernel's accept queue.
func TestFreezeUntilClientGone(t *testing.T) {
	p := startIdP(t, nil)
	hc := newBrowser(t, nil)
	tok, _ := login(t, p, hc, oauthConfig(p), "alice", "alice-pw")

	p.Freeze(FreezeOptions{UntilClientGone: true})
	errc, cancel := sendRefresh(t, p, hc, tok.RefreshToken)
	waitFor(t, func() bool { return p.Stats().HeldWhileFrozen == 1 })
	p.Thaw()
	// Thawed, but the client is still waiting: the request stays held. Counting proves it is not processed.
	select {
	case err := <-errc:
		t.Fatalf("request answered while its client waited: %v", err)
	default:
	}
	if s := p.Stats(); s.Refreshes != 0 || !p.Active(tok.RefreshToken) {
		t.Fatalf("processed before the client left: %+v", s)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	waitFor(t, func() bool { return p.Stats().Refreshes == 1 })
	if p.Active(tok.RefreshToken) {
		t.Error("old RT active after the late refresh committed")
	}
	if s := p.Stats(); s.RefreshReuses != 0 {
		t.Errorf("RefreshReuses = %d, want 0", s.RefreshReuses)
	}
}

// sendRefresh sends a refresh-token request over a real socket in the background; cancel gives up on it (the
// client leaving), and errc has the client's error once it returns.
func sendRefresh(t *testing.T, p *IdP, hc *http.Client, refreshToken string) (errc chan error, cancel context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.Issuer()+pathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	errc = make(chan error, 1)
	go func() {
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	return errc, cancel
}

// waitFor polls cond; real sockets have no fake clock. It gives up after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached within 10s")
}

// TestFreezeDropIfClientGone: a held request whose client left before the thaw is dropped, never processed: the
// refresh token stays unused.
func TestFreezeDropIfClientGone(t *testing.T) {
	p := startIdP(t, nil)
	hc := newBrowser(t, nil)
	tok, _ := login(t, p, hc, oauthConfig(p), "alice", "alice-pw")

	p.Freeze(FreezeOptions{DropIfClientGone: true})
	errc, cancel := sendRefresh(t, p, hc, tok.RefreshToken)
	waitFor(t, func() bool { return p.Stats().HeldWhileFrozen == 1 })
	cancel()
	<-errc
	waitFor(t, func() bool { return p.Stats().DroppedWhileFrozen == 1 })
	p.Thaw()
	if s := p.Stats(); s.Refreshes != 0 || !p.Active(tok.RefreshToken) {
		t.Errorf("a dropped refresh was processed: %+v, old refresh token active %v", s, p.Active(tok.RefreshToken))
	}
}
