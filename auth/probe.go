package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Probes: requests that change nothing at the identity provider and tell
// Postern something about its state. Introspect settles the outcome of a
// refresh whose answer was lost; ProbeDiscovery tells /readyz and the doctor
// whether the provider serves at all.

// CanIntrospect reports whether Introspect can be used: the discovery document
// advertises an introspection_endpoint (RFC 8414 §2) or Config.IntrospectionURL
// names one. Without it, the only probe after an unknown refresh outcome is
// UserInfo with the old access token, which says nothing once that token has
// expired.
func (p *Provider) CanIntrospect() bool { return p.meta.IntrospectionEndpoint != "" }

// IntrospectionEndpoint returns the URL Introspect posts to, or "" when the
// provider offers none.
func (p *Provider) IntrospectionEndpoint() string { return p.meta.IntrospectionEndpoint }

// introspectionResponse is the RFC 7662 §2.2 answer; only "active" is
// required and only it is used.
type introspectionResponse struct {
	Active *bool `json:"active"`
}

// Introspect asks the provider whether token is active (RFC 7662 §2.1),
// authenticating with client_secret_basic as at the token endpoint. hint is
// "refresh_token", "access_token" or empty (RFC 7662 §2.1 token_type_hint).
//
// It is the definitive probe after a refresh with an unknown outcome
// (ErrOutcomeUnknown): the refresh token Postern still holds is active when
// the refresh did not commit, so retrying is safe, and inactive when it did
// (Authelia 4.39 deactivates a refresh token when it rotates it, and
// introspecting the spent token does not revoke the grant, unlike presenting it
// at the token endpoint).
//
// Introspection changes nothing, so every failure to get an answer — the
// provider unreachable, a timeout, 5xx or 429 — wraps ErrTransient: asking
// again later is safe. Any other refusal (401 invalid_client, a 200 that is
// not an RFC 7662 answer) wraps ErrRejected: that is configuration. Without an
// endpoint it returns ErrIntrospectionUnsupported. The token is never part of
// an error.
func (p *Provider) Introspect(ctx context.Context, token, hint string) (active bool, err error) {
	if p.meta.IntrospectionEndpoint == "" {
		return false, ErrIntrospectionUnsupported
	}
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	req, err := p.formRequest(ctx, p.meta.IntrospectionEndpoint, form)
	if err != nil {
		return false, fmt.Errorf("auth: introspect: %w", err)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		// *url.Error names the URL and the cause, never the form body.
		return false, fmt.Errorf("auth: introspect: %w: %w", ErrTransient, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests:
		return false, fmt.Errorf("auth: introspect: %w (HTTP %d)", ErrTransient, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Errorf("auth: introspect: %w (HTTP %d, %s)", ErrRejected, resp.StatusCode, parseError(body))
	case err != nil:
		return false, fmt.Errorf("auth: introspect: %w: reading response: %w", ErrTransient, err)
	}
	var ir introspectionResponse
	if err := json.Unmarshal(body, &ir); err != nil || ir.Active == nil {
		// A login page of a proxy, or another service at the configured URL.
		return false, fmt.Errorf("auth: introspect: %w: HTTP 200 without an RFC 7662 \"active\" member", ErrRejected)
	}
	return *ir.Active, nil
}

// Probe fetches the provider's discovery document through the Provider's
// client, bounded by Config.Timeout; see ProbeDiscovery.
func (p *Provider) Probe(ctx context.Context) error {
	return ProbeDiscovery(ctx, p.hc, p.cfg.Issuer)
}

// ProbeDiscovery fetches issuer's discovery document (OpenID Connect
// Discovery 1.0 §4) through hc and requires HTTP 200 and a JSON document
// naming issuer byte for byte (§4.3). It answers whether the provider serves
// requests right now; readiness probes use it. Errors name the URL and the
// status, never a secret.
func ProbeDiscovery(ctx context.Context, hc *http.Client, issuer string) error {
	if hc == nil {
		hc = http.DefaultClient
	}
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return fmt.Errorf("auth: discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("auth: discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("auth: discovery: GET %s: HTTP %d", wellKnown, resp.StatusCode)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&doc); err != nil {
		return fmt.Errorf("auth: discovery: GET %s: %w", wellKnown, err)
	}
	if doc.Issuer != issuer {
		return fmt.Errorf("auth: discovery: %s names issuer %q, not %q", wellKnown, doc.Issuer, issuer)
	}
	return nil
}
