package bridge

import (
	"net/netip"
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	now := time.Unix(1e9, 0)
	th := newThrottle(time.Second)
	th.now = func() time.Time { return now }
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("198.51.100.7")

	// One address: the delay doubles per failure up to 32×.
	var got []time.Duration
	for range 8 {
		got = append(got, th.fail(a, "alice@example.test"))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 32, 32}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays = %v, want %v seconds", got, want)
		}
	}
	// Another address guessing the same account pays the account's count.
	if d := th.fail(b, "ALICE@example.test"); d != 32*time.Second {
		t.Errorf("delay from a new address for a guessed account = %v, want 32s", d)
	}
	// The owner's success clears the account but not the guessing address.
	th.succeed("alice@example.test")
	if d := th.fail(b, "bob@example.test"); d != 2*time.Second {
		t.Errorf("delay for the second address's second failure = %v, want 2s", d)
	}
	// IPv6 addresses of one /64 share a count.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff")
	th.fail(v6a, "x1")
	if d := th.fail(v6b, "x2"); d != 2*time.Second {
		t.Errorf("second failure from the same /64 = %v, want 2s", d)
	}
	// Counts are forgotten after the window.
	now = now.Add(16 * time.Minute)
	if d := th.fail(a, "alice@example.test"); d != time.Second {
		t.Errorf("delay after the window = %v, want 1s", d)
	}
}

func TestThrottleBounded(t *testing.T) {
	now := time.Unix(1e9, 0)
	th := newThrottle(time.Second)
	th.now = func() time.Time { return now }
	th.maxEntries = 10
	for i := range 20 {
		th.fail(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), "u")
	}
	if len(th.entries) > 10 {
		t.Fatalf("throttle holds %d entries, want at most 10", len(th.entries))
	}
	// A full table of live entries gives a newcomer the longest delay rather than none.
	if d := th.fail(netip.MustParseAddr("10.9.9.9"), "someone-new"); d != 32*time.Second {
		t.Errorf("delay with a full table = %v, want 32s", d)
	}
	// Expired entries make room again.
	now = now.Add(time.Hour)
	if d := th.fail(netip.MustParseAddr("10.9.9.9"), "someone-new"); d != time.Second {
		t.Errorf("delay after the table expired = %v, want 1s", d)
	}
}
