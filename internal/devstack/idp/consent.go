package idp

import (
	"slices"
	"strings"

	"github.com/ory/fosite"
)

// consentKey names what a user consented to: a client, the scopes and the audience, as sorted lists. A request for
// more (or other) scopes or audiences is a new question and shows the consent page again.
type consentKey struct {
	username, client, scopes, audience string
}

func consentKeyOf(username string, ar fosite.AuthorizeRequester) consentKey {
	sorted := func(in []string) string {
		out := slices.Clone(in)
		slices.Sort(out)
		return strings.Join(slices.Compact(out), " ")
	}
	return consentKey{
		username: username,
		client:   clientIDOf(ar),
		scopes:   sorted(ar.GetRequestedScopes()),
		audience: sorted(ar.GetRequestedAudience()),
	}
}

// consentRememberedLocked reports whether username consented to exactly this request before (Options.RememberConsent)
// and the request does not insist on asking again: prompt=consent (OIDC Core §3.1.2.1) always shows the page, which
// is how a client such as Postern's device flow gets a consent of its own.
func (p *IdP) consentRememberedLocked(username string, ar fosite.AuthorizeRequester) bool {
	if p.consents == nil || slices.Contains(strings.Fields(ar.GetRequestForm().Get("prompt")), "consent") {
		return false
	}
	return p.consents[consentKeyOf(username, ar)]
}

// rememberConsentLocked records an accepted consent, when consents are remembered.
func (p *IdP) rememberConsentLocked(username string, ar fosite.AuthorizeRequester) {
	if p.consents != nil {
		p.consents[consentKeyOf(username, ar)] = true
	}
}
