package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/oauth2"
)

// probeAuthorization sends the authorization request Postern sends at sign-in (RFC 6749 §4.1.1 with PKCE and the
// configured scopes) and does not follow the answer. A client registration that is wrong in client_id,
// redirect_uris, scopes or grant types is refused right here, before any user logs in; a good one is sent on to the
// IdP's login page. The flow is never completed.
func (d *run) probeAuthorization(ctx context.Context) {
	const name = "authorization"
	verifier := oauth2.GenerateVerifier()
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {d.cfg.OIDC.ClientID},
		"redirect_uri":          {d.redirectURL()},
		"scope":                 {strings.Join(d.cfg.OIDC.Scopes, " ")},
		"state":                 {oauth2.GenerateVerifier()},
		"nonce":                 {oauth2.GenerateVerifier()},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
	}
	u, err := url.Parse(d.disc.AuthorizationEndpoint)
	if err != nil {
		d.fail(name, "authorization_endpoint is not a URL", "Check that oidc.issuer points at Authelia.")
		return
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		d.fail(name, err.Error(), "Check that oidc.issuer points at Authelia.")
		return
	}
	hc := *d.hc
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc.Jar = nil
	resp, err := hc.Do(req)
	if err != nil {
		detail, fix := explainConnErr(err, endpointKeys{host: "oidc.issuer", ca: "oidc.ca_file", what: "Authelia"}, u.Hostname())
		d.fail(name, "GET authorization_endpoint: "+detail, fix)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))

	var e oauthError
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		loc, err := resp.Location()
		if err != nil {
			d.fail(name, fmt.Sprintf("HTTP %d without a Location", resp.StatusCode), "Check the reverse proxy in front of Authelia.")
			return
		}
		lq := loc.Query()
		if lq.Get("error") == "" {
			d.clientKnown = true
			d.pass(name, "client %q, redirect_uri %s and scopes %q accepted; the IdP sent the browser on to sign in",
				d.cfg.OIDC.ClientID, d.redirectURL(), strings.Join(d.cfg.OIDC.Scopes, " "))
			return
		}
		e = oauthError{Code: printable(lq.Get("error"), 64), Description: printable(lq.Get("error_description"), 400)}
	} else if resp.StatusCode == http.StatusOK {
		// Some providers render the login page at the endpoint itself.
		d.clientKnown = true
		d.pass(name, "client %q, redirect_uri %s and scopes %q accepted", d.cfg.OIDC.ClientID, d.redirectURL(), strings.Join(d.cfg.OIDC.Scopes, " "))
		return
	} else {
		e = parseOAuthError(body)
		if e.Code == "" {
			e.Code = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
	}
	d.authorizationError(name, e)
}

// authorizationError turns a refused authorization request (RFC 6749 §4.1.2.1) into the line of Authelia's client
// to fix.
func (d *run) authorizationError(name string, e oauthError) {
	detail := "the IdP refused the authorization request: " + e.Code
	if e.Description != "" {
		detail += ": " + e.Description
	}
	client := fmt.Sprintf("In Authelia's client '%s' (identity_providers.oidc.clients)", d.cfg.OIDC.ClientID)
	desc := strings.ToLower(e.Description)
	switch {
	case e.Code == "invalid_scope":
		d.fail(name, detail, client+", allow every scope Postern requests ("+strings.Join(d.cfg.OIDC.Scopes, " ")+
			"); offline_access is what makes Authelia issue refresh tokens:\n"+
			"  scopes: ['openid', 'offline_access', 'profile', 'email']\n"+
			"  grant_types: ['authorization_code', 'refresh_token']")
	case e.Code == "unauthorized_client" || e.Code == "unsupported_response_type":
		d.fail(name, detail, client+", allow the authorization code flow and refresh tokens:\n"+
			"  grant_types: ['authorization_code', 'refresh_token']\n  response_types: ['code']")
	case strings.Contains(desc, "redirect"):
		d.fail(name, detail, client+", register Postern's callback exactly (server.public_url + /callback):\n"+
			"  redirect_uris:\n    - '"+d.redirectURL()+"'\n"+
			"If users reach Postern at another URL, fix server.public_url instead.")
	case e.Code == "invalid_client" || strings.Contains(desc, "client"):
		d.clientUnknown = true
		d.fail(name, detail, fmt.Sprintf("oidc.client_id is %q: it must equal the client_id of Postern's client in Authelia. "+
			"The client block that works:\n%s", d.cfg.OIDC.ClientID, indent(d.autheliaClient(), 2)))
	case strings.Contains(desc, "pkce") || strings.Contains(desc, "code_challenge"):
		d.fail(name, detail, client+", require PKCE with S256:\n  require_pkce: true\n  pkce_challenge_method: 'S256'")
	default:
		d.fail(name, detail, "Compare Authelia's client with the block that works:\n"+indent(d.autheliaClient(), 2))
	}
}

// probeCode is the made-up authorization code of the client authentication probe.
const probeCode = "postern-doctor-probe"

// probeClientAuth posts grant_type=authorization_code with a code that does not exist, authenticating exactly as
// Postern does (client_secret_basic, RFC 6749 §2.3.1, with both halves form-encoded). The IdP authenticates the client
// before it looks at the code (RFC 6749 §5.2), so invalid_grant proves the client id, secret and method are right,
// and invalid_client says which of them is wrong. No code exists, so nothing is issued.
func (d *run) probeClientAuth(ctx context.Context) {
	const name = "client_auth"
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {probeCode},
		"redirect_uri":  {d.redirectURL()},
		"code_verifier": {oauth2.GenerateVerifier()},
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.disc.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		d.fail(name, "token_endpoint is not a URL", "Check that oidc.issuer points at Authelia.")
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(d.cfg.OIDC.ClientID), url.QueryEscape(d.cfg.OIDC.ClientSecret))
	resp, err := d.hc.Do(req)
	if err != nil {
		detail, fix := explainConnErr(err, endpointKeys{host: "oidc.issuer", ca: "oidc.ca_file", what: "Authelia"}, req.URL.Hostname())
		d.fail(name, "POST token_endpoint: "+detail, fix)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	var raw oauthError
	_ = json.Unmarshal(body, &raw)
	e := parseOAuthError(body)
	detail := fmt.Sprintf("POST token_endpoint with a made-up code: HTTP %d %s", resp.StatusCode, e.Code)
	if e.Description != "" && e.Code != "invalid_client" {
		detail += ": " + e.Description
	}
	client := fmt.Sprintf("In Authelia's client '%s' (identity_providers.oidc.clients)", d.cfg.OIDC.ClientID)
	desc := strings.ToLower(raw.Description)
	secretFix := "Authelia's client_secret must be the digest of the plaintext in Postern's oidc.client_secret (or oidc.client_secret_file). " +
		"Make a new pair with:\n" +
		"  authelia crypto hash generate pbkdf2 --variant sha512 --random --random.length 72 --random.charset rfc3986\n" +
		"put the 'Random Password' in Postern's oidc.client_secret_file and the 'Digest' in Authelia's client:\n" +
		"  client_secret: '$pbkdf2-sha512$310000$…'\n" +
		"then restart Authelia. (Postern strips trailing newlines from a secret file, nothing else.)"
	switch {
	case e.Code == "invalid_grant":
		d.pass(name, "client %q authenticated with client_secret_basic (the made-up code was refused with invalid_grant, as it should be)",
			d.cfg.OIDC.ClientID)
	case e.Code == "invalid_client" && strings.Contains(desc, "token_endpoint_auth_method"):
		method := "another method"
		if m := registeredMethod.FindStringSubmatch(raw.Description); m != nil {
			method = "'" + m[1] + "'"
		}
		d.fail(name, "wrong client authentication method: Authelia's client is registered for "+method+
			", Postern sends client_secret_basic ("+detail+")",
			client+", set:\n  token_endpoint_auth_method: 'client_secret_basic'\n"+
				"Postern always sends its credentials in the Authorization header (RFC 6749 §2.3.1); "+
				"x/oauth2's auto-detection would retry with the secret, and a refresh token, in the body.")
	case e.Code == "invalid_client" && (d.clientUnknown || strings.Contains(desc, "does not exist") || strings.Contains(desc, "not found")):
		d.fail(name, fmt.Sprintf("unknown client %q (%s)", d.cfg.OIDC.ClientID, detail),
			fmt.Sprintf("oidc.client_id is %q: set it to the client_id of Postern's client in Authelia, or add the client:\n%s",
				d.cfg.OIDC.ClientID, indent(d.autheliaClient(), 2)))
	case e.Code == "invalid_client" && d.clientKnown:
		// The authorization request found the client, so the secret is what is wrong.
		d.fail(name, "wrong client secret ("+detail+")", secretFix)
	case e.Code == "invalid_client":
		d.fail(name, "wrong client secret or client_id ("+detail+")",
			fmt.Sprintf("Check that oidc.client_id (%q) is the client_id of Postern's client in Authelia. ", d.cfg.OIDC.ClientID)+secretFix)
	case e.Code == "unauthorized_client":
		d.fail(name, detail, client+", allow the grants Postern uses:\n  grant_types: ['authorization_code', 'refresh_token']")
	case resp.StatusCode >= 500:
		d.fail(name, detail, "Authelia (or the proxy in front of it) failed; check its log.")
	default:
		d.fail(name, detail, "An unexpected answer to a token request with a made-up code (expected invalid_grant). "+
			"Compare Authelia's client with the block that works:\n"+indent(d.autheliaClient(), 2))
	}
}

// registeredMethod finds the method Authelia names in its invalid_client description: "… is configured to only
// support 'token_endpoint_auth_method' method 'client_secret_post'" (authelia/oauth2-provider), or fosite's "The
// OAuth 2.0 Client supports client authentication method 'client_secret_post', but method … was requested".
var registeredMethod = regexp.MustCompile(`(?:only support 'token_endpoint_auth_method' method|supports client authentication method) '([a-z_]+)'`)
