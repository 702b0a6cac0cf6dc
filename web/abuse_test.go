package web

// The abuse suite of issue 10: one user (alice) runs every abuse case at once while another user (bob) reads his
// inbox. Each case stops by itself within seconds. The assertion is that bob's every inbox view succeeds and that
// each abuse really happened (counts, not timings: this machine is shared and noisy); the latencies are measured and
// logged (go test -run TestAbuse -v), and docs/security.md states the figure.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// abuseFor is how long the abuse runs.
const abuseFor = 4 * time.Second

func TestAbuseAnotherUsersInboxStillServes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every abuse case for seconds")
	}
	s := newStack(t)
	bob := signedInAs(t, s, "bob")
	alice := signedInAs(t, s, "alice")
	host := s.ts.Listener.Addr().String()

	inbox := func() (time.Duration, int) {
		start := time.Now()
		r := bob.b.get(s.ts.URL + "/mail/INBOX")
		return time.Since(start), r.status
	}
	var quiet []time.Duration
	for i := 0; i < 10; i++ {
		d, st := inbox()
		if st != http.StatusOK {
			t.Fatalf("bob's inbox before the abuse = %d", st)
		}
		quiet = append(quiet, d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), abuseFor)
	defer cancel()
	var (
		wg                                     sync.WaitGroup
		stashForms, stashRefused, logins       atomic.Int64
		streamsOpen, streamsRefused            atomic.Int64
		slowHeadersCut, slowBodiesCut, slowAll atomic.Int64
	)
	loop := func(n int, f func()) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					f()
				}
			}()
		}
	}
	// Stash flood: forms of the most files allowed, and forms of thousands of parts.
	loop(2, func() {
		if r := alice.b.postParts(s.ts.URL+"/send", emptyFiles(maxFormFiles)); r.status == http.StatusBadRequest {
			stashForms.Add(1)
		}
	})
	loop(1, func() {
		if r := alice.b.postParts(s.ts.URL+"/send", emptyFiles(5000)); r.status == http.StatusBadRequest {
			stashRefused.Add(1)
		}
	})
	// Anonymous sign-in flood.
	loop(2, func() {
		r := newBrowser(t).get(s.ts.URL + "/login")
		if r.status == http.StatusSeeOther {
			logins.Add(1)
		}
	})
	// SSE flood: four more sign-ins of alice, three streams each.
	for i := 0; i < 4; i++ {
		a := signedInAs(t, s, "alice")
		for j := 0; j < 3; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.ts.URL+"/events/INBOX", nil)
				hc := *a.b.hc
				hc.Timeout = 0
				resp, err := hc.Do(req)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					streamsOpen.Add(1)
					_, _ = io.Copy(io.Discard, resp.Body) // until the abuse ends
				} else {
					streamsRefused.Add(1)
				}
			}()
		}
	}
	// Slowloris: 100 connections that never finish their headers, 100 whose body never comes.
	slow := func(head string, cut *atomic.Int64) {
		defer wg.Done()
		c, err := net.Dial("tcp", host)
		if err != nil {
			return
		}
		defer c.Close()
		slowAll.Add(1)
		_, _ = io.WriteString(c, head)
		_ = c.SetReadDeadline(time.Now().Add(3 * abuseFor))
		if _, err := io.Copy(io.Discard, c); err == nil { // EOF: the server closed it
			cut.Add(1)
		}
	}
	for i := 0; i < 100; i++ {
		wg.Add(2)
		go slow("GET /mail/INBOX HTTP/1.1\r\nHost: "+host+"\r\nX-Slow: ", &slowHeadersCut)
		go slow("POST /logout HTTP/1.1\r\nHost: "+host+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1\r\n\r\n", &slowBodiesCut)
	}

	// Bob reads his inbox while all of it runs.
	var busy []time.Duration
	for ctx.Err() == nil {
		d, st := inbox()
		if st != http.StatusOK {
			t.Errorf("bob's inbox during the abuse = %d", st)
		}
		busy = append(busy, d)
	}
	wg.Wait()

	if stashForms.Load() == 0 || stashRefused.Load() == 0 || logins.Load() == 0 || streamsRefused.Load() == 0 {
		t.Errorf("the abuse did not run: %d stash forms, %d refused floods, %d anonymous logins, %d refused streams",
			stashForms.Load(), stashRefused.Load(), logins.Load(), streamsRefused.Load())
	}
	if n := streamsOpen.Load(); n > maxWatchersPerUser {
		t.Errorf("alice held %d streams, over the per-user bound %d", n, maxWatchersPerUser)
	}
	if mine, _ := s.web.uploads.count(userOf(requestAs(alice))); mine > maxStashPerUser {
		t.Errorf("alice holds %d stashed files, over the bound %d", mine, maxStashPerUser)
	}
	if h, b := slowHeadersCut.Load(), slowBodiesCut.Load(); h != 100 || b != 100 {
		t.Errorf("the server cut %d of 100 slow-header and %d of 100 slow-body connections", h, b)
	}
	if len(busy) == 0 {
		t.Fatal("bob's inbox was never served during the abuse")
	}
	t.Logf("bob's inbox view: quiet %s; during the abuse %s (%d stash forms, %d refused part floods, %d anonymous logins, %d streams open and %d refused, %d slow connections)",
		summary(quiet), summary(busy), stashForms.Load(), stashRefused.Load(), logins.Load(), streamsOpen.Load(), streamsRefused.Load(), slowAll.Load())
}

// requestAs is a request carrying u's grant and user, as signedIn would bind them.
func requestAs(u *mailUser) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	info, _ := u.s.keeper.Info(context.Background(), u.grant)
	ctx := context.WithValue(r.Context(), grantKey{}, u.grant)
	ctx = context.WithValue(ctx, userCtx{}, userKey(info.Identity.Issuer, info.Identity.Subject))
	return r.WithContext(ctx)
}

func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("n=%d median %s p95 %s max %s", len(s), s[len(s)/2].Round(time.Millisecond),
		s[len(s)*95/100].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}
