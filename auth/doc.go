// Package auth is Postern's OpenID Connect relying party and token keeper.
//
// The provider side (Provider) talks to the identity provider: discovery,
// the authorization code flow with PKCE (Begin, Finish), refresh, userinfo and
// revocation. The keeper side (Keeper) owns the token lifecycle of every grant.
// Postern is registered as a confidential client using client_secret_basic
// with PKCE S256 required, which is how Authelia 4.39 is configured for it.
//
// # The lifecycle of a grant
//
// A grant is one user's tokens at the IdP. Its State moves only by a Reason,
// and each Reason leads to exactly one State (lifecycle.go; lifecycle_test.go
// lists every pair):
//
//	          signed_in
//	(deleted) ─────────► ok ◄──────────────── ok ──────────────┐
//	                     │                                     │
//	                     │ unavailable, timeout, rejected,     │
//	                     │ outcome_unknown, unsaved_rotation   │
//	                     ▼                                     │
//	                  degraded ── (the same, backing off) ─────┤
//	                     │                                     │
//	   ok, degraded ─────┴─ invalid_grant, refresh_lost, ──► needs_sign_in
//	                        refresh_spent, no_refresh_token        │
//	                                                               │ abandoned
//	   ok, degraded ── session_ended ──► (deleted) ◄───────────────┘
//	   any state ───── signed_out ─────► (deleted)
//
// What a state keeps and schedules: ok keeps the newest tokens and is next
// refreshed by the time policy; degraded keeps every token and retries after
// an exponential backoff (5 s to 1 min); needs_sign_in drops the tokens (they
// are dead at the IdP) and is never refreshed; deleted is the absence of the
// grant (the refresh token is revoked first on signed_out and session_ended).
//
// # Device grants
//
// A grant has a kind, fixed at creation and stored with it: web (Start, a
// browser session's) or device (StartDevice, one mail client's, begun with
// BeginDevice's prompt=consent so each device holds its own refresh-token
// family). Both kinds move through the same lifecycle and are refreshed by the
// same path and scheduler; only policy.end differs: a device grant has no idle
// timeout and ends DeviceLifetime after creation (default a year), or earlier
// by SignOut on it (revoking the device) or at the IdP. The browser's sign-out
// and session policy never reach it.
//
// # When refreshes happen (policy.go)
//
// An idle grant is refreshed at 0.75–0.8 of the sliding refresh-token
// lifetime: at Authelia's 90 minutes, 0.8 token calls per user-hour. A grant
// with a page view in the last ActiveWindow is refreshed max(RefreshBeforeExpiry,
// TokenCallTimeout) (+ up to 20%) before its access token expires, but never
// earlier than half its life: with Authelia's one-hour access tokens about one
// call per 55 minutes (1.1 per active user-hour); with 30 s access tokens one
// call per ~15 s (240 per active user-hour). Refreshing that early gives a slow
// IdP the whole TokenCallTimeout to answer before the access token runs out.
//
// # The refresh path (refresh.go)
//
// Authelia's refresh tokens are single-use: a refresh revokes every older
// token of the grant, and presenting a spent refresh token revokes the whole
// grant (docs/protocol-notes.md B.1). So every refresh goes through one path
// that is serialised per grant within the process and by a store lease across
// processes, commits the rotated tokens before anyone uses them, waits for the
// token endpoint's answer for as long as TokenCallTimeout (default 2 minutes:
// an IdP that is slow, not dead, commits the rotation later and an abandoned
// call loses its answer), and never re-sends a refresh token whose previous use
// had an unknown outcome without a probe first. The probe introspects the
// refresh token (RFC 7662) where the IdP offers it: active means the refresh did
// not commit and retrying is safe; inactive means it committed and the answer
// was lost, so the grant needs a sign-in (refresh_spent), never a retry. Without
// introspection it asks userinfo about the old access token.
//
// Page views never wait for a refresh while their access token is still
// usable: they start it and go on with the current token. Without a usable
// token they wait a quarter of LeaseTTL, then get ErrTransient (web shows a
// "try again" page) while the refresh goes on.
//
// Two facts can live in memory when the store refuses a write (memo.go):
// a rotation the store did not take, and an unknown outcome whose marker the
// store did not take.
package auth
