// Package metrics exposes Postern's Prometheus metrics on a listener of their own (server.metrics_listen), never on
// the public one.
//
// Most series are read at scrape time from counters that already exist: the keeper's refresh counters
// (auth.Keeper.Metrics), the IMAP pool's (mail.Pool.Stats) and the store's grant counts. Only what nothing else counts
// is counted here, as web reports it through its Observer hooks (observe.go): sign-ins, SMTP submissions and HTTP
// request durations (labelled with the route pattern, never the raw path). cmd wires the two together; this package
// does not import web.
//
// No label ever carries a user, an address, a token or a mailbox name: route patterns, outcome classes and status
// codes only, each from a bounded set.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/mail"
)

// Sources are the existing counters the registry reads at scrape time. Any may be nil.
type Sources struct {
	// Keeper is (*auth.Keeper).Metrics: refreshes by outcome, probes, grants moved to needs_sign_in.
	Keeper func() auth.Metrics
	// Pool is (*mail.Pool).Stats: IMAP connections open and idle, reuses, logins, refused logins.
	Pool func() mail.PoolStats
	// Grants is (*store.SQLite).CountGrantsByState, read at each scrape so the gauge is current; when nil the
	// keeper's own count (refreshed about once a minute by its Run) is used.
	Grants func(ctx context.Context) (map[store.GrantState]int, error)
	// DB is (*store.Postgres).PoolStats: the database connection pool (nil with SQLite).
	DB func() store.PoolStats
	// Version is reported by postern_build_info.
	Version string
}

// Metrics is Postern's registry. It is safe for concurrent use.
type Metrics struct {
	reg          *prometheus.Registry
	signIns      prometheus.Counter
	signInFails  *prometheus.CounterVec
	sends        *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
}

// New builds the registry with Postern's series, the Go runtime's and the process's.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.signIns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "postern_sign_ins_total",
		Help: "Sign-ins whose callback passed every check.",
	})
	m.signInFails = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_sign_in_failures_total",
		Help: "Failed sign-in callbacks, by reason (the IdP's error code or Postern's check that failed).",
	}, []string{"reason"})
	m.sends = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_smtp_sends_total",
		Help: "Messages submitted over SMTP, by outcome (ok, auth_failed, auth_unavailable, error).",
	}, []string{"outcome"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "postern_http_request_duration_seconds",
		Help:    "HTTP request durations by route pattern and status code. Live-update streams (GET /events/…) last as long as the page is open.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route", "code"})
	for _, r := range signInReasons {
		m.signInFails.WithLabelValues(r)
	}
	for _, o := range sendOutcomes {
		m.sends.WithLabelValues(o)
	}
	m.reg.MustRegister(m.signIns, m.signInFails, m.sends, m.httpDuration,
		newSourceCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	version := src.Version
	if version == "" {
		version = "dev"
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "postern_build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	m.reg.MustRegister(info)
	return m
}

// Registry returns the underlying registry, for tests and for registering more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text (or OpenMetrics) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Serve serves GET /metrics on ln until ctx is done. It is meant for server.metrics_listen, a listener that is not
// exposed through the reverse proxy.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if logger != nil {
		srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
