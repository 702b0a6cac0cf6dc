// Package seal encrypts small secrets (OAuth tokens, session data) for storage
// at rest with AES-256-GCM.
//
// Every key has an id. A sealed value is stored next to the id of the key that
// sealed it, so keys can be rotated: add a new key, make it current, and values
// sealed under the old key still open until they are rewritten. Callers pass
// additional authenticated data (AAD) naming the row and column a value belongs
// to (for example "grant:<id>:refresh"), so a sealed blob copied into another
// row or column fails to open instead of silently decrypting.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length in bytes of every key: AES-256.
const KeySize = 32

// nonceSize is the standard GCM nonce length. Random 96-bit nonces are safe for
// far more seals than a self-hosted instance will ever make under one key
// (NIST SP 800-38D §8.3 bounds it at 2^32 invocations).
const nonceSize = 12

// ErrOpen is returned by Open when a sealed value fails authentication: it was
// tampered with, truncated, sealed under a different key with the same id, or
// bound to different AAD. The cause is deliberately not distinguished further;
// GCM cannot tell these apart.
var ErrOpen = errors.New("seal: message authentication failed")

// Sealer seals and opens values with a set of named keys. It is safe for
// concurrent use: cipher.AEAD values from crypto/cipher are stateless after
// construction.
type Sealer struct {
	aeads   map[string]cipher.AEAD
	current string
}

// New returns a Sealer over keys, each of which must be exactly 32 bytes.
// current names the key used by Seal and must be present in keys. Key ids must
// be non-empty because the empty id marks an unsealed (empty) value in storage.
// The key bytes are not retained beyond the AES key schedule.
func New(keys map[string][]byte, current string) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no keys")
	}
	if _, ok := keys[current]; !ok {
		return nil, fmt.Errorf("seal: current key id %q is not among the keys", current)
	}
	s := &Sealer{aeads: make(map[string]cipher.AEAD, len(keys)), current: current}
	for id, k := range keys {
		if id == "" {
			return nil, errors.New("seal: empty key id")
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("seal: key %q is %d bytes, want %d", id, len(k), KeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", id, err)
		}
		s.aeads[id] = aead
	}
	return s, nil
}

// CurrentKeyID returns the id of the key that Seal uses.
func (s *Sealer) CurrentKeyID() string { return s.current }

// Seal encrypts plaintext under the current key, binding it to aad. It returns
// the key id to store alongside the result, and sealed = nonce||ciphertext||tag.
func (s *Sealer) Seal(plaintext, aad []byte) (keyID string, sealed []byte, err error) {
	aead := s.aeads[s.current]
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return "", nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return s.current, aead.Seal(out, out[:nonceSize], plaintext, aad), nil
}

// Open decrypts a value sealed under keyID with the same aad. An unknown keyID
// is reported by name, because it almost always means a key was removed from
// the configuration while data sealed under it still exists. Any other failure
// returns an error wrapping ErrOpen.
func (s *Sealer) Open(keyID string, sealed, aad []byte) ([]byte, error) {
	aead, ok := s.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("seal: unknown key id %q", keyID)
	}
	if len(sealed) < nonceSize+aead.Overhead() {
		return nil, fmt.Errorf("%w: sealed value too short under key %q", ErrOpen, keyID)
	}
	plain, err := aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w under key %q", ErrOpen, keyID)
	}
	return plain, nil
}

// ParseKey decodes a 32-byte key from text as it appears in configuration: 64
// hexadecimal digits, or base64 in the standard or URL alphabet, with or
// without padding (the output of `openssl rand -base64 32` or `-hex 32`).
// Surrounding whitespace, such as the newline at the end of a key file, is
// ignored. Errors never include the key text.
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, errors.New("seal: empty key")
	}
	// Hex first: 64 hex digits are also valid base64 (decoding to 48 bytes),
	// so the length check alone would reject a perfectly good hex key.
	if len(text) == 2*KeySize {
		if k, err := hex.DecodeString(text); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		k, err := enc.DecodeString(text)
		if err != nil {
			continue
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("seal: key is base64 of %d bytes, want %d (or 64 hex digits)", len(k), KeySize)
		}
		return k, nil
	}
	return nil, errors.New("seal: key is neither 64 hex digits nor base64")
}
