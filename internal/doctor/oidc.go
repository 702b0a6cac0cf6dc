package doctor

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/auth"
)

// maxBody bounds every response the doctor reads.
const maxBody = 1 << 20

// discovery is the part of the OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414 §2, RFC 9207 §3)
// that Postern depends on.
type discovery struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	ScopesSupported                   []string `json:"scopes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	IssParameterSupported             bool     `json:"authorization_response_iss_parameter_supported"`
}

// idp runs the identity provider checks: discovery, issuer, endpoints, PKCE, RFC 9207, offline access, the client
// registration (an authorization request that is never completed) and client authentication (a token request with
// a made-up code).
func (d *run) idp(ctx context.Context) {
	d.discover(ctx)
	if d.disc == nil {
		for _, n := range []string{"issuer", "endpoints", "pkce", "iss_parameter", "offline_access", "authorization", "client_auth", "outcome_probe"} {
			d.skip(n, "no discovery document")
		}
		return
	}
	d.checkIssuer()
	d.checkEndpoints()
	d.checkPKCE()
	d.checkIssParameter()
	d.checkOfflineAccess()
	if d.disc.AuthorizationEndpoint == "" {
		d.skip("authorization", "no authorization_endpoint")
	} else {
		d.probeAuthorization(ctx)
	}
	if d.disc.TokenEndpoint == "" {
		d.skip("client_auth", "no token_endpoint")
	} else {
		d.probeClientAuth(ctx)
	}
	d.probeOutcome(ctx)
}

// probeOutcome reports which probe Postern has after a refresh whose answer was lost (the IdP may have rotated the
// refresh token): introspection of the refresh token (RFC 7662), which is definitive, or only userinfo with the old
// access token, which says nothing once that token has expired. When introspection is there, it asks about a made-up
// token with Postern's own client credentials, as the keeper will, and expects {"active": false}: that proves the
// endpoint answers RFC 7662 and accepts the client. It changes nothing at the IdP.
func (d *run) probeOutcome(ctx context.Context) {
	const name = "outcome_probe"
	endpoint, from := d.cfg.OIDC.IntrospectionURL, "oidc.introspection_url"
	if endpoint == "" {
		endpoint, from = d.disc.IntrospectionEndpoint, "discovery"
	}
	if endpoint == "" {
		d.warn(name, "no introspection_endpoint: after a refresh whose answer was lost, Postern can only probe userinfo "+
			"with the old access token, which says nothing once that token has expired; then it must retry, and if the "+
			"lost refresh had committed, the identity provider revokes the grant and the user has to sign in again",
			"Authelia 4.39 advertises /api/oidc/introspection: check that oidc.issuer points at Authelia. For a provider "+
				"that serves introspection without advertising it (Ory Hydra: on its admin port), set\n"+
				"  oidc:\n    introspection_url: http://127.0.0.1:4445/admin/oauth2/introspect")
		return
	}
	if r := d.last("client_auth"); r != nil && r.Status == Fail {
		d.skip(name, "client authentication failed; introspection uses the same credentials")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	p, err := auth.New(ctx, auth.Config{Issuer: d.cfg.OIDC.Issuer, ClientID: d.cfg.OIDC.ClientID,
		ClientSecret: d.cfg.OIDC.ClientSecret, RedirectURL: d.redirectURL(), Scopes: d.cfg.OIDC.Scopes,
		IntrospectionURL: d.cfg.OIDC.IntrospectionURL}, d.hc)
	if err != nil {
		// Every reason for it (issuer, userinfo_endpoint) is a check above.
		d.skip(name, "Postern cannot use this provider yet: "+err.Error())
		return
	}
	active, err := p.Introspect(ctx, "postern-doctor-"+rand.Text(), "refresh_token")
	switch {
	case err == nil && !active:
		d.pass(name, "introspection at %s (from %s) answers active: false for a made-up refresh token: after a lost "+
			"refresh answer, Postern asks it whether the refresh token was spent", endpoint, from)
	case err == nil:
		d.fail(name, fmt.Sprintf("%s (from %s) says a made-up token is active", endpoint, from),
			"This is not an RFC 7662 introspection endpoint Postern can trust: point oidc.introspection_url at the "+
				"provider's introspection endpoint, or remove it to use discovery's.")
	case errors.Is(err, auth.ErrTransient):
		d.fail(name, fmt.Sprintf("%s (from %s): %v", endpoint, from, err),
			"Postern must reach the introspection endpoint as it reaches the token endpoint. With oidc.introspection_url, "+
				"check host, port and that the admin listener is reachable from Postern.")
	default:
		d.fail(name, fmt.Sprintf("%s (from %s): %v", endpoint, from, err),
			"Authelia 4.39 accepts the client's own client_secret_basic credentials at /api/oidc/introspection. "+
				"With oidc.introspection_url, check that it names the provider's RFC 7662 endpoint (Hydra: "+
				"/admin/oauth2/introspect on the admin port).")
	}
}

// discover fetches <issuer>/.well-known/openid-configuration (OpenID Connect Discovery 1.0 §4.1).
func (d *run) discover(ctx context.Context) {
	const name = "discovery"
	issuer := d.cfg.OIDC.Issuer
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		d.fail(name, fmt.Sprintf("oidc.issuer %q is not an absolute http(s) URL", issuer),
			"Set oidc.issuer to Authelia's public URL, for example:\n  oidc:\n    issuer: https://auth.example.com")
		return
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		d.fail(name, fmt.Sprintf("oidc.issuer %q uses plain http to a host that is not loopback", issuer),
			"Use Authelia's public https URL in oidc.issuer: tokens and the client secret must not cross the network in clear text.")
		return
	}
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		d.fail(name, err.Error(), "Fix oidc.issuer.")
		return
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := d.hc.Do(req)
	if err != nil {
		detail, fix := explainConnErr(err, endpointKeys{host: "oidc.issuer", ca: "oidc.ca_file", what: "Authelia"}, u.Hostname())
		d.fail(name, "GET "+wellKnown+": "+detail, fix)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	elapsed := time.Since(start).Round(time.Millisecond)
	switch {
	case err != nil:
		d.fail(name, "GET "+wellKnown+": reading the response: "+err.Error(), "Check the reverse proxy in front of Authelia.")
		return
	case resp.StatusCode == http.StatusNotFound:
		d.fail(name, "GET "+wellKnown+": HTTP 404",
			"oidc.issuer must be Authelia's root URL (https://auth.example.com), without /api/oidc or any other path; "+
				"and identity_providers.oidc must be configured in Authelia.")
		return
	case resp.StatusCode != http.StatusOK:
		d.fail(name, fmt.Sprintf("GET %s: HTTP %d", wellKnown, resp.StatusCode),
			"Authelia (or the reverse proxy in front of it) is not serving requests: check that it runs and that the proxy routes "+
				u.Host+" to it.")
		return
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" && !json.Valid(body) {
		d.fail(name, fmt.Sprintf("GET %s: HTTP 200 but %q, not JSON", wellKnown, mt),
			"Something other than Authelia answers at oidc.issuer (a login page of the proxy?): point oidc.issuer at Authelia's public URL "+
				"and exempt /.well-known/ and /api/oidc/ from any forward-auth rule in the proxy.")
		return
	}
	var disc discovery
	if err := json.Unmarshal(body, &disc); err != nil || disc.Issuer == "" {
		d.fail(name, "GET "+wellKnown+": the document has no issuer", "Point oidc.issuer at Authelia's public URL.")
		return
	}
	d.disc = &disc
	d.pass(name, "GET %s: HTTP 200 in %s", wellKnown, elapsed)
}

// checkIssuer compares the discovered issuer with oidc.issuer byte for byte, as OpenID Connect Discovery 1.0 §4.3
// and Core §3.1.3.7 (ID token iss) require.
func (d *run) checkIssuer() {
	const name = "issuer"
	got, want := d.disc.Issuer, d.cfg.OIDC.Issuer
	if got == want {
		d.pass(name, "%q, as configured", got)
		return
	}
	why := issuerDifference(want, got)
	detail := fmt.Sprintf("Authelia says %q, oidc.issuer is %q: %s", got, want, why.what)
	d.fail(name, detail, why.fix)
}

type difference struct{ what, fix string }

// issuerDifference explains how two issuer URLs differ and what to change. Authelia derives its issuer from each
// request (scheme from X-Forwarded-Proto, host from X-Forwarded-Host or Host), so a mismatch is usually the reverse
// proxy or an internal URL, not a typo.
func issuerDifference(configured, discovered string) difference {
	setIt := fmt.Sprintf("In Postern's config:\n  oidc:\n    issuer: %s", discovered)
	if strings.TrimRight(configured, "/") == strings.TrimRight(discovered, "/") {
		return difference{"they differ only in the trailing slash, and the comparison is byte for byte",
			"Remove (or add) the trailing slash so that it matches exactly. " + setIt}
	}
	if strings.EqualFold(configured, discovered) {
		return difference{"they differ only in letter case, and the comparison is byte for byte", setIt}
	}
	cu, err1 := url.Parse(configured)
	du, err2 := url.Parse(discovered)
	if err1 != nil || err2 != nil {
		return difference{"they differ", setIt}
	}
	public := "Use one public issuer URL everywhere: Postern's oidc.issuer, Stalwart's directory (endpoint.url / issuerUrl) and " +
		"the browser all must see the same https://auth.example.com. Since Authelia 4.39.20 a token used at a different issuer " +
		"URL than it was issued at is refused."
	switch {
	case cu.Scheme != du.Scheme:
		return difference{fmt.Sprintf("the scheme differs (%s vs %s)", du.Scheme, cu.Scheme),
			"Authelia takes the scheme from X-Forwarded-Proto. Make the reverse proxy send X-Forwarded-Proto: https " +
				"(and make Authelia trust the proxy: server.endpoints / trusted proxies), then keep oidc.issuer at the https URL. " +
				"If Postern reaches Authelia directly over http, go through the proxy instead.\n" + public}
	case !strings.EqualFold(cu.Host, du.Host):
		return difference{fmt.Sprintf("the host differs (%s vs %s)", du.Host, cu.Host),
			"Authelia takes the host from X-Forwarded-Host or Host. If " + du.Host + " is an internal name (for example " +
				"http://authelia:9091), Postern reached Authelia around the reverse proxy: set oidc.issuer to the public URL and " +
				"let Postern resolve that name to the proxy (a DNS entry, or extra_hosts in compose). If the proxy rewrites Host, " +
				"make it pass the original Host header.\n" + public}
	case cu.Path != du.Path:
		return difference{fmt.Sprintf("the path differs (%q vs %q)", du.Path, cu.Path),
			"Authelia's issuer has a path only when Authelia is served under one (server.address with a path). " + setIt}
	}
	return difference{"they differ", setIt}
}

// checkEndpoints requires the endpoints Postern calls.
func (d *run) checkEndpoints() {
	const name = "endpoints"
	var missing []string
	for _, e := range []struct{ name, v string }{
		{"authorization_endpoint", d.disc.AuthorizationEndpoint},
		{"token_endpoint", d.disc.TokenEndpoint},
		{"userinfo_endpoint", d.disc.UserinfoEndpoint},
		{"jwks_uri", d.disc.JWKSURI},
		{"revocation_endpoint", d.disc.RevocationEndpoint},
	} {
		if e.v == "" {
			missing = append(missing, e.name)
		}
	}
	if len(missing) > 0 {
		d.fail(name, "the discovery document lacks "+strings.Join(missing, ", "),
			"Authelia 4.39 publishes all of them: make sure oidc.issuer points at Authelia. Without userinfo there is no "+
				"identity to sign in with; without revocation, sign-out cannot end the grant.")
		return
	}
	var elsewhere []string
	origin := originOf(d.disc.Issuer)
	for _, e := range []string{d.disc.AuthorizationEndpoint, d.disc.TokenEndpoint, d.disc.UserinfoEndpoint, d.disc.RevocationEndpoint} {
		if originOf(e) != origin {
			elsewhere = append(elsewhere, e)
		}
	}
	if len(elsewhere) > 0 {
		d.warn(name, "endpoints outside the issuer's origin: "+strings.Join(elsewhere, ", "),
			"Authelia serves every endpoint under its issuer; endpoints elsewhere mean the proxy rewrites URLs. Use one public URL.")
		return
	}
	d.pass(name, "authorization, token, userinfo, revocation and jwks_uri under %s", origin)
}

func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

// checkPKCE: Postern always sends an S256 challenge (RFC 7636 §4.2).
func (d *run) checkPKCE() {
	const name = "pkce"
	if slices.Contains(d.disc.CodeChallengeMethodsSupported, "S256") {
		d.pass(name, "code_challenge_methods_supported lists S256")
		return
	}
	d.fail(name, fmt.Sprintf("code_challenge_methods_supported is %q, without S256", d.disc.CodeChallengeMethodsSupported),
		"Postern always uses PKCE with S256 (RFC 7636). Use Authelia 4.38 or later, and in Postern's client keep:\n"+
			"  require_pkce: true\n  pkce_challenge_method: 'S256'")
}

// checkIssParameter: RFC 9207 lets Postern check which IdP a callback comes from.
func (d *run) checkIssParameter() {
	const name = "iss_parameter"
	if d.disc.IssParameterSupported {
		d.pass(name, "authorization_response_iss_parameter_supported is true (RFC 9207): callbacks are checked for mix-up")
		return
	}
	d.warn(name, "authorization_response_iss_parameter_supported is not set: callbacks cannot be checked for mix-up attacks (RFC 9207)",
		"Authelia 4.38 and later advertise it; upgrade Authelia. Sign-in still works.")
}

// checkOfflineAccess: without offline_access there is no refresh token, and mail stops after the first access token
// (1 h) expires.
func (d *run) checkOfflineAccess() {
	const name = "offline_access"
	if !slices.Contains(d.disc.ScopesSupported, "offline_access") {
		d.fail(name, fmt.Sprintf("scopes_supported %q lacks offline_access", d.disc.ScopesSupported),
			"Postern needs refresh tokens, which Authelia issues only for the offline_access scope. Authelia 4.39 lists it "+
				"in scopes_supported; if this identity provider does not, it cannot keep mail working past one access token "+
				"(1 h). Check that oidc.issuer points at Authelia.")
		return
	}
	if len(d.disc.GrantTypesSupported) > 0 && !slices.Contains(d.disc.GrantTypesSupported, "refresh_token") {
		d.fail(name, fmt.Sprintf("grant_types_supported %q lacks refresh_token", d.disc.GrantTypesSupported),
			"Postern refreshes its tokens with the refresh_token grant; use Authelia 4.39 or later.")
		return
	}
	if !slices.Contains(d.cfg.OIDC.Scopes, "offline_access") {
		d.fail(name, "oidc.scopes does not request offline_access",
			"In Postern's config:\n  oidc:\n    scopes: [openid, profile, email, offline_access]")
		return
	}
	d.pass(name, "scopes_supported lists offline_access and oidc.scopes requests it")
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// oauthError is an RFC 6749 §5.2 error body.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func parseOAuthError(body []byte) oauthError {
	var e oauthError
	_ = json.Unmarshal(body, &e)
	e.Description = printable(e.Description, 400)
	e.Code = printable(e.Code, 64)
	return e
}

// printable keeps printable ASCII of s, at most n bytes: IdP text comes from the network.
func printable(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			b.WriteString("…")
			break
		}
		if r >= 0x20 && r <= 0x7e {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// last returns the result of check name, or nil when it has not run.
func (d *run) last(name string) *Result {
	for i := len(d.results) - 1; i >= 0; i-- {
		if d.results[i].Name == name {
			return &d.results[i]
		}
	}
	return nil
}
