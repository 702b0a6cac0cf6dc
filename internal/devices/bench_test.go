package devices

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
)

// BenchmarkVerify is the cost of one bridge login's password check against a real SQLite store (docs/benchmarks.md):
// "argon2id" pays the hash every time (memo off, and the cost of any wrong password or unknown user), "memo" is a
// reconnect within the memo's TTL (two store reads and an HMAC).
func BenchmarkVerify(b *testing.B) {
	sealer, err := seal.New(map[string][]byte{"k": make([]byte, seal.KeySize)}, "k")
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "p.db"), sealer)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	g := store.Grant{Issuer: issuer, Subject: "bench", Kind: store.KindDevice, AccessToken: "at", RefreshToken: "rt"}
	if err := st.CreateGrant(b.Context(), &g); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ttl  time.Duration
	}{{"argon2id", -1}, {"memo", 0}} {
		b.Run(c.name, func(b *testing.B) {
			s := New(st, &Options{MemoTTL: c.ttl})
			_, pw, err := s.Create(b.Context(), Owner{Issuer: issuer, Subject: "bench", Address: "b@example.test"}, "x", g.ID)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Verify(b.Context(), "b@example.test", pw, netip.Addr{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Verify(b.Context(), "b@example.test", pw, netip.Addr{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
