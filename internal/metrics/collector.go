package metrics

import (
	"context"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/auth"
)

// sourceCollector turns the keeper's, the pool's and the store's counters into series at scrape time, so nothing is
// counted twice.
type sourceCollector struct {
	src Sources

	refreshAttempts, refreshes, probes, signInRequired, expired, abandoned, signOuts *prometheus.Desc
	grants                                                                           *prometheus.Desc
	poolConns, poolReuses, imapLogins, imapAuthFailures                              *prometheus.Desc
	dbConns, dbAcquires, dbWaits, dbWaitSeconds                                      *prometheus.Desc
}

// Grant states, refresh outcomes, probe results and sign-in reasons are always reported, at 0 until they happen, so
// that alerts on them do not see gaps. auth names them; these are its lists as label values.
var (
	grantStates     = labels(auth.States())
	refreshOutcomes = labels(auth.RefreshOutcomes())
	probeResults    = labels(auth.ProbeResults())
	needsSignIn     = labels(auth.SignInReasons())
)

// labels turns a list of auth's typed values into label values.
func labels[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// byLabel re-keys one of auth's typed counters by label value.
func byLabel[K ~string, V any](m map[K]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[string(k)] = v
	}
	return out
}

func newSourceCollector(src Sources) *sourceCollector {
	d := prometheus.NewDesc
	return &sourceCollector{
		src:             src,
		refreshAttempts: d("postern_token_refresh_attempts_total", "Refresh-token requests sent to the IdP's token endpoint.", nil, nil),
		refreshes: d("postern_token_refreshes_total",
			"Token refreshes by outcome: ok, invalid_grant (grant gone), unavailable, timeout, rejected (configuration), outcome_unknown.",
			[]string{"outcome"}, nil),
		probes: d("postern_token_probes_total",
			"Probes after an unknown refresh outcome (introspection of the refresh token, or userinfo) or a refused mail login, by result.",
			[]string{"result"}, nil),
		signInRequired: d("postern_grants_sign_in_required_total",
			"Grants moved to needs_sign_in, by reason.", []string{"reason"}, nil),
		expired: d("postern_grants_expired_total", "Grants revoked and deleted by session policy (idle timeout or lifetime).", nil, nil),
		abandoned: d("postern_grants_abandoned_total",
			"Grants deleted after needing a new sign-in for the whole session idle timeout.", nil, nil),
		signOuts: d("postern_sign_outs_total", "Sign-outs.", nil, nil),
		grants: d("postern_grants",
			"Grants by state: ok, degraded (refresh failing, retrying), needs_sign_in (the user must sign in again).",
			[]string{"state"}, nil),
		poolConns: d("postern_imap_pool_connections",
			"Pooled IMAP connections: open (idle, in use or being dialled) and idle.", []string{"state"}, nil),
		poolReuses: d("postern_imap_pool_reuses_total",
			"IMAP work served by an already authenticated connection (pool hits).", nil, nil),
		imapLogins: d("postern_imap_logins_total",
			"Successful IMAP AUTHENTICATEs; each costs the mail server one userinfo call to the IdP.", nil, nil),
		imapAuthFailures: d("postern_imap_auth_failures_total",
			"IMAP logins refused or not checkable (token refused, IdP unavailable at the mail server).", nil, nil),
		dbConns: d("postern_db_pool_connections",
			"PostgreSQL connections of this instance: total, idle, in_use and max (the bound).", []string{"state"}, nil),
		dbAcquires: d("postern_db_pool_acquires_total", "Connections taken from the PostgreSQL pool.", nil, nil),
		dbWaits: d("postern_db_pool_waits_total",
			"Takes from the PostgreSQL pool that found no idle connection and waited (for a new one or a busy one).", nil, nil),
		dbWaitSeconds: d("postern_db_pool_acquire_seconds_total",
			"Time spent taking connections from the PostgreSQL pool.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.refreshAttempts, c.refreshes, c.probes, c.signInRequired, c.expired, c.abandoned, c.signOuts,
		c.grants, c.poolConns, c.poolReuses, c.imapLogins, c.imapAuthFailures,
		c.dbConns, c.dbAcquires, c.dbWaits, c.dbWaitSeconds} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	var keeperStates map[string]int
	if c.src.Keeper != nil {
		km := c.src.Keeper()
		counter(c.refreshAttempts, float64(km.RefreshAttempts))
		outcomes, probes, signIns := byLabel(km.RefreshOutcomes), byLabel(km.Probes), byLabel(km.SignInRequired)
		for _, o := range union(refreshOutcomes, outcomes) {
			counter(c.refreshes, float64(outcomes[o]), o)
		}
		for _, r := range union(probeResults, probes) {
			counter(c.probes, float64(probes[r]), r)
		}
		for _, r := range union(needsSignIn, signIns) {
			counter(c.signInRequired, float64(signIns[r]), r)
		}
		counter(c.expired, float64(km.Expired))
		counter(c.abandoned, float64(km.Abandoned))
		counter(c.signOuts, float64(km.SignOuts))
		if km.GrantsByState != nil {
			keeperStates = byLabel(km.GrantsByState)
		}
	}

	states := keeperStates
	if c.src.Grants != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		counts, err := c.src.Grants(ctx)
		cancel()
		if err != nil {
			// No gauge rather than a failed scrape: the other series are still worth having, and a missing
			// postern_grants is easy to alert on.
			states = nil
		} else {
			states = make(map[string]int, len(counts))
			for s, n := range counts {
				states[string(s)] = n
			}
		}
	}
	if states != nil {
		for _, s := range union(grantStates, states) {
			gauge(c.grants, float64(states[s]), s)
		}
	}

	if c.src.Pool != nil {
		ps := c.src.Pool()
		gauge(c.poolConns, float64(ps.Open), "open")
		gauge(c.poolConns, float64(ps.Idle), "idle")
		counter(c.poolReuses, float64(ps.Reuses))
		counter(c.imapLogins, float64(ps.Logins))
		counter(c.imapAuthFailures, float64(ps.AuthFailures))
	}

	if c.src.DB != nil {
		db := c.src.DB()
		gauge(c.dbConns, float64(db.Total), "total")
		gauge(c.dbConns, float64(db.Idle), "idle")
		gauge(c.dbConns, float64(db.InUse), "in_use")
		gauge(c.dbConns, float64(db.Max), "max")
		counter(c.dbAcquires, float64(db.Acquires))
		counter(c.dbWaits, float64(db.Waits))
		counter(c.dbWaitSeconds, db.WaitTime.Seconds())
	}
}

// union returns the fixed keys followed by any other keys of m, sorted, so series appear in a stable order.
func union[V any](fixed []string, m map[string]V) []string {
	out := append([]string(nil), fixed...)
	var extra []string
	for k := range m {
		found := false
		for _, f := range fixed {
			if f == k {
				found = true
				break
			}
		}
		if !found {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}
