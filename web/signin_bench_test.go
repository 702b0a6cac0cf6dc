package web

import (
	"net/http"
	"testing"
)

// BenchmarkSignIn is one whole browser sign-in against the dev IdP, as scripts/bench's "sign-in to first inbox page"
// does it against Hydra: /login, the IdP's login and consent, the callback (code exchange, ID-token verification,
// userinfo, the grant and the session written), then the first page of the 10,000-message folder on the new grant's
// own IMAP connection. Every iteration is a new browser. With -cpuprofile it shows what Postern's own part of a
// sign-in costs next to the IdP's and the mail server's (the dev peers run in this process too).
func BenchmarkSignIn(b *testing.B) {
	s, _ := benchStack(b)
	for b.Loop() {
		br := newBrowser(b)
		if r := s.signIn(br, "alice", "/mail/Big"); r.status != http.StatusSeeOther {
			b.Fatalf("callback = %d, want 303", r.status)
		}
		if r := br.get(s.ts.URL + "/mail/Big"); r.status != http.StatusOK {
			b.Fatalf("GET /mail/Big = %d", r.status)
		}
	}
}
