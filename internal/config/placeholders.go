package config

import "strings"

// Placeholders returns a warning for every secret still set to a value published in config.example.yml (the
// CHANGE-ME session secret and encryption key) or in Authelia's documentation (insecure_secret). Such a file is
// valid, so these are not Problems, but anyone can read those values: sessions could be forged and sealed tokens
// opened. `postern config check` and `postern serve` report them.
func (c *Config) Placeholders() []Problem {
	var out []Problem
	public := func(v string) bool {
		return strings.Contains(strings.ToUpper(v), "CHANGE-ME") || strings.Contains(strings.ToUpper(v), "CHANGEME")
	}
	if public(c.Session.Secret) {
		out = append(out, Problem{Key: "session.secret", Msg: "is the example's placeholder, which is public: anyone " +
			"could forge session cookies (generate one with: openssl rand -base64 48)"})
	}
	if c.OIDC.ClientSecret == "insecure_secret" || public(c.OIDC.ClientSecret) {
		out = append(out, Problem{Key: "oidc.client_secret", Msg: "is a published example value; use the secret you " +
			"generated for Authelia's client (authelia crypto hash generate pbkdf2 --random)"})
	}
	keyIsPublic := func(v string) bool {
		k, err := DecodeKey(v)
		return err == nil && public(string(k))
	}
	if keyIsPublic(c.Storage.EncryptionKey) {
		out = append(out, Problem{Key: "storage.encryption_key", Msg: "is the example's placeholder, which is public: " +
			"tokens sealed with it are readable by anyone with the database (generate one with: openssl rand -base64 32)"})
	}
	return out
}
