package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/mail"
)

// Operations endpoints: /healthz says the process serves HTTP (liveness: restart me if this fails); /readyz says
// whether Postern can do its job right now (readiness: send me users, or not), by asking each dependency. They are
// routed in the "Operations" block of routes.go, outside the session and login machinery.

// Checker is one dependency /readyz asks about. Check returns nil when the dependency is usable; its error text is
// shown in the /readyz answer, so it must not carry secrets (host names and status codes are fine).
type Checker interface {
	Check(ctx context.Context) error
}

// CheckFunc adapts a function to Checker; (*store.SQLite).Ping fits as CheckFunc(st.Ping).
type CheckFunc func(ctx context.Context) error

// Check implements Checker.
func (f CheckFunc) Check(ctx context.Context) error { return f(ctx) }

// readyTimeout bounds every check of one /readyz request; the checks run concurrently.
const readyTimeout = 3 * time.Second

// operations is the state of the operations endpoints. checks is set by SetReadiness before serving; mux is set
// when routes are built, for RoutePattern.
type operations struct {
	mu     sync.Mutex
	checks map[string]Checker
	failed map[string]bool // last outcome per check, so a failure is logged when it starts and ends, not per probe
	mux    *http.ServeMux
}

// SetReadiness sets the dependencies /readyz checks, by name ("store", "idp", "imap"). Call it before serving.
// Without any, /readyz answers ready as soon as the process serves HTTP.
func (s *Server) SetReadiness(checks map[string]Checker) {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	s.ops.checks = checks
	s.ops.failed = make(map[string]bool, len(checks))
}

// RoutePattern returns the pattern of the route that serves r, such as "GET /mail/{box...}", or "" when no route
// matches. Metrics label requests with it: a pattern, unlike a path, names no mailbox and has a bounded set of values.
func (s *Server) RoutePattern(r *http.Request) string {
	if s.ops.mux == nil {
		return ""
	}
	_, pattern := s.ops.mux.Handler(r)
	return pattern
}

// handleHealthz is the liveness probe: it only shows that the process serves HTTP, and must not depend on the IdP or
// the mail server, or an outage there would make an orchestrator restart a healthy Postern in a loop.
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, "ok\n")
}

// readiness is the /readyz answer.
type readiness struct {
	Ready bool `json:"ready"`
	// Checks maps each check to "ok" or what went wrong.
	Checks map[string]string `json:"checks"`
}

// handleReadyz runs every readiness check concurrently, each bounded by readyTimeout, and answers 200 with
// {"ready":true,…} when all pass, 503 otherwise.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	s.ops.mu.Lock()
	checks := s.ops.checks
	s.ops.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	type outcome struct {
		name string
		err  error
	}
	results := make(chan outcome, len(checks))
	for name, c := range checks {
		go func() { results <- outcome{name, c.Check(ctx)} }()
	}
	ans := readiness{Ready: true, Checks: make(map[string]string, len(checks))}
	for range checks {
		o := <-results
		ans.Checks[o.name] = "ok"
		if o.err != nil {
			ans.Ready = false
			// /readyz is reachable by anyone who reaches Postern: the cause (host names, addresses) goes to the
			// log only, once per change, by noteReadiness.
			ans.Checks[o.name] = "fail"
		}
		s.noteReadiness(o.name, o.err)
	}

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusOK
	if !ans.Ready {
		status = http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ans)
}

// noteReadiness logs a check when it starts or stops failing.
func (s *Server) noteReadiness(name string, err error) {
	s.ops.mu.Lock()
	was := s.ops.failed[name]
	if s.ops.failed != nil {
		s.ops.failed[name] = err != nil
	}
	s.ops.mu.Unlock()
	switch {
	case err != nil && !was:
		s.logger.Warn("not ready", slog.String("check", name), slog.Any("err", err))
	case err == nil && was:
		s.logger.Info("ready again", slog.String("check", name))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// cachedCheck remembers a check's outcome for ttl, so that frequent probes cost the dependency one request per ttl.
type cachedCheck struct {
	c   Checker
	ttl time.Duration

	mu   sync.Mutex
	at   time.Time
	last error
}

// CacheCheck returns c with its outcome (success or failure) remembered for ttl.
func CacheCheck(c Checker, ttl time.Duration) Checker { return &cachedCheck{c: c, ttl: ttl} }

// Check implements Checker. Concurrent probes share one call to c.
func (c *cachedCheck) Check(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.ttl {
		return c.last
	}
	c.last = c.c.Check(ctx)
	c.at = time.Now()
	return c.last
}

// DiscoveryCheck fetches the identity provider's discovery document with auth.ProbeDiscovery through hc, within 2
// seconds: HTTP 200 and a JSON document naming issuer, byte for byte. The outcome is cached for ttl (10 s when ttl is
// 0), so probes every second cost the IdP one request per ttl. cmd/postern uses (*auth.Provider).Probe, the same
// probe through the Provider's client.
func DiscoveryCheck(hc *http.Client, issuer string, ttl time.Duration) Checker {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	return CacheCheck(CheckFunc(func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return auth.ProbeDiscovery(ctx, hc, issuer)
	}), ttl)
}

// IMAPCheck probes the IMAP server with mail.Probe (connect, TLS as configured and verified, greeting, capabilities,
// logout), within 2 seconds. It does not authenticate: readiness must not depend on any user's token, nor cost the
// mail server a call to the IdP.
func IMAPCheck(srv mail.Server) Checker {
	return CheckFunc(func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := mail.Probe(ctx, srv); err != nil {
			return fmt.Errorf("imap: %w", err)
		}
		return nil
	})
}
