package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
)

// discovery is the subset of OIDC Discovery 1.0 / RFC 8414 metadata Authelia 4.39 publishes that matters here.
// There is deliberately no end_session_endpoint: Authelia 4.39 has no RP-initiated logout.
type discovery struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	UserinfoEndpoint                           string   `json:"userinfo_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ClaimsSupported                            []string `json:"claims_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	SubjectTypesSupported                      []string `json:"subject_types_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	IDTokenSigningAlgValuesSupported           []string `json:"id_token_signing_alg_values_supported"`
	UserinfoSigningAlgValuesSupported          []string `json:"userinfo_signing_alg_values_supported"`
	PromptValuesSupported                      []string `json:"prompt_values_supported"`
	ClaimsParameterSupported                   bool     `json:"claims_parameter_supported"`
	RequestParameterSupported                  bool     `json:"request_parameter_supported"`
	RequestURIParameterSupported               bool     `json:"request_uri_parameter_supported"`
	RequireRequestURIRegistration              bool     `json:"require_request_uri_registration"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

func (p *IdP) discoveryDoc() discovery {
	i := p.issuer
	return discovery{
		Issuer:                        i,
		AuthorizationEndpoint:         i + pathAuthorization,
		TokenEndpoint:                 i + pathToken,
		UserinfoEndpoint:              i + pathUserinfo,
		RevocationEndpoint:            i + pathRevocation,
		IntrospectionEndpoint:         i + pathIntrospection,
		JWKSURI:                       i + pathJWKS,
		ScopesSupported:               []string{"offline_access", "openid", "profile", "email", "address", "phone", "groups"},
		ClaimsSupported:               []string{"amr", "aud", "auth_time", "azp", "email", "email_verified", "exp", "iat", "iss", "jti", "name", "nonce", "preferred_username", "rat", "sub"},
		ResponseTypesSupported:        []string{"code"},
		ResponseModesSupported:        []string{"form_post", "query", "fragment"},
		GrantTypesSupported:           []string{"authorization_code", "refresh_token"},
		SubjectTypesSupported:         []string{"public"},
		CodeChallengeMethodsSupported: []string{"S256"},
		TokenEndpointAuthMethodsSupported: []string{
			"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none",
		},
		RevocationEndpointAuthMethodsSupported:     []string{"client_secret_basic", "client_secret_post"},
		IntrospectionEndpointAuthMethodsSupported:  []string{"client_secret_basic", "client_secret_post"},
		IDTokenSigningAlgValuesSupported:           []string{"RS256"},
		UserinfoSigningAlgValuesSupported:          []string{"none", "RS256"},
		PromptValuesSupported:                      []string{"none", "consent", "login"},
		RequireRequestURIRegistration:              false,
		AuthorizationResponseIssParameterSupported: true,
	}
}

func (p *IdP) handleDiscovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, p.discoveryDoc())
}

func (p *IdP) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: "RS256", Use: "sig",
	}}})
}

// handleToken is the token endpoint (RFC 6749 §3.2): authorization_code and refresh_token grants.
func (p *IdP) handleToken(w http.ResponseWriter, r *http.Request) {
	p.stats.token.Add(1)
	trace := &refreshTrace{}
	ctx := context.WithValue(r.Context(), refreshTraceKey{}, trace)
	_ = r.ParseForm()
	grant := r.PostForm.Get("grant_type")

	ar, err := p.oauth.NewAccessRequest(ctx, r, newEmptySession())
	var resp fosite.AccessResponder
	if err == nil {
		resp, err = p.oauth.NewAccessResponse(ctx, ar)
	}
	switch {
	case err != nil && grant == "refresh_token":
		p.stats.refreshFailures.Add(1)
		if trace.reuse {
			p.stats.reuses.Add(1)
			if trace.familyRevoked {
				p.stats.familyRevocations.Add(1)
			}
			p.log.Warn("idp: refresh token reuse, grant revoked", "client_id", clientIDOf(ar), "family_revoked", trace.familyRevoked)
		}
	case err == nil && grant == "refresh_token":
		p.stats.refreshes.Add(1)
	case err == nil && grant == "authorization_code":
		p.stats.codeExchanges.Add(1)
	}
	if err != nil {
		rfc := fosite.ErrorToRFC6749Error(err)
		p.log.Info("idp: token error", "grant_type", grant, "client_id", clientIDOf(ar), "error", rfc.ErrorField, "hint", rfc.HintField)
	} else {
		p.log.Info("idp: token issued", "grant_type", grant, "client_id", clientIDOf(ar))
	}

	if p.loseNext.CompareAndSwap(true, false) {
		// The grant is committed; only the answer is lost, as when a proxy times out.
		w.WriteHeader(http.StatusGatewayTimeout)
		return
	}
	if err != nil {
		p.oauth.WriteAccessError(ctx, w, ar, err)
		return
	}
	p.oauth.WriteAccessResponse(ctx, w, ar, resp)
}

// handleUserinfo is the OIDC Core §5.3 userinfo endpoint, answering as Authelia 4.39 does (protocol-notes B.2):
// claims by scope, reloaded from the user backend on each call, empty values omitted.
func (p *IdP) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	p.stats.userinfo.Add(1)
	token := fosite.AccessTokenFromRequest(r)
	if token == "" {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token is missing.")
		return
	}
	tu, ar, err := p.oauth.IntrospectToken(r.Context(), token, fosite.AccessToken, newEmptySession())
	if err != nil || tu != fosite.AccessToken {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token is malformed, expired or revoked.")
		return
	}
	if !ar.GetGrantedScopes().Has("openid") {
		bearerError(w, http.StatusForbidden, "insufficient_scope", "The access token was not granted the openid scope.")
		return
	}
	sess, ok := ar.GetSession().(*openid.DefaultSession)
	if !ok || sess.Claims == nil {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The access token has no OpenID Connect session.")
		return
	}
	u, ok := p.users[sess.Username]
	if !ok {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "The user of this access token no longer exists.")
		return
	}
	claims := map[string]any{"sub": sess.Subject}
	if !sess.Claims.RequestedAt.IsZero() {
		claims["rat"] = sess.Claims.RequestedAt.Unix()
	}
	scopes := ar.GetGrantedScopes()
	if scopes.Has("email") && u.Email != "" {
		claims["email"] = u.Email
		claims["email_verified"] = true
	}
	if scopes.Has("profile") {
		claims["preferred_username"] = u.Username
		if u.Name != "" {
			claims["name"] = u.Name
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, claims)
}

// bearerError answers like RFC 6750 §3.
func bearerError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error=%q,error_description=%q`, code, desc))
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// handleRevocation is the RFC 7009 endpoint. Authelia accepts any secret-based client authentication here, so a
// client_secret_post request is accepted too (protocol-notes B.2).
func (p *IdP) handleRevocation(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	postToBasic(r)
	err := p.oauth.NewRevocationRequest(ctx, r)
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		// fosite answers 200 for unauthorized_client; Authelia reports it, as RFC 7009 §2.2.1 allows.
		rfc := fosite.ErrorToRFC6749Error(err)
		p.log.Info("idp: revocation error", "error", rfc.ErrorField)
		writeJSON(w, rfc.CodeField, rfc)
		return
	}
	p.stats.revocations.Add(1)
	w.WriteHeader(http.StatusOK)
}

// handleIntrospection is the RFC 7662 endpoint; client authentication is required.
func (p *IdP) handleIntrospection(w http.ResponseWriter, r *http.Request) {
	p.stats.introspections.Add(1)
	ctx := r.Context()
	postToBasic(r)
	resp, err := p.oauth.NewIntrospectionRequest(ctx, r, newEmptySession())
	if err != nil {
		p.oauth.WriteIntrospectionError(ctx, w, err)
		return
	}
	writeIntrospection(w, resp)
}

// writeIntrospection writes the RFC 7662 §2.2 response. fosite's writer always reports the access token's expiry;
// Authelia reports the expiry of the token that was introspected, which matters for refresh tokens.
func writeIntrospection(w http.ResponseWriter, resp fosite.IntrospectionResponder) {
	w.Header().Set("Cache-Control", "no-store")
	if !resp.IsActive() {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	ar := resp.GetAccessRequester()
	sess := ar.GetSession()
	out := map[string]any{"active": true, "client_id": ar.GetClient().GetID()}
	kind := fosite.AccessToken
	if resp.GetTokenUse() == fosite.RefreshToken {
		kind = fosite.RefreshToken
	}
	if exp := sess.GetExpiresAt(kind); !exp.IsZero() {
		out["exp"] = exp.Unix()
	}
	if scopes := ar.GetGrantedScopes(); len(scopes) > 0 {
		out["scope"] = strings.Join(scopes, " ")
	}
	if at := ar.GetRequestedAt(); !at.IsZero() {
		out["iat"] = at.Unix()
	}
	if sub := sess.GetSubject(); sub != "" {
		out["sub"] = sub
	}
	if aud := ar.GetGrantedAudience(); len(aud) > 0 {
		out["aud"] = aud
	}
	if u := sess.GetUsername(); u != "" {
		out["username"] = u
	}
	if t := resp.GetAccessTokenType(); t != "" {
		out["token_type"] = t
	}
	writeJSON(w, http.StatusOK, out)
}

// postToBasic moves client_secret_post credentials into the Authorization header, form-urlencoded as RFC 6749
// §2.3.1 requires, because fosite authenticates clients at these endpoints with the token endpoint's method only.
func postToBasic(r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		return
	}
	if err := r.ParseForm(); err != nil {
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if id == "" || secret == "" {
		return
	}
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	r.PostForm.Del("client_id")
	r.PostForm.Del("client_secret")
	r.Form.Del("client_id")
	r.Form.Del("client_secret")
}

// revocationHandler revokes like Authelia (RevokeRefreshTokensExplicit): a refresh token takes the whole grant with
// it, an access token only the grant's access tokens. fosite's own handler always revokes both.
type revocationHandler struct {
	store    *store
	strategy oauth2.CoreStrategy
}

// RevokeToken implements fosite.RevocationHandler (RFC 7009 §2.1).
func (h *revocationHandler) RevokeToken(ctx context.Context, token string, hint fosite.TokenType, client fosite.Client) error {
	lookups := []func() (fosite.Requester, bool, error){
		func() (fosite.Requester, bool, error) {
			r, err := h.store.GetRefreshTokenSession(ctx, h.strategy.RefreshTokenSignature(ctx, token), nil)
			return r, true, err
		},
		func() (fosite.Requester, bool, error) {
			r, err := h.store.GetAccessTokenSession(ctx, h.strategy.AccessTokenSignature(ctx, token), nil)
			return r, false, err
		},
	}
	if hint == fosite.AccessToken {
		lookups[0], lookups[1] = lookups[1], lookups[0]
	}
	for _, lookup := range lookups {
		req, isRefresh, err := lookup()
		if errors.Is(err, fosite.ErrNotFound) || errors.Is(err, fosite.ErrInactiveToken) {
			continue // already dead: revocation has nothing to do (RFC 7009 §2.2)
		}
		if err != nil {
			return fosite.ErrTemporarilyUnavailable.WithWrap(err)
		}
		if req.GetClient().GetID() != client.GetID() {
			return fosite.ErrUnauthorizedClient.WithHint("The token was issued to another client.")
		}
		if isRefresh {
			_ = h.store.RevokeRefreshToken(ctx, req.GetID())
		}
		return h.store.RevokeAccessToken(ctx, req.GetID())
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
