package auth

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/postern/postern/internal/store"
)

// The time policy of the lifecycle: when a grant is refreshed, how long a
// failing one backs off, when its session ends. Everything here is a pure
// function of a grant, the options and the time; policy_test.go is its
// specification.

// Constants of the time policy.
const (
	backoffBase  = 5 * time.Second // first retry after a failure
	backoffMax   = time.Minute     // cap of the exponential backoff
	idleMargin   = 0.20            // idle grants refresh this fraction of the RT lifetime before it lapses…
	idleJitter   = 0.05            // …plus up to this fraction more, by jitter
	activeJitter = 0.20            // active grants refresh up to this fraction of their lead earlier

	// minUsable is the least remaining lifetime of an access token worth
	// handing out: a mail login needs the token to survive the
	// AUTHENTICATE round trip.
	minUsable = 10 * time.Second
)

// policy is the part of KeeperOptions the time policy reads.
type policy struct {
	refreshBeforeExpiry  time.Duration
	refreshTokenLifetime time.Duration
	activeWindow         time.Duration
	idleTimeout          time.Duration
	lifetime             time.Duration
	tokenCallTimeout     time.Duration
	deviceLifetime       time.Duration
}

func (o KeeperOptions) policy() policy {
	return policy{o.RefreshBeforeExpiry, o.RefreshTokenLifetime, o.ActiveWindow, o.IdleTimeout, o.Lifetime, o.TokenCallTimeout, o.DeviceLifetime}
}

// mode is what a caller of the refresh path needs from a grant.
type mode int

const (
	// modeView: a page view needs an access token that lives a while yet.
	modeView mode = iota
	// modeReplace: the mail server refused an access token; a grant still
	// holding it must be refreshed.
	modeReplace
	// modeBackground: the scheduler refreshes grants that are due, and
	// never waits for another process.
	modeBackground
	// modeForce: sign-out and session end take the lease whatever the
	// grant's state.
	modeForce
)

// active reports whether g had a page view within the active window.
func (p policy) active(g store.Grant, now time.Time) bool {
	return now.Sub(g.LastActive) < p.activeWindow
}

// refreshAt is when the scheduler should refresh g, by token lifetimes
// alone. An idle grant is refreshed at 0.75–0.8 of the sliding refresh-token
// lifetime (one call per ~70 minutes at Authelia's 90). An active grant is
// refreshed lead before its access token expires, where lead is the larger of
// RefreshBeforeExpiry and TokenCallTimeout (so a slow IdP has the whole call
// timeout before the token runs out), plus up to 20% jitter, but never more
// than half the access token's life (or every view would refresh). Jitter is a
// stable function of the grant and its last rotation, so every process
// computes the same time and re-computing it never moves it.
func (p policy) refreshAt(g store.Grant, now time.Time) time.Time {
	if g.RefreshToken == "" {
		return g.AccessExpiry // nothing to refresh with; needs sign-in then
	}
	j := jitter(g, 0)
	t := g.RefreshExpiry.Add(-time.Duration(float64(p.refreshTokenLifetime) * (idleMargin + idleJitter*j)))
	if p.active(g, now) {
		lead := max(p.refreshBeforeExpiry, p.tokenCallTimeout)
		lead += time.Duration(activeJitter * j * float64(lead))
		lead = min(lead, g.AccessExpiry.Sub(g.LastRefresh)/2)
		t = minTime(t, g.AccessExpiry.Add(-lead))
	}
	return t
}

// end is when session policy ends g: IdleTimeout after the last page view,
// or Lifetime after sign-in, whichever is first. A device grant (one mail
// client's) has no idle timeout and ends DeviceLifetime after it was
// created: neither the browser session's policy nor its sign-out touches it.
func (p policy) end(g store.Grant) time.Time {
	if g.Kind == store.KindDevice {
		return g.CreatedAt.Add(p.deviceLifetime)
	}
	last := g.LastActive
	if last.IsZero() {
		last = g.CreatedAt
	}
	return minTime(last.Add(p.idleTimeout), g.CreatedAt.Add(p.lifetime))
}

// schedule is the NextRefreshAt to store for a grant in state ok: its
// refresh time, or the end of its session if that comes first (the scheduler
// then revokes and deletes it).
func (p policy) schedule(g store.Grant, now time.Time) time.Time {
	return minTime(p.refreshAt(g, now), p.end(g))
}

// backoff is the wait before retry number g.FailCount: exponential from
// backoffBase to backoffMax with equal jitter (stable per grant and failure),
// and never so long that the refresh token could lapse before two more tries.
func (p policy) backoff(g store.Grant, now time.Time) time.Duration {
	d := min(backoffBase<<min(max(g.FailCount-1, 0), 16), backoffMax)
	d = d/2 + time.Duration(jitter(g, g.FailCount)*float64(d/2))
	if left := g.RefreshExpiry.Sub(now); left > 0 && d > left/3 {
		d = max(left/3, time.Second)
	}
	return d
}

// viewFloor is how long a page view wants its access token to live: half of
// RefreshBeforeExpiry, but never more than half the token's life (or every
// view would refresh), and always at least minUsable (usable() refuses
// less: with access tokens under ~20 s half the life is below it, and the
// view would get neither a refresh nor a token).
func (p policy) viewFloor(g store.Grant) time.Duration {
	return max(minUsable, min(p.refreshBeforeExpiry/2, g.AccessExpiry.Sub(g.LastRefresh)/2))
}

// needs reports whether g must be refreshed now for m; rejected is the
// access token the mail server refused (modeReplace).
func (p policy) needs(g store.Grant, now time.Time, m mode, rejected string) bool {
	switch {
	case m == modeForce:
		return true
	case m == modeBackground && g.State == store.StateDegraded:
		return !now.Before(g.NextRefreshAt)
	case m == modeBackground:
		return !now.Before(p.refreshAt(g, now))
	case m == modeReplace && g.AccessToken == rejected:
		return true
	}
	return g.AccessExpiry.Sub(now) < p.viewFloor(g)
}

// decide says whether g must be refreshed now for m; when not, the error (if
// any) says why the caller cannot have a fresh token.
func (p policy) decide(g store.Grant, now time.Time, m mode, rejected string) (bool, error) {
	switch {
	case m == modeForce:
		return true, nil
	case g.State == store.StateNeedsSignIn:
		return false, fmt.Errorf("auth: grant %s (%s): %w", g.ID, g.LastError, ErrNeedsSignIn)
	case !p.needs(g, now, m, rejected):
		return false, nil
	case m != modeBackground && g.State == store.StateDegraded && now.Before(g.NextRefreshAt):
		// Backing off: page views do not hammer a failing IdP; the
		// scheduler retries.
		class := ErrTransient
		if g.LastError == string(ReasonRejected) {
			class = ErrRejected
		}
		return false, fmt.Errorf("auth: grant %s: refresh failing (%s), retry scheduled: %w", g.ID, g.LastError, class)
	}
	return true, nil
}

// usable reports whether g's access token has life enough for a mail login.
func usable(g store.Grant, now time.Time) bool {
	return g.AccessToken != "" && g.AccessExpiry.Sub(now) >= minUsable
}

// jitter maps a grant, its last rotation and salt to [0, 1).
func jitter(g store.Grant, salt int) float64 {
	h := fnv.New64a()
	h.Write([]byte(g.ID))
	var b [16]byte
	n, s := g.LastRefresh.UnixNano(), int64(salt)
	for i := range 8 {
		b[i], b[8+i] = byte(n>>(8*i)), byte(s>>(8*i))
	}
	if salt == 0 {
		h.Write(b[:8]) // the refresh time's jitter, unchanged from before salts existed
	} else {
		h.Write(b[:])
	}
	return float64(h.Sum64()>>11) / (1 << 53)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
