//go:build e2e

package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/store"
)

// hydraFreeze is how long Hydra is stopped: longer than the access tokens of
// the short client live (15 s), so views meet a moment without any valid
// token, and shorter than oidc.token_timeout (2m), so a refresh sent just
// before the freeze waits for its late answer instead of giving up on it.
const hydraFreeze = 90 * time.Second

// TestHydraFrozen freezes Hydra with SIGSTOP for 90 s while two Postern
// processes sharing one store serve a signed-in user's views, as Authelia
// under an overloaded host or a stalled database hangs (issue 17): the
// kernel still accepts connections, and Hydra reads and answers requests only
// after SIGCONT. Nobody may be signed out: the grant survives with the same
// id, Hydra never sees a spent refresh token (Hydra reports re-use by
// revoking the grant, so the last refresh token must still introspect as
// active), views answer 200 or the friendly 503 during the freeze — never a
// sign-in page — and 200 after it.
//
// Hydra 2.3 differs from Authelia in one respect: a request whose client has
// gone is processed with a cancelled context, so its SQL transaction aborts
// ("sqlite select one: context canceled" in Hydra's log) and a refresh
// abandoned during the freeze is dropped, not committed. The test passes with
// a 15 s oidc.token_timeout too. The late-commit case (Authelia) is covered by
// the dev IdP's Freeze in the auth tests.
func TestHydraFrozen(t *testing.T) {
	tb := peers(t)
	pid := hydraPID(t, tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hydraLog := markLog(t, tb.HydraLog)

	opts := posternOptions{
		Listen: "127.0.0.1:18081", Client: tb.short(), RefreshBeforeExpiry: tb.ShortTTL,
		TokenTimeout: 2 * time.Minute, IntrospectionURL: tb.IntrospectionURL,
	}
	a := startPostern(t, tb, opts)
	opts.Listen, opts.ShareWith = "127.0.0.1:18082", a
	b := startPostern(t, tb, opts)

	br := newBrowser(t)
	resp, page := br.signInForm(ctx, t, a.URL+"/mail/INBOX", "alice", "alice-password")
	if got := resp.Request.URL.String(); got != a.URL+"/mail/INBOX" || resp.StatusCode != http.StatusOK {
		t.Fatalf("after sign-in: at %s with status %d, want the inbox; page: %.300s", got, resp.StatusCode, visibleText(page))
	}
	st := a.openStore(t)
	first := a.grantOf(t, st, "alice")
	tokens := []string{first.AccessToken, first.RefreshToken, first.IDToken}
	note := func() {
		g := a.grantOf(t, st, "alice")
		if g.RefreshToken != tokens[len(tokens)-2] {
			tokens = append(tokens, g.AccessToken, g.RefreshToken, g.IDToken)
		}
	}

	// view asks one of the two processes for the inbox and classifies the
	// answer; a view must never end at a sign-in page.
	views := map[string]int{}
	n := 0
	view := func(phase string) int {
		p := a
		if n%2 == 1 {
			p = b
		}
		n++
		status, where := quietGet(ctx, br, p.URL+"/mail/INBOX")
		views[phase+" "+strconv.Itoa(status)]++
		if status == http.StatusOK && where != p.URL+"/mail/INBOX" || strings.Contains(where, "/login") || strings.Contains(where, "/oauth2/auth") {
			t.Errorf("%s: a view of %s ended at %s (status %d): a sign-in", phase, p.URL, where, status)
		}
		note()
		return status
	}

	// Before: both processes serve views, across a few refreshes.
	for end := time.Now().Add(2 * tb.ShortTTL); time.Now().Before(end); time.Sleep(time.Second) {
		if s := view("before"); s != http.StatusOK {
			t.Fatalf("before the freeze: a view answered %d", s)
		}
	}

	// The freeze. SIGCONT also in Cleanup, so a failing test never leaves Hydra stopped for the next one.
	thaw := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(thaw)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP hydra (pid %d): %v", pid, err)
	}
	t.Logf("hydra (pid %d) stopped for %v", pid, hydraFreeze)
	unavailable := 0
	for end := time.Now().Add(hydraFreeze); time.Now().Before(end); time.Sleep(time.Second) {
		switch s := view("frozen"); s {
		case http.StatusServiceUnavailable:
			unavailable++
		case http.StatusOK, http.StatusBadGateway, 0: // a pooled connection; the mail server's own wait on Hydra
		default:
			t.Errorf("during the freeze: a view answered %d", s)
		}
	}
	thaw()
	t.Log("hydra continued")
	if unavailable == 0 {
		t.Errorf("no view answered 503 during a %v freeze with %v access tokens: the freeze did not bite", hydraFreeze, tb.ShortTTL)
	}

	// After: every view succeeds again, on both processes, once the late answers are in.
	err := eventually(3*time.Minute, time.Second, func() error {
		if s := view("recovering"); s != http.StatusOK {
			return errors.New("view answered " + strconv.Itoa(s))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after the freeze: %v", err)
	}
	for end := time.Now().Add(2 * tb.ShortTTL); time.Now().Before(end); time.Sleep(time.Second) {
		if s := view("after"); s != http.StatusOK {
			t.Errorf("after the freeze: a view answered %d", s)
		}
	}
	t.Logf("views by phase and status: %v; %d refresh tokens seen", views, len(tokens)/3)

	last := a.grantOf(t, st, "alice")
	if last.ID != first.ID || last.State != store.StateOK {
		t.Errorf("grant %s state %s (%s), want the first grant %s in state ok: the grant was lost", last.ID, last.State, last.LastError, first.ID)
	}
	if in := tb.introspect(t, last.RefreshToken); !in.Active {
		t.Errorf("the current refresh token is inactive at Hydra: the grant was revoked (refresh-token re-use?)")
	}
	logs := hydraLog.since(t)
	for _, bad := range []string{"re-use", "already used"} {
		if strings.Contains(strings.ToLower(logs), bad) {
			t.Errorf("hydra's log mentions %q during the test", bad)
		}
	}
	assertNoSecrets(t, "postern A's log", a.Log(), tokens...)
	assertNoSecrets(t, "postern B's log", b.Log(), tokens...)
	assertNoSecrets(t, "hydra's log", logs, tokens...)
}

// hydraPID reads the PID testbed-up recorded and checks that it is alive.
func hydraPID(t *testing.T, tb *testbed) int {
	t.Helper()
	raw, err := os.ReadFile(tb.HydraPIDFile)
	if err != nil {
		t.Fatalf("hydra pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		t.Fatalf("hydra pid file %s: %q", tb.HydraPIDFile, raw)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("hydra (pid %d) is not running: %v", pid, err)
	}
	return pid
}

// quietGet fetches u with the browser's cookies and returns the final status
// and URL, or 0 and the error text when no answer came within a minute: during
// a freeze, a view may wait on the mail server, which waits on Hydra.
func quietGet(ctx context.Context, br *browser, u string) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err.Error()
	}
	hc := *br.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, resp.Request.URL.String()
}

// TestDoctorOutcomeProbe runs `postern doctor` against Hydra: its public
// discovery does not advertise introspection, so without
// oidc.introspection_url the doctor warns that only the userinfo probe is
// left; with Hydra's admin endpoint configured, introspection answers a
// made-up token with active: false although Postern sends its client
// credentials, which Hydra's admin API does not need.
func TestDoctorOutcomeProbe(t *testing.T) {
	tb := peers(t)
	for _, tc := range []struct {
		name   string
		opts   posternOptions
		prefix string
		detail string
	}{
		{"discovery only", posternOptions{Listen: "127.0.0.1:18080", Client: tb.postern()}, "! outcome_probe", "no introspection_endpoint"},
		{"introspection_url", posternOptions{Listen: "127.0.0.1:18081", Client: tb.short(), IntrospectionURL: tb.IntrospectionURL},
			"✓ outcome_probe", "(from oidc.introspection_url) answers active: false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPostern(t, tb, tc.opts)
			cmd := exec.Command(posternBinary(t), "doctor", "-config", p.cfgPath)
			cmd.Env = cleanEnv()
			out, _ := cmd.CombinedOutput() // the mail checks may fail against Dovecot; only outcome_probe matters here
			var line string
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "outcome_probe") {
					line = l
				}
			}
			if !strings.HasPrefix(line, tc.prefix) || !strings.Contains(line, tc.detail) {
				t.Errorf("doctor's outcome_probe line = %q, want %q … %q\n%s", line, tc.prefix, tc.detail, out)
			}
			assertNoSecrets(t, "doctor's output", string(out), tc.opts.Client.Secret)
		})
	}
}
