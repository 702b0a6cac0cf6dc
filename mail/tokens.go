package mail

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// TokenSource gives the credentials of one grant (one sign-in of one user). mail knows nothing about OAuth: the
// caller's source asks its token keeper. Implementations must be safe for concurrent use (Pool.Watch calls Token
// from its own goroutine to reconnect).
type TokenSource interface {
	// Token returns the current credentials. An error wrapping ErrNoCredentials says there will be none any more
	// (the user signed out or must sign in again).
	Token(ctx context.Context) (Credentials, error)
	// Replace returns the credentials that replace rejected, which the mail server refused: the source renews the
	// token if rejected is still its current one.
	Replace(ctx context.Context, rejected Credentials) (Credentials, error)
}

// WithToken runs fn with the credentials of ts and, if the mail server refused them (an error wrapping
// ErrAuthFailed), with their replacement. A refused token is normal: the identity provider revokes every older
// access token when it refreshes (Authelia), so a connection or a submission can present one that was current a
// moment ago.
//
// A refused replacement gets one more chance, and only if ts then hands a different token: the replacement was read
// from the store while another instance's refresh was in flight, and the IdP revoked it before that refresh stored
// its successor (measured: about 1 view in 5,000 with two instances rotating each grant about once a second). Asked
// to replace a token that is still its current one, the keeper checks it at userinfo first and ends the retries if
// the IdP still accepts it, so a mail server that refuses every token costs at most two refusals and one userinfo
// call, never a loop. More would cost the account its standing with the server: Stalwart disconnects after 3 refused
// AUTHENTICATEs on a connection and (0.16) bans an address after 100 a day.
//
// Every call asks ts for the token first, even when fn will run on an already authenticated connection: that is
// how the token keeper learns the grant is in use, and how a grant that ended stops serving mail at once.
//
// fn must not have done anything irreversible when it returns ErrAuthFailed; Pool.Do, Pool.Watch and Send all
// fail before any command that changes state. If a replacement cannot be had, the error is the replacement's
// (e.g. the grant needs a new sign-in, or the identity provider is down), which says more than the refusal.
func WithToken(ctx context.Context, ts TokenSource, fn func(Credentials) error) error {
	c, err := ts.Token(ctx)
	if err != nil {
		return fmt.Errorf("mail: credentials: %w", err)
	}
	err = fn(c)
	for replaced := 0; errors.Is(err, ErrAuthFailed) && replaced < maxReplacements; replaced++ {
		next, rerr := ts.Replace(ctx, c)
		if rerr != nil {
			return fmt.Errorf("mail: replacing a refused token: %w", rerr)
		}
		if next.Token == c.Token {
			// The replacement was refused and nothing newer can be had: the refusal is the answer.
			return err
		}
		c = next
		err = fn(c)
	}
	return err
}

// maxReplacements bounds the logins after a refusal (see WithToken).
const maxReplacements = 2

// userKey is the unit the pool's per-user caps count: the account at the mail server, which is also what the mail
// server limits (Stalwart: 16 concurrent IMAP sessions per account). Every grant of one user presents the same
// address, so many sign-ins share one cap.
func (c Credentials) userKey() string { return strings.ToLower(strings.TrimSpace(c.Address)) }
