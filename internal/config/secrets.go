package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// secretPair is a secret that may be given inline or in a file.
type secretPair struct {
	key   string // YAML key path of the value, e.g. "oidc.client_secret"
	value *string
	file  *string
}

func (c *Config) secretPairs() []secretPair {
	pairs := []secretPair{
		{"oidc.client_secret", &c.OIDC.ClientSecret, &c.OIDC.ClientSecretFile},
		{"session.secret", &c.Session.Secret, &c.Session.SecretFile},
		{"storage.encryption_key", &c.Storage.EncryptionKey, &c.Storage.EncryptionKeyFile},
		{"storage.dsn", &c.Storage.DSN, &c.Storage.DSNFile},
	}
	for i := range c.Storage.PreviousKeys {
		k := &c.Storage.PreviousKeys[i]
		pairs = append(pairs, secretPair{fmt.Sprintf("storage.previous_keys[%d].key", i), &k.Key, &k.KeyFile})
	}
	return pairs
}

// readSecrets fills each secret from its *_file. A secret given both inline
// and as a file is a problem, unless the environment set exactly one of the
// two: the environment is the later layer, so it replaces the file's choice
// (a container can set POSTERN_OIDC_CLIENT_SECRET_FILE over an example file).
func (c *Config) readSecrets(fromEnv map[string]bool, ps *Problems) {
	for _, p := range c.secretPairs() {
		fkey := p.key + "_file"
		switch envValue, envFile := fromEnv[p.key], fromEnv[fkey]; {
		case envValue && !envFile:
			*p.file = ""
		case envFile && !envValue:
			*p.value = ""
		}
		if *p.file == "" {
			continue
		}
		if *p.value != "" {
			ps.add(p.key, "set either %s or %s, not both", p.key, fkey)
			continue
		}
		data, err := os.ReadFile(*p.file)
		if err != nil {
			ps.add(fkey, "cannot read secret: %v", unwrapPath(err))
			continue
		}
		s := strings.TrimRight(string(data), "\r\n")
		if s == "" {
			ps.add(fkey, "file %s is empty", *p.file)
			continue
		}
		*p.value = s
	}
}

// unwrapPath keeps os errors readable: "open /x: no such file or directory".
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %w", pe.Op, pe.Path, pe.Err)
	}
	return err
}

// KeyLen is the length of an AES-256 key in bytes.
const KeyLen = 32

// DecodeKey decodes a 32-byte key written as 64 hex characters or as base64
// (standard or URL alphabet, padded or not), e.g. from `openssl rand
// -base64 32`. Surrounding white space is ignored. Errors never contain the key.
func DecodeKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, errors.New("config: empty key")
	}
	if len(text) == 2*KeyLen {
		if b, err := hex.DecodeString(text); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding,
	} {
		b, err := enc.DecodeString(text)
		if err != nil {
			continue
		}
		if len(b) != KeyLen {
			return nil, fmt.Errorf("config: key decodes to %d bytes, want %d (base64 of %d bytes is 44 characters)", len(b), KeyLen, KeyLen)
		}
		return b, nil
	}
	return nil, fmt.Errorf("config: key is neither base64 nor %d hex characters", 2*KeyLen)
}

// SealKeys returns the decoded storage keys by id and the id of the current
// key, as internal/seal.New takes them. Call it on a validated Config.
func (c *Config) SealKeys() (map[string][]byte, string, error) {
	keys := map[string][]byte{}
	cur, err := DecodeKey(c.Storage.EncryptionKey)
	if err != nil {
		return nil, "", fmt.Errorf("storage.encryption_key: %w", err)
	}
	keys[c.Storage.EncryptionKeyID] = cur
	for i, pk := range c.Storage.PreviousKeys {
		b, err := DecodeKey(pk.Key)
		if err != nil {
			return nil, "", fmt.Errorf("storage.previous_keys[%d].key: %w", i, err)
		}
		keys[pk.ID] = b
	}
	return keys, c.Storage.EncryptionKeyID, nil
}
