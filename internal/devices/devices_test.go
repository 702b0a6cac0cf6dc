package devices

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/internal/store/pgtest"
)

const issuer = "https://idp.example.test"

// stores returns the drivers to test against: SQLite always, PostgreSQL when POSTERN_TEST_POSTGRES_DSN is set (each
// in a fresh schema the store's migrations fill).
func stores(t *testing.T) map[string]storeUnderTest {
	t.Helper()
	sealer, err := seal.New(map[string][]byte{"k": make([]byte, seal.KeySize)}, "k")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]storeUnderTest{}
	sq, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "p.db"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	out["sqlite"] = sq
	if os.Getenv(pgtest.Env) != "" {
		out["postgres"] = openPostgres(t, sealer)
	}
	return out
}

type storeUnderTest interface {
	Store
	CreateGrant(ctx context.Context, g *store.Grant) error
	UpdateGrant(ctx context.Context, g store.Grant) (store.Grant, error)
	DeleteGrant(ctx context.Context, id string) error
}

// newGrant stores a device grant for subject and returns its id.
func newGrant(t *testing.T, st storeUnderTest, subject string) string {
	t.Helper()
	g := store.Grant{Issuer: issuer, Subject: subject, Kind: store.KindDevice, Email: subject + "@example.test",
		AccessToken: "at", RefreshToken: "rt"}
	if err := st.CreateGrant(t.Context(), &g); err != nil {
		t.Fatal(err)
	}
	return g.ID
}

func TestPasswordFormat(t *testing.T) {
	t.Parallel()
	if bits := float64(secretGroups*groupLen) * math.Log2(float64(len(alphabet))); bits < 128 {
		t.Errorf("secret entropy = %.1f bits, want ≥ 128", bits)
	}
	for _, c := range "01iloO" {
		if strings.ContainsRune(alphabet, c) {
			t.Errorf("alphabet holds the look-alike %q", c)
		}
	}
	seen := map[string]bool{}
	for range 200 {
		id := randomGroup(idLen)
		pw := newPassword(id)
		groups := strings.Split(pw, "-")
		if len(groups) != 1+secretGroups || groups[0] != id {
			t.Fatalf("newPassword(%q) has groups %d, first %q", id, len(groups), groups[0])
		}
		for _, g := range groups {
			if len(g) != groupLen || strings.Trim(g, alphabet) != "" {
				t.Fatalf("newPassword group %q: want %d symbols of the alphabet", g, groupLen)
			}
		}
		if seen[pw] {
			t.Fatal("newPassword repeated a password")
		}
		seen[pw] = true
		norm, ok := normalize(strings.ToUpper(strings.ReplaceAll(pw, "-", " ")))
		if want := strings.ReplaceAll(pw, "-", ""); !ok || norm != want {
			t.Fatalf("normalize(upper, spaces) = %q, %v, want %q", norm, ok, want)
		}
	}
	for _, bad := range []string{"", "short", strings.Repeat("a", passwordLen+1), strings.Repeat("a", passwordLen-1) + "0",
		strings.Repeat("a", passwordLen-1) + "é"} {
		if _, ok := normalize(bad); ok {
			t.Errorf("normalize(%q) ok, want refused", bad)
		}
	}
}

func TestHashFormat(t *testing.T) {
	t.Parallel()
	h := hashPassword("abc")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hashPassword = %q, want the PHC prefix with m=19456,t=2,p=1", h)
	}
	if ok, err := checkPassword(h, "abc"); !ok || err != nil {
		t.Errorf("checkPassword(right) = %v, %v", ok, err)
	}
	if ok, err := checkPassword(h, "abd"); ok || err != nil {
		t.Errorf("checkPassword(wrong) = %v, %v", ok, err)
	}
	if h2 := hashPassword("abc"); h2 == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA", "$argon2id$v=19$m=0,t=1,p=1$c2FsdA$aGFzaA",
		"$argon2id$v=19$m=8,t=1,p=1$!!$aGFzaA"} {
		if _, err := checkPassword(bad, "abc"); !errors.Is(err, errMalformedHash) {
			t.Errorf("checkPassword(%q) = %v, want errMalformedHash", bad, err)
		}
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := New(st, &Options{MemoTTL: -1}) // every case pays the hash, so the counts below mean something
			owner := Owner{Issuer: issuer, Subject: "alice-" + name, Address: "Alice@Example.test"}
			d, pw, err := s.Create(ctx, owner, " iPhone ", newGrant(t, st, owner.Subject))
			if err != nil {
				t.Fatalf("Create = %v", err)
			}
			if d.Name != "iPhone" || d.Address != "alice@example.test" || !strings.HasPrefix(pw, d.ID+"-") {
				t.Fatalf("Create = %+v, password prefix %q", d, pw[:idLen])
			}
			other, _, err := s.Create(ctx, owner, "Laptop", newGrant(t, st, owner.Subject))
			if err != nil {
				t.Fatal(err)
			}
			wrong := []byte(pw)
			wrong[len(wrong)-1] = alphabet[(strings.IndexByte(alphabet, wrong[len(wrong)-1])+1)%len(alphabet)]
			unknown := "zzzzz" + pw[idLen:]
			if unknown[:idLen] == d.ID || unknown[:idLen] == other.ID {
				unknown = "yyyyy" + pw[idLen:]
			}
			tests := []struct {
				name, user, password string
				want                 error
				checks               int64 // argon2id verifications: the same for every refusal
			}{
				{"right", "alice@example.test", pw, nil, 1},
				{"case and separators forgiven", " ALICE@example.TEST", strings.ToUpper(strings.ReplaceAll(pw, "-", " ")), nil, 1},
				{"wrong password", "alice@example.test", string(wrong), ErrBadCredentials, 1},
				{"unknown device id", "alice@example.test", unknown, ErrBadCredentials, 1},
				{"malformed password", "alice@example.test", "hunter2", ErrBadCredentials, 1},
				{"other user's address", "bob@example.test", pw, ErrBadCredentials, 1},
				{"another device's id with this secret", "alice@example.test", other.ID + pw[idLen:], ErrBadCredentials, 1},
			}
			for _, tt := range tests {
				before := s.checks.Load()
				l, err := s.Verify(ctx, tt.user, tt.password, netip.MustParseAddr("192.0.2.1"))
				if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
					t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
					continue
				}
				if got := s.checks.Load() - before; got != tt.checks {
					t.Errorf("%s: Verify did %d argon2id checks, want %d", tt.name, got, tt.checks)
				}
				if tt.want == nil && (l.DeviceID != d.ID || l.GrantID != d.GrantID || l.Address != "alice@example.test") {
					t.Errorf("%s: Verify = %+v, want device %s grant %s", tt.name, l, d.ID, d.GrantID)
				}
			}

			// The grant needs a sign-in, then is gone: the right password says so, a wrong one still does not.
			g, err := st.Grant(ctx, d.GrantID)
			if err != nil {
				t.Fatal(err)
			}
			g.State, g.LastError, g.AccessToken, g.RefreshToken = store.StateNeedsSignIn, "invalid_grant", "", ""
			if _, err := st.UpdateGrant(ctx, g); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Verify(ctx, "alice@example.test", pw, netip.Addr{}); !errors.Is(err, ErrSignInAgain) {
				t.Errorf("Verify(grant needs_sign_in) = %v, want ErrSignInAgain", err)
			}
			if _, err := s.Verify(ctx, "alice@example.test", string(wrong), netip.Addr{}); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("Verify(wrong password, grant needs_sign_in) = %v, want ErrBadCredentials", err)
			}
			if err := st.DeleteGrant(ctx, d.GrantID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Verify(ctx, "alice@example.test", pw, netip.Addr{}); !errors.Is(err, ErrSignInAgain) {
				t.Errorf("Verify(grant gone) = %v, want ErrSignInAgain", err)
			}

			// Signing the device in again gives it a new grant and keeps its password.
			fresh := newGrant(t, st, owner.Subject)
			if _, _, err := s.Reconnect(ctx, issuer, "mallory", d.ID, fresh); !errors.Is(err, ErrNotFound) {
				t.Errorf("Reconnect(another owner's device) = %v, want ErrNotFound", err)
			}
			rd, old, err := s.Reconnect(ctx, issuer, owner.Subject, d.ID, fresh)
			if err != nil || old != d.GrantID || rd.GrantID != fresh {
				t.Fatalf("Reconnect = %+v, old %q, %v; want grant %s replacing %s", rd, old, err, fresh, d.GrantID)
			}
			if l, err := s.Verify(ctx, "alice@example.test", pw, netip.Addr{}); err != nil || l.GrantID != fresh {
				t.Errorf("Verify after Reconnect = %+v, %v; want the same password on the new grant", l, err)
			}

			// Revoked: bad credentials, at the cost of a wrong password.
			if _, err := s.Revoke(ctx, issuer, "mallory", other.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Revoke(another owner's device) = %v, want ErrNotFound", err)
			}
			r, err := s.Revoke(ctx, issuer, owner.Subject, d.ID)
			if err != nil || !r.Revoked() {
				t.Fatalf("Revoke = %+v, %v", r, err)
			}
			before := s.checks.Load()
			if _, err := s.Verify(ctx, "alice@example.test", pw, netip.Addr{}); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("Verify(revoked) = %v, want ErrBadCredentials", err)
			}
			if got := s.checks.Load() - before; got != 1 {
				t.Errorf("Verify(revoked) did %d argon2id checks, want 1", got)
			}
			if _, _, err := s.Reconnect(ctx, issuer, owner.Subject, d.ID, fresh); !errors.Is(err, ErrNotFound) {
				t.Errorf("Reconnect(revoked) = %v, want ErrNotFound", err)
			}
			list, err := s.List(ctx, issuer, owner.Subject)
			if err != nil || len(list) != 2 || !list[0].Revoked() || list[1].Revoked() {
				t.Errorf("List = %+v, %v; want the revoked iPhone and the live Laptop", list, err)
			}
		})
	}
}

func TestMemo(t *testing.T) {
	t.Parallel()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := New(st, nil)
			owner := Owner{Issuer: issuer, Subject: "memo-" + name, Address: "memo@example.test"}
			d, pw, err := s.Create(ctx, owner, "Thunderbird", newGrant(t, st, owner.Subject))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 { // Thunderbird's burst of connections: one hash, then the memo
				if _, err := s.Verify(ctx, "memo@example.test", pw, netip.Addr{}); err != nil {
					t.Fatalf("Verify #%d = %v", i, err)
				}
			}
			if got := s.checks.Load(); got != 1 {
				t.Errorf("5 logins did %d argon2id checks, want 1", got)
			}
			// A wrong password is not helped by the memo, and is not remembered.
			wrong := d.ID + strings.Repeat("2", passwordLen-idLen)
			for range 2 {
				if _, err := s.Verify(ctx, "memo@example.test", wrong, netip.Addr{}); !errors.Is(err, ErrBadCredentials) {
					t.Fatalf("Verify(wrong) = %v", err)
				}
			}
			if got := s.checks.Load(); got != 3 {
				t.Errorf("after 2 wrong passwords: %d checks, want 3", got)
			}
			// A remembered password of a revoked device does not log in.
			if _, err := s.Revoke(ctx, issuer, owner.Subject, d.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Verify(ctx, "memo@example.test", pw, netip.Addr{}); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("Verify(revoked, remembered) = %v, want ErrBadCredentials", err)
			}
			// The memo keeps neither the password nor a plain hash of it: its key is an HMAC under a per-process key.
			norm, _ := normalize(pw)
			if New(st, nil).memo.mac(d.ID, norm, "h") == s.memo.mac(d.ID, norm, "h") {
				t.Error("two processes' memo keys are equal: the HMAC key is not random")
			}
		})
	}
}

func TestMemoBounded(t *testing.T) {
	t.Parallel()
	m := newMemo(5*time.Minute, 8)
	now := time.Unix(1e9, 0)
	for i := range 20 {
		m.add(m.mac(string(rune('a'+i)), "p", "h"), now)
		if m.len() > 8 {
			t.Fatalf("memo holds %d entries, want ≤ 8", m.len())
		}
	}
	k := m.mac("z", "p", "h")
	m.add(k, now)
	if !m.has(k, now.Add(4*time.Minute)) || m.has(k, now.Add(5*time.Minute)) {
		t.Error("memo entry: want remembered before its TTL and forgotten at it")
	}
}

func TestUsed(t *testing.T) {
	t.Parallel()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := New(st, nil)
			owner := Owner{Issuer: issuer, Subject: "used-" + name, Address: "u@example.test"}
			d, _, err := s.Create(t.Context(), owner, "K-9", newGrant(t, st, owner.Subject))
			if err != nil {
				t.Fatal(err)
			}
			s.Used(d.ID, netip.MustParseAddr("::ffff:198.51.100.4"), `"name" "Thunderbird" "version" "128.0"`)
			list, err := s.List(t.Context(), issuer, owner.Subject)
			if err != nil || len(list) != 1 {
				t.Fatalf("List = %v, %v", list, err)
			}
			if u := list[0]; u.LastUsedAt.IsZero() || u.LastUsedIP != "198.51.100.4" || !strings.Contains(u.LastUsedClient, "Thunderbird") {
				t.Errorf("after Used: %+v, want a time, 198.51.100.4 and the client string", u)
			}
		})
	}
}

// TestMaxPerUser: Create refuses a device beyond Options.MaxPerUser live devices of one owner with ErrTooMany;
// revoked devices and other owners do not count.
func TestMaxPerUser(t *testing.T) {
	t.Parallel()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			s := New(st, &Options{MaxPerUser: 2})
			alice := Owner{Issuer: issuer, Subject: "alice", Address: "alice@example.test"}
			var first Device
			for i := range 2 {
				d, _, err := s.Create(t.Context(), alice, "d", newGrant(t, st, "alice"))
				if err != nil {
					t.Fatalf("Create %d = %v", i, err)
				}
				if i == 0 {
					first = d
				}
			}
			if err := s.Room(t.Context(), issuer, "alice"); !errors.Is(err, ErrTooMany) {
				t.Errorf("Room at the cap = %v, want ErrTooMany", err)
			}
			if _, _, err := s.Create(t.Context(), alice, "third", newGrant(t, st, "alice")); !errors.Is(err, ErrTooMany) {
				t.Errorf("Create beyond the cap = %v, want ErrTooMany", err)
			}
			bob := Owner{Issuer: issuer, Subject: "bob", Address: "bob@example.test"}
			if _, _, err := s.Create(t.Context(), bob, "d", newGrant(t, st, "bob")); err != nil {
				t.Errorf("Create for another owner = %v", err)
			}
			if _, err := s.Revoke(t.Context(), issuer, "alice", first.ID); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Create(t.Context(), alice, "third", newGrant(t, st, "alice")); err != nil {
				t.Errorf("Create after revoking one = %v", err)
			}
			if New(st, nil).Max() != 10 {
				t.Errorf("default MaxPerUser = %d, want 10", New(st, nil).Max())
			}
		})
	}
}
