// Package doctor checks a Postern configuration against the live identity provider (Authelia) and mail server
// (Stalwart) and says, for every problem it finds, exactly what to change and where: the line of Authelia's client
// registration, the Stalwart directory setting, or the Postern key.
//
// Every check talks to the real peers and changes nothing there. The only requests with side effects are an
// authorization request the doctor never completes (the IdP may keep a pending flow for a few minutes) and a token
// request with a made-up authorization code, which the IdP refuses; how it refuses tells a good client registration
// (invalid_grant) from a bad one (invalid_client). With Options.Token the doctor also logs in to IMAP and SMTP once.
//
// Output never contains the client secret or the token.
package doctor

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/postern/postern/internal/config"
)

// Status is the outcome of one check.
type Status int

const (
	// Pass means the check found nothing wrong.
	Pass Status = iota
	// Warn means Postern works, but less safely or less well than it could; Fix says how to improve it.
	Warn
	// Fail means Postern will not work (or not for everyone) until Fix is applied.
	Fail
	// Skip means the check could not run because an earlier one failed.
	Skip
)

// String returns the symbol printed for the status.
func (s Status) String() string {
	switch s {
	case Pass:
		return "✓"
	case Warn:
		return "!"
	case Fail:
		return "✗"
	}
	return "-"
}

// Result is the outcome of one check.
type Result struct {
	// Name identifies the check ("discovery", "issuer", "client_auth", "imap", …); stable, for scripts and tests.
	Name   string
	Status Status
	// Detail says what was found, in one line.
	Detail string
	// Fix says exactly what to change, possibly over several lines (YAML or TOML to paste); empty when Status is
	// Pass or Skip.
	Fix string
}

// OK reports whether the check did not fail.
func (r Result) OK() bool { return r.Status != Fail }

// Options tune Run.
type Options struct {
	// HTTPClient talks to the identity provider; nil builds one from oidc.ca_file and oidc.http_timeout. It must
	// not follow redirects blindly: Run makes its own copy that does not follow them for the authorization probe.
	HTTPClient *http.Client
	// Token is an optional access token of a real user. With it, Run asks userinfo who it belongs to and logs in to
	// IMAP and SMTP with it, exactly as Postern would.
	Token string
	// Timeout bounds each network step; default 10 s.
	Timeout time.Duration
}

// Run performs every check in order and returns their results. Checks that depend on an earlier one (everything
// about the IdP needs its discovery document) are skipped when it fails. Run never returns early on a failure: the
// point is to list every problem at once.
func Run(ctx context.Context, cfg *config.Config, opts Options) []Result {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	hc := opts.HTTPClient
	if hc == nil {
		tc, err := config.ClientTLS(cfg.OIDC.CAFile, "")
		if err != nil {
			return []Result{{Name: "discovery", Status: Fail, Detail: "oidc.ca_file: " + err.Error(),
				Fix: "Point oidc.ca_file at a readable PEM file holding the CA certificate that signed Authelia's certificate."}}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		hc = &http.Client{Transport: tr, Timeout: opts.Timeout}
	}
	d := &run{cfg: cfg, opts: opts, hc: hc}
	d.idp(ctx)
	d.mail(ctx)
	d.storage(ctx)
	if opts.Token != "" {
		d.token(ctx)
	}
	return d.results
}

// Failed reports whether any result failed.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if !r.OK() {
			return true
		}
	}
	return false
}

// run carries state from one check to the next: the discovery document, the identity behind the token.
type run struct {
	cfg     *config.Config
	opts    Options
	hc      *http.Client
	results []Result

	disc     *discovery // nil when discovery failed
	identity *identity  // from userinfo with Options.Token
	// clientKnown and clientUnknown record what the authorization request showed about oidc.client_id, which
	// tells a wrong secret from a wrong client id when the token endpoint says only invalid_client.
	clientKnown, clientUnknown bool
}

func (d *run) pass(name, format string, args ...any) {
	d.results = append(d.results, Result{Name: name, Status: Pass, Detail: fmt.Sprintf(format, args...)})
}

func (d *run) warn(name, detail, fix string) {
	d.results = append(d.results, Result{Name: name, Status: Warn, Detail: detail, Fix: strings.TrimSpace(fix)})
}

func (d *run) fail(name, detail, fix string) {
	d.results = append(d.results, Result{Name: name, Status: Fail, Detail: detail, Fix: strings.TrimSpace(fix)})
}

func (d *run) skip(name, why string) {
	d.results = append(d.results, Result{Name: name, Status: Skip, Detail: "skipped: " + why})
}

// autheliaClient is the client block that works for Postern, filled with this configuration's values; fixes quote
// the lines that matter from it.
func (d *run) autheliaClient() string {
	return fmt.Sprintf(`identity_providers:
  oidc:
    clients:
      - client_id: '%s'
        client_name: 'Postern'
        client_secret: '$pbkdf2-sha512$310000$…'  # the digest of Postern's oidc.client_secret
        public: false
        authorization_policy: 'two_factor'
        require_pkce: true
        pkce_challenge_method: 'S256'
        redirect_uris:
          - '%s'
        scopes: ['openid', 'offline_access', 'profile', 'email']
        grant_types: ['authorization_code', 'refresh_token']
        response_types: ['code']
        consent_mode: 'pre-configured'
        pre_configured_consent_duration: '1 week'
        userinfo_signed_response_alg: 'none'
        token_endpoint_auth_method: 'client_secret_basic'`, d.cfg.OIDC.ClientID, d.redirectURL())
}

// redirectURL is the callback Postern sends: server.public_url + /callback.
func (d *run) redirectURL() string {
	return strings.TrimRight(d.cfg.Server.PublicURL, "/") + "/callback"
}

// indent prefixes every line of s with n spaces.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}
