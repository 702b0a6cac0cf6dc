package devices

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// A device password is seven groups of five characters, e.g.
// "k7m2p-x9c4t-…": the first group is the device id (public: it lets a login
// find its one row by primary key instead of trying every hash), the other
// six are the secret. The alphabet is lowercase letters and digits without
// the look-alikes 0/o, 1/l/i, so a password read off a screen and typed on a
// phone survives: 31 symbols, log2(31) = 4.95 bits each, 30 secret symbols =
// 148 bits (≥ 128). Mail clients store it; people type it once.
const (
	alphabet     = "23456789abcdefghjkmnpqrstuvwxyz"
	groupLen     = 5
	idLen        = groupLen
	secretGroups = 6
	passwordLen  = idLen + secretGroups*groupLen // without separators
)

// argon2id parameters. Every device password is 148 random bits, so no
// amount of hashing makes guessing it harder in practice; the hash only has
// to make a stolen database useless for logging in, and to cost an online
// attacker something. OWASP's Password Storage Cheat Sheet lists equivalent
// argon2id settings; of those we take m=19 MiB, t=2, p=1 rather than m=46 MiB,
// t=1: on the 2 cores Postern is sized for, a burst of Thunderbird
// connections (it opens up to five at once) costs 5 × 19 MiB instead of
// 5 × 46 MiB, and p=1 keeps one login on one core so a burst does not starve
// the web server. maxHashing bounds concurrent hashes (and so their memory)
// further; the verification memo (memo.go) makes the burst pay once.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// errMalformedHash: a stored hash that is not an argon2id PHC string.
var errMalformedHash = errors.New("devices: malformed password hash")

// randomGroup returns n symbols of the alphabet drawn uniformly from
// crypto/rand (rejection sampling: bytes ≥ 248 = 8 × 31 are skipped, so no
// symbol is more likely than another).
func randomGroup(n int) string {
	out := make([]byte, 0, n)
	var b [32]byte
	for len(out) < n {
		rand.Read(b[:]) // never fails (Go ≥ 1.24)
		for _, c := range b {
			if c < 248 && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// newPassword returns a fresh password for device id, in groups.
func newPassword(id string) string {
	groups := []string{id}
	for range secretGroups {
		groups = append(groups, randomGroup(groupLen))
	}
	return strings.Join(groups, "-")
}

// normalize undoes what a person or a client may do to a password: upper
// case, and dropped or extra separators (dashes, spaces). It reports false
// for anything that cannot be a device password.
func normalize(password string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToLower(password) {
		switch {
		case r == '-' || r == ' ':
		case r < 128 && strings.IndexByte(alphabet, byte(r)) >= 0:
			b.WriteRune(r)
		default:
			return "", false
		}
		if b.Len() > passwordLen {
			return "", false
		}
	}
	if b.Len() != passwordLen {
		return "", false
	}
	return b.String(), true
}

// hashPassword returns the argon2id PHC string of a normalized password:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>, so the parameters are stored
// with the hash and can be raised later without breaking older devices.
func hashPassword(norm string) string {
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(norm), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key))
}

// checkPassword reports whether norm matches the PHC string phc, comparing
// in constant time. It always does the full argon2id work of phc's
// parameters, match or not.
func checkPassword(phc, norm string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errMalformedHash
	}
	var v int
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, errMalformedHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 {
		return false, errMalformedHash
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, errMalformedHash
	}
	got := argon2.IDKey([]byte(norm), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
