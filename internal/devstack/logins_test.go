package devstack_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/devstack"
	"github.com/postern/postern/internal/devstack/idp"
	"github.com/postern/postern/internal/devstack/mailserver"
	"github.com/postern/postern/mail"
)

const redirect = "http://127.0.0.1:9/oauth2/callback"

// signIn starts the peers (JWT or opaque access tokens) and signs ann in through Postern's relying party, so the
// tokens are exactly what Postern would hold.
func signIn(t *testing.T, jwtMode bool, mo mailserver.Options) (*devstack.Stack, *auth.Provider, *auth.Login) {
	t.Helper()
	st, err := devstack.Start(devstack.Options{
		RedirectURIs: []string{redirect},
		Users:        []idp.User{{Username: "ann", Password: "pw-ann", Email: "ann@example.org", Name: "Ann"}},
		Mail:         mo,
		JWT:          jwtMode,
		// The lifetime recommended with JWTs (docs/deploy.md): a revoked token lives at most this long at Stalwart.
		AccessTokenLifespan: 5 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	ctx := context.Background()
	p, err := auth.New(ctx, auth.Config{
		Issuer: st.IdP.Issuer(), ClientID: devstack.ClientID, ClientSecret: st.ClientSecret,
		RedirectURL: redirect, Audience: []string{devstack.Audience},
	}, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f, authURL := p.Begin("/")
	jar, _ := cookiejar.New(nil)
	loc, err := idp.SignIn(ctx, &http.Client{Jar: jar, Timeout: 10 * time.Second}, authURL, "ann", "pw-ann", true)
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.Finish(ctx, f, loc.Query())
	if err != nil {
		t.Fatal(err)
	}
	return st, p, l
}

// static is a mail.TokenSource holding one token, as the keeper would between refreshes.
type static struct{ c mail.Credentials }

func (s static) Token(context.Context) (mail.Credentials, error) { return s.c, nil }
func (s static) Replace(context.Context, mail.Credentials) (mail.Credentials, error) {
	return mail.Credentials{}, errors.New("no replacement in this test")
}

func imapServer(t *testing.T, st *devstack.Stack) mail.Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(st.IMAP.String())
	n, _ := strconv.Atoi(port)
	return mail.Server{Host: host, Port: n, TLS: mail.TLSNone}
}

// TestLoginsCostNoUserinfoWithJWT is the count behind docs/benchmarks.md ("IdP calls per mail login"): n IMAP logins
// through Postern's pool, each on a fresh connection (the pool's sessions are closed after every use, the churn of
// idle reaping, restarts and sign-outs), cost the IdP n userinfo calls with opaque access tokens and none with JWT
// access tokens validated offline by the Stalwart-0.16-like server.
func TestLoginsCostNoUserinfoWithJWT(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 50
	}
	for _, tt := range []struct {
		name string
		jwt  bool
		kind auth.TokenKind
	}{{"opaque", false, auth.TokenOpaque}, {"jwt", true, auth.TokenJWT}} {
		t.Run(tt.name, func(t *testing.T) {
			st, _, l := signIn(t, tt.jwt, mailserver.Options{})
			if l.Tokens.Kind != tt.kind {
				t.Fatalf("Login.Tokens.Kind = %v, want %v", l.Tokens.Kind, tt.kind)
			}
			pool := mail.NewPool(imapServer(t, st), mail.PoolOptions{MaxPerUser: 1})
			defer pool.Close()
			ts := static{mail.Credentials{Address: l.Identity.Email, Token: l.Tokens.AccessToken}}
			idpBefore, mailBefore := st.IdP.Stats().UserinfoRequests, st.Mail.Stats()
			ctx := context.Background()
			for i := range n {
				if err := pool.Do(ctx, "grant-1", ts, func(s *mail.Session) error { return nil }); err != nil {
					t.Fatalf("login %d: Pool.Do() = %v", i, err)
				}
				pool.CloseKey("grant-1")
			}
			mailAfter := st.Mail.Stats()
			logins := mailAfter.AuthSuccesses - mailBefore.AuthSuccesses
			userinfo := st.IdP.Stats().UserinfoRequests - idpBefore
			if ps := pool.Stats(); logins != int64(n) || ps.Logins != int64(n) {
				t.Fatalf("mail server logins %d, pool logins %d, want %d each: the pool did not churn", logins, ps.Logins, n)
			}
			want := int64(n)
			if tt.jwt {
				want = 0
			}
			if userinfo != want {
				t.Errorf("%d IMAP logins cost %d userinfo calls at the IdP, want %d", n, userinfo, want)
			}
			t.Logf("%s: %d IMAP logins, %d userinfo calls at the IdP, %d JWT validations offline, %d JWKS fetches",
				tt.name, logins, userinfo, mailAfter.JWTValidations-mailBefore.JWTValidations, mailAfter.JWKSFetches-mailBefore.JWKSFetches)
		})
	}
}

// TestRevokedJWTStillAcceptedUntilExp is the trade-off of docs/deploy.md: after sign-out revoked the grant at the
// IdP, the offline validator still accepts the JWT until its exp (plus Stalwart's 60 s leeway); an opaque token is
// refused at once. What Postern can do is close every connection it holds for the grant, which it does at sign-out
// (web's handleLogout: Keeper.SignOut, then Pool.CloseKey).
func TestRevokedJWTStillAcceptedUntilExp(t *testing.T) {
	for _, jwtMode := range []bool{false, true} {
		t.Run(map[bool]string{false: "opaque", true: "jwt"}[jwtMode], func(t *testing.T) {
			var clock atomic.Int64 // the mail server's clock, in Unix nanoseconds
			clock.Store(time.Now().UnixNano())
			mo := mailserver.Options{}
			if jwtMode {
				// The mail server's clock is the test's, so the token can be seen past its exp without waiting.
				mo.JWT = &mailserver.JWTOptions{RequireAudience: devstack.Audience, Now: func() time.Time { return time.Unix(0, clock.Load()) }}
			}
			st, p, l := signIn(t, jwtMode, mo)
			ctx := context.Background()
			srv := imapServer(t, st)
			pool := mail.NewPool(srv, mail.PoolOptions{})
			defer pool.Close()
			ts := static{mail.Credentials{Address: l.Identity.Email, Token: l.Tokens.AccessToken}}
			// Two sessions for the grant, as a mailbox page and a background fetch would hold.
			hold := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- pool.Do(ctx, "grant-1", ts, func(*mail.Session) error { <-hold; return nil })
			}()
			if err := pool.Do(ctx, "grant-1", ts, func(*mail.Session) error { return nil }); err != nil {
				t.Fatalf("Pool.Do() = %v", err)
			}
			close(hold)
			if err := <-done; err != nil {
				t.Fatalf("Pool.Do() = %v", err)
			}
			if got := st.Mail.Stats().Sessions; got < 1 {
				t.Fatalf("mail server sessions = %d before sign-out, want the pooled ones", got)
			}

			// Sign-out: revoke the refresh token (the whole grant at the IdP), close the grant's connections.
			if err := p.Revoke(ctx, l.Tokens.RefreshToken, "refresh_token"); err != nil {
				t.Fatalf("Revoke() = %v", err)
			}
			pool.CloseKey("grant-1")
			if st.IdP.Active(l.Tokens.AccessToken) {
				t.Fatal("access token still active at the IdP after revoking the grant")
			}
			waitSessions(t, st, 0)

			// A new login with the revoked token: accepted offline if it is a JWT, refused if opaque.
			s, err := mail.Dial(ctx, srv, ts.c)
			if jwtMode {
				if err != nil {
					t.Fatalf("Dial() with the revoked JWT before exp = %v, want accepted (offline validation)", err)
				}
				s.Close()
				info := auth.InspectAccessToken(l.Tokens.AccessToken, "")
				clock.Store(info.Expiry.Add(61 * time.Second).UnixNano()) // past Stalwart's leeway
				if _, err := mail.Dial(ctx, srv, ts.c); !errors.Is(err, mail.ErrAuthFailed) {
					t.Fatalf("Dial() with the revoked JWT after exp = %v, want ErrAuthFailed", err)
				}
				return
			}
			if !errors.Is(err, mail.ErrAuthFailed) {
				t.Fatalf("Dial() with the revoked opaque token = %v, want ErrAuthFailed", err)
			}
		})
	}
}

func waitSessions(t *testing.T, st *devstack.Stack, want int64) {
	t.Helper()
	for range 500 {
		if st.Mail.Stats().Sessions == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("mail server sessions = %d, want %d", st.Mail.Stats().Sessions, want)
}
