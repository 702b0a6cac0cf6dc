package metrics

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// TestObserve feeds the web hooks what web reports and reads the series back. The whole path, from a browser's
// sign-in through web's hooks to the scrape, is tested where it is wired: cmd/postern's TestMetrics.
func TestObserve(t *testing.T) {
	m := New(Sources{})
	m.ObserveSignIn(nil)
	m.ObserveSignIn(&auth.CallbackError{Code: "access_denied"})
	m.ObserveSignIn(fmt.Errorf("web: callback: %w", &auth.CallbackError{Code: "state_mismatch", Err: auth.ErrStateMismatch}))
	// The code comes from the callback query: one the list does not know must not become a series.
	m.ObserveSignIn(&auth.CallbackError{Code: "made_up_by_an_attacker"})
	m.ObserveSignIn(context.DeadlineExceeded)
	m.ObserveSend(nil)
	m.ObserveSend(fmt.Errorf("send: %w", mail.ErrAuthFailed))
	m.ObserveSend(mail.ErrAuthUnavailable)
	m.ObserveSend(io.ErrUnexpectedEOF)
	m.ObserveRequest("GET /mail/{box...}", http.StatusOK, 10*time.Millisecond)
	m.ObserveRequest("", http.StatusNotFound, time.Millisecond)

	for name, tc := range map[string]struct {
		got  float64
		want float64
	}{
		"sign_ins":                     {testutil.ToFloat64(m.signIns), 1},
		"failures access_denied":       {testutil.ToFloat64(m.signInFails.WithLabelValues("access_denied")), 1},
		"failures state_mismatch":      {testutil.ToFloat64(m.signInFails.WithLabelValues("state_mismatch")), 1},
		"failures other":               {testutil.ToFloat64(m.signInFails.WithLabelValues("other")), 2},
		"failures nonce_mismatch":      {testutil.ToFloat64(m.signInFails.WithLabelValues("nonce_mismatch")), 0},
		"sends ok":                     {testutil.ToFloat64(m.sends.WithLabelValues("ok")), 1},
		"sends auth_failed":            {testutil.ToFloat64(m.sends.WithLabelValues("auth_failed")), 1},
		"sends auth_unavailable":       {testutil.ToFloat64(m.sends.WithLabelValues("auth_unavailable")), 1},
		"sends error":                  {testutil.ToFloat64(m.sends.WithLabelValues("error")), 1},
		"failure series (known codes)": {float64(testutil.CollectAndCount(m.signInFails)), float64(len(signInReasons))},
		"request series":               {float64(testutil.CollectAndCount(m.httpDuration)), 2},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", name, tc.got, tc.want)
		}
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{`postern_http_request_duration_seconds_count{code="200",route="GET /mail/{box...}"} 1`,
		`postern_http_request_duration_seconds_count{code="404",route="unmatched"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("no sample %s in\n%s", want, text)
		}
	}
}

func TestServe(t *testing.T) {
	m := New(Sources{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln, nil) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "postern_build_info") {
		t.Errorf("/metrics = %d:\n%s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Serve did not stop")
	}
}
