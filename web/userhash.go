package web

import (
	"crypto/sha256"
	"encoding/hex"
)

// userHash identifies a user in logs by a stable hash of (issuer, subject), so that logs can be correlated without
// carrying addresses.
func userHash(issuer, subject string) string {
	sum := sha256.Sum256([]byte(issuer + "\x00" + subject))
	return hex.EncodeToString(sum[:6])
}

// userKey identifies a user (not a grant: every sign-in makes a new grant) for the per-user bounds on shared
// resources: upload stash, live-update streams. It is the whole hash, so that two users cannot share a bound.
func userKey(issuer, subject string) string {
	sum := sha256.Sum256([]byte(issuer + "\x00" + subject))
	return hex.EncodeToString(sum[:])
}
