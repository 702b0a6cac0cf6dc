package mail

import (
	"context"
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack/mailserver"
)

// Watches of other users fill MaxTotal; they are not idle, so nothing can be evicted and Do blocks until ctx ends.
func TestReviewWatchesStarveTotal(t *testing.T) {
	e, _ := seededSession(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{MaxPerKey: 4, MaxTotal: 4})
	for i := range 4 {
		if _, err := p.Watch(t.Context(), fmt.Sprintf("user%d", i/2), credsFor(alice, aliceToken), "INBOX"); err != nil {
			t.Fatalf("Watch %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := p.Do(ctx, "user9", credsFor(alice, aliceToken), noop(ctx))
	t.Logf("Do for another user with the total held by 4 watches (2 users x 2 tabs): err=%v after %v; stats=%+v", err, time.Since(start).Round(time.Millisecond), p.Stats())
	if err != nil {
		t.Errorf("page view starved by watches")
	}
}

// MaxPerKey=1 (config allows it): one watch takes the key's only slot and every page view of that user blocks.
func TestReviewWatchMaxPerKeyOne(t *testing.T) {
	e, _ := seededSession(t, mailserver.Options{})
	p := newTestPool(t, e, PoolOptions{MaxPerKey: 1, MaxTotal: 10})
	if _, err := p.Watch(t.Context(), "k", credsFor(alice, aliceToken), "INBOX"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	err := p.Do(ctx, "k", credsFor(alice, aliceToken), noop(ctx))
	t.Logf("Do with MaxPerKey=1 and one watch: %v", err)
	if err != nil {
		t.Errorf("page view blocked by the user's own watch")
	}
}

func TestReviewPartMemory(t *testing.T) {
	e, s := seededSession(t, mailserver.Options{})
	big := strings.Repeat("A", 30<<20)
	enc := base64.StdEncoding.EncodeToString([]byte(big))
	var b strings.Builder
	b.WriteString("From: x@example.test\r\nTo: alice@example.test\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nhi\r\n--BB\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for i := 0; i < len(enc); i += 76 {
		b.WriteString(enc[i:min(i+76, len(enc))])
		b.WriteString("\r\n")
	}
	b.WriteString("--BB--\r\n")
	ctx := ctxT(t)
	if err := s.Append(ctx, "INBOX", nil, []byte(b.String())); err != nil {
		t.Fatal(err)
	}
	uid := uidBySubject(t, s, "INBOX", "big")
	_ = e
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	p, data, err := s.Part(ctx, "INBOX", uid, "2")
	runtime.ReadMemStats(&m1)
	t.Logf("Part(): err=%v size=%d, allocated %d MiB for a %d MiB message (no size cap)", err, len(data), (m1.TotalAlloc-m0.TotalAlloc)>>20, len(b.String())>>20)
	_ = p
	runtime.GC()
	runtime.ReadMemStats(&m0)
	_, err = s.Message(ctx, "INBOX", uid)
	runtime.ReadMemStats(&m1)
	t.Logf("Message(): err=%v allocated %d MiB", err, (m1.TotalAlloc-m0.TotalAlloc)>>20)
	runtime.GC()
	runtime.ReadMemStats(&m0)
	_, err = s.Raw(ctx, "INBOX", uid)
	runtime.ReadMemStats(&m1)
	t.Logf("Raw(): err=%v allocated %d MiB (includes in-process server's cost)", err, (m1.TotalAlloc-m0.TotalAlloc)>>20)
}

// Cancel mid-FETCH: the session must be discarded, not returned desynced.
func TestReviewCancelMidCommand(t *testing.T) {
	e, s := seededSession(t, mailserver.Options{})
	big := "Subject: huge\r\n\r\n" + strings.Repeat("x", 60<<20)
	if err := s.Append(ctxT(t), "INBOX", nil, []byte(big)); err != nil {
		t.Fatal(err)
	}
	uid := uidBySubject(t, s, "INBOX", "huge")
	p := newTestPool(t, e, PoolOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(30 * time.Millisecond); cancel() }()
	err := p.Do(ctx, "k", credsFor(alice, aliceToken), func(ms *Session) error { _, err := ms.Raw(ctx, "INBOX", uid); return err })
	t.Logf("cancelled Raw: %v; stats %+v", err, p.Stats())
	if err := p.Do(ctxT(t), "k", credsFor(alice, aliceToken), noop(ctxT(t))); err != nil {
		t.Errorf("next Do: %v", err)
	}
	t.Logf("after: %+v", p.Stats())
}
