package seal

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// key returns a deterministic 32-byte key whose bytes are all b.
func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func mustNew(t *testing.T, keys map[string][]byte, current string) *Sealer {
	t.Helper()
	s, err := New(keys, current)
	if err != nil {
		t.Fatalf("New(%v keys, %q) = %v", len(keys), current, err)
	}
	return s
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		keys    map[string][]byte
		current string
		wantErr string
	}{
		{"ok", map[string][]byte{"k1": key(1)}, "k1", ""},
		{"two keys", map[string][]byte{"k1": key(1), "k2": key(2)}, "k2", ""},
		{"no keys", nil, "k1", "no keys"},
		{"current missing", map[string][]byte{"k1": key(1)}, "k2", `current key id "k2"`},
		{"short key", map[string][]byte{"k1": key(1)[:16]}, "k1", "16 bytes, want 32"},
		{"long key", map[string][]byte{"k1": append(key(1), 0)}, "k1", "33 bytes, want 32"},
		{"empty id", map[string][]byte{"": key(1), "k1": key(2)}, "k1", "empty key id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.keys, tt.current)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	s := mustNew(t, map[string][]byte{"k1": key(1)}, "k1")
	for _, plain := range []string{"", "x", "a refresh token", strings.Repeat("long", 1000)} {
		t.Run(strings.Repeat("n", min(len(plain), 8)), func(t *testing.T) {
			aad := []byte("grant:g1:refresh")
			id, sealed, err := s.Seal([]byte(plain), aad)
			if err != nil {
				t.Fatal(err)
			}
			if id != "k1" {
				t.Errorf("Seal key id = %q, want k1", id)
			}
			if len(sealed) != 12+len(plain)+16 {
				t.Errorf("len(sealed) = %d, want %d", len(sealed), 12+len(plain)+16)
			}
			if len(plain) > 3 && bytes.Contains(sealed, []byte(plain)) {
				t.Error("sealed value contains the plaintext")
			}
			got, err := s.Open(id, sealed, aad)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != plain {
				t.Errorf("Open = %q, want %q", got, plain)
			}
		})
	}
}

func TestSealNonceUnique(t *testing.T) {
	t.Parallel()
	s := mustNew(t, map[string][]byte{"k1": key(1)}, "k1")
	_, a, _ := s.Seal([]byte("same"), nil)
	_, b, _ := s.Seal([]byte("same"), nil)
	if bytes.Equal(a[:12], b[:12]) || bytes.Equal(a, b) {
		t.Error("two seals of the same plaintext are identical; nonce not random")
	}
}

func TestOpenFailures(t *testing.T) {
	t.Parallel()
	s := mustNew(t, map[string][]byte{"k1": key(1), "k2": key(2)}, "k1")
	aad := []byte("grant:g1:access")
	_, sealed, err := s.Seal([]byte("token"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 1
		return c
	}
	tests := []struct {
		name    string
		keyID   string
		sealed  []byte
		aad     []byte
		wantErr string
		isOpen  bool
	}{
		{"unknown key id", "x", sealed, aad, `seal: unknown key id "x"`, false},
		{"wrong key", "k2", sealed, aad, "authentication failed", true},
		{"wrong aad", "k1", sealed, []byte("grant:g2:access"), "authentication failed", true},
		{"nil aad", "k1", sealed, nil, "authentication failed", true},
		{"tampered nonce", "k1", flip(0), aad, "authentication failed", true},
		{"tampered ciphertext", "k1", flip(12), aad, "authentication failed", true},
		{"tampered tag", "k1", flip(len(sealed) - 1), aad, "authentication failed", true},
		{"truncated", "k1", sealed[:len(sealed)-1], aad, "authentication failed", true},
		{"too short", "k1", sealed[:10], aad, "too short", true},
		{"empty", "k1", nil, aad, "too short", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Open(tt.keyID, tt.sealed, tt.aad)
			if err == nil {
				t.Fatalf("Open = %q, nil; want error", got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open error = %q, want it to contain %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrOpen) != tt.isOpen {
				t.Errorf("errors.Is(%v, ErrOpen) = %v, want %v", err, !tt.isOpen, tt.isOpen)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	old := mustNew(t, map[string][]byte{"2024": key(1)}, "2024")
	aad := []byte("session:s1")
	oldID, oldSealed, err := old.Seal([]byte("sealed under old"), aad)
	if err != nil {
		t.Fatal(err)
	}

	rotated := mustNew(t, map[string][]byte{"2024": key(1), "2025": key(2)}, "2025")
	if got := rotated.CurrentKeyID(); got != "2025" {
		t.Fatalf("CurrentKeyID = %q, want 2025", got)
	}
	got, err := rotated.Open(oldID, oldSealed, aad)
	if err != nil || string(got) != "sealed under old" {
		t.Fatalf("Open(old) after rotation = %q, %v; want the plaintext", got, err)
	}
	newID, newSealed, err := rotated.Seal([]byte("sealed under new"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if newID != "2025" {
		t.Errorf("Seal after rotation used key %q, want 2025", newID)
	}
	// The old binary, without the new key, names the missing key.
	if _, err := old.Open(newID, newSealed, aad); err == nil || !strings.Contains(err.Error(), `unknown key id "2025"`) {
		t.Errorf("old.Open(new) = %v, want unknown key id error", err)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = byte(i*7 + 0xf0) // exercises '+', '/', '-', '_' in base64
	}
	tests := []struct {
		name    string
		text    string
		wantErr string
	}{
		{"hex lower", hex.EncodeToString(k), ""},
		{"hex upper", strings.ToUpper(hex.EncodeToString(k)), ""},
		{"std padded", base64.StdEncoding.EncodeToString(k), ""},
		{"std raw", base64.RawStdEncoding.EncodeToString(k), ""},
		{"url padded", base64.URLEncoding.EncodeToString(k), ""},
		{"url raw", base64.RawURLEncoding.EncodeToString(k), ""},
		{"trailing newline", base64.StdEncoding.EncodeToString(k) + "\n", ""},
		{"empty", "", "empty key"},
		{"blank", " \n", "empty key"},
		{"16 bytes base64", base64.StdEncoding.EncodeToString(k[:16]), "16 bytes, want 32"},
		{"62 hex", hex.EncodeToString(k)[:62], "46 bytes, want 32 (or 64 hex digits)"},
		{"64 non-hex", strings.Repeat("g", 64), "48 bytes, want 32"},
		{"garbage", "not a key!", "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKey = %x, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey = %v", err)
			}
			if !bytes.Equal(got, k) {
				t.Errorf("ParseKey = %x, want %x", got, k)
			}
		})
	}
}

func TestParseKeyErrorHidesKey(t *testing.T) {
	t.Parallel()
	secret := "c2VjcmV0LWtleS1tYXRlcmlhbA" // base64 of 19 bytes
	_, err := ParseKey(secret)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("ParseKey error = %v; want an error that does not echo the key", err)
	}
}

func BenchmarkSeal(b *testing.B) {
	s, _ := New(map[string][]byte{"k": key(1)}, "k")
	plain, aad := bytes.Repeat([]byte("t"), 1024), []byte("grant:g:access")
	b.ReportAllocs()
	for b.Loop() {
		s.Seal(plain, aad)
	}
}
