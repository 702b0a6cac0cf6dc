package store

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/postern/postern/internal/seal"
)

// testKey returns a deterministic 32-byte key whose bytes are all b.
func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }

// newSealer returns a sealer over the named keys ("old" = 1s, "new" = 2s,
// anything else = 3s), current first.
func newSealer(t testing.TB, current string, others ...string) *seal.Sealer {
	t.Helper()
	keys := map[string][]byte{}
	for _, id := range append([]string{current}, others...) {
		switch id {
		case "old":
			keys[id] = testKey(1)
		case "new":
			keys[id] = testKey(2)
		default:
			keys[id] = testKey(3)
		}
	}
	s, err := seal.New(keys, current)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openAt opens the store at path with sealer and closes it at test end.
func openAt(t testing.TB, path string, sealer *seal.Sealer) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path, sealer)
	if err != nil {
		t.Fatalf("OpenSQLite(%s) = %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openTemp opens a fresh store in a temporary directory and returns it with
// the database path.
func openTemp(t testing.TB) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "postern.db")
	return openAt(t, path, newSealer(t, "old")), path
}

// at returns a fixed instant plus d, with nanoseconds and a non-UTC zone so
// round trips prove both precision and normalisation.
func at(d time.Duration) time.Time {
	base := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))
	return base.Add(d)
}

// sampleGrant is a grant with every field set to a distinct value.
// createGrant stores sampleGrant(id) in s and returns it as stored (version 1).
func createGrant(t testing.TB, s interface {
	CreateGrant(context.Context, *Grant) error
}, id string) Grant {
	t.Helper()
	g := sampleGrant(id)
	if err := s.CreateGrant(context.Background(), &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func sampleGrant(id string) Grant {
	return Grant{
		ID: id, Issuer: "https://auth.example.org", Subject: "sub-" + id, Kind: KindDevice,
		Email: id + "@example.org", Username: "user-" + id, Name: "User " + id,
		AccessToken: "access-" + id, RefreshToken: "refresh-" + id, IDToken: "idtoken-" + id,
		AccessExpiry: at(time.Hour), RefreshExpiry: at(30 * 24 * time.Hour),
		State: StateDegraded, LastError: "timeout", FailCount: 3,
		LastRefresh: at(-time.Minute), LastActive: at(-time.Second), NextRefreshAt: at(50 * time.Minute),
		CreatedAt: at(-time.Hour), UpdatedAt: at(-30 * time.Minute),
	}
}

// sameGrant fails the test unless got and want are equal field by field,
// comparing times with Equal (locations and monotonic readings differ).
func sameGrant(t *testing.T, got, want Grant) {
	t.Helper()
	times := []struct {
		name      string
		got, want time.Time
	}{
		{"AccessExpiry", got.AccessExpiry, want.AccessExpiry},
		{"RefreshExpiry", got.RefreshExpiry, want.RefreshExpiry},
		{"LastRefresh", got.LastRefresh, want.LastRefresh},
		{"LastActive", got.LastActive, want.LastActive},
		{"NextRefreshAt", got.NextRefreshAt, want.NextRefreshAt},
		{"CreatedAt", got.CreatedAt, want.CreatedAt},
		{"UpdatedAt", got.UpdatedAt, want.UpdatedAt},
	}
	for _, tm := range times {
		if !tm.got.Equal(tm.want) {
			t.Errorf("%s = %v, want %v", tm.name, tm.got, tm.want)
		}
	}
	// Zero the times so the remaining fields compare with ==.
	clear := func(g Grant) Grant {
		g.AccessExpiry, g.RefreshExpiry = time.Time{}, time.Time{}
		g.LastRefresh, g.LastActive, g.NextRefreshAt = time.Time{}, time.Time{}, time.Time{}
		g.CreatedAt, g.UpdatedAt = time.Time{}, time.Time{}
		return g
	}
	if g, w := clear(got), clear(want); g != w {
		t.Errorf("grant = %+v,\nwant  %+v", g, w)
	}
}

func TestTimeConversion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   time.Time
		want time.Time
	}{
		{"zero", time.Time{}, time.Time{}},
		{"nanos", at(0), at(0)},
		{"utc", time.Unix(1, 2), time.Unix(1, 2)},
		{"before 1970", time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC)},
		{"far future clamps", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), maxNanosTime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromNanos(toNanos(tt.in))
			if !got.Equal(tt.want) {
				t.Errorf("fromNanos(toNanos(%v)) = %v, want %v", tt.in, got, tt.want)
			}
			if !got.IsZero() && got.Location() != time.UTC {
				t.Errorf("location = %v, want UTC", got.Location())
			}
		})
	}
}

func TestOpenSQLiteRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		path   string
		sealer *seal.Sealer
	}{
		{"nil sealer", filepath.Join(t.TempDir(), "a.db"), nil},
		{"empty path", "", newSealer(t, "old")},
		{"query in path", filepath.Join(t.TempDir(), "a.db?mode=ro"), newSealer(t, "old")},
		{"uri", "file:a.db", newSealer(t, "old")},
		{"missing directory", filepath.Join(t.TempDir(), "no", "such", "a.db"), newSealer(t, "old")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenSQLite(context.Background(), tt.path, tt.sealer)
			if err == nil {
				s.Close()
				t.Fatal("OpenSQLite = nil error, want error")
			}
		})
	}
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	s, _ := openTemp(t)
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"busy_timeout", "5000"},
		{"foreign_keys", "1"},
		{"synchronous", "2"}, // FULL
	}
	for _, tt := range tests {
		t.Run(tt.pragma, func(t *testing.T) {
			var got string
			if err := s.db.QueryRow("PRAGMA " + tt.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping = %v", err)
	}
}

// newSealerBytes returns a sealer with one key of the given id and bytes.
func newSealerBytes(t testing.TB, id string, key []byte) *seal.Sealer {
	t.Helper()
	s, err := seal.New(map[string][]byte{id: key}, id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
