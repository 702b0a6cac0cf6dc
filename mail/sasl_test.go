package mail

import (
	"bytes"
	"testing"
)

func TestSASLClientStart(t *testing.T) {
	tests := []struct {
		name     string
		mech     Mechanism
		creds    Credentials
		wantMech string
		wantIR   string
	}{
		{"oauthbearer default", "", Credentials{"alice@example.test", "tok123"}, "OAUTHBEARER",
			"n,a=alice@example.test,\x01auth=Bearer tok123\x01\x01"},
		{"oauthbearer", MechOAuthBearer, Credentials{"alice@example.test", "tok123"}, "OAUTHBEARER",
			"n,a=alice@example.test,\x01auth=Bearer tok123\x01\x01"},
		{"oauthbearer escapes saslname", MechOAuthBearer, Credentials{"a,b=c@example.test", "t"}, "OAUTHBEARER",
			"n,a=a=2Cb=3Dc@example.test,\x01auth=Bearer t\x01\x01"},
		{"upper-case config", "OAUTHBEARER", Credentials{"alice@example.test", "tok123"}, "OAUTHBEARER",
			"n,a=alice@example.test,\x01auth=Bearer tok123\x01\x01"},
		{"xoauth2", MechXOAuth2, Credentials{"alice@example.test", "tok123"}, "XOAUTH2",
			"user=alice@example.test\x01auth=Bearer tok123\x01\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewSASLClient(tt.mech, tt.creds)
			if err != nil {
				t.Fatal(err)
			}
			mech, ir, err := c.Start()
			if err != nil {
				t.Fatal(err)
			}
			if mech != tt.wantMech || string(ir) != tt.wantIR {
				t.Errorf("Start() = %q, %q, want %q, %q", mech, ir, tt.wantMech, tt.wantIR)
			}
		})
	}
}

func TestNewSASLClientRejects(t *testing.T) {
	tests := []struct {
		name  string
		mech  Mechanism
		creds Credentials
	}{
		{"empty token", MechOAuthBearer, Credentials{"a@example.test", ""}},
		{"token with ctrl-a", MechOAuthBearer, Credentials{"a@example.test", "x\x01auth=Bearer y"}},
		{"token with space", MechXOAuth2, Credentials{"a@example.test", "x y"}},
		{"address with ctrl-a", MechXOAuth2, Credentials{"a@example.test\x01auth=Bearer z", "x"}},
		{"unknown mechanism", "plain", Credentials{"a@example.test", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSASLClient(tt.mech, tt.creds); err == nil {
				t.Errorf("NewSASLClient(%q, %q) succeeded, want an error", tt.mech, tt.creds.Address)
			}
		})
	}
}

func TestSASLClientNext(t *testing.T) {
	tests := []struct {
		name       string
		mech       Mechanism
		challenge  string
		wantStatus string
	}{
		{"oauthbearer rfc 7628 error", MechOAuthBearer, `{"status":"invalid_token","scope":"mail","openid-configuration":"https://idp/.well-known/openid-configuration"}`, "invalid_token"},
		{"xoauth2 dovecot error", MechXOAuth2, `{"status":"401","schemes":"bearer","scope":"mail"}`, "401"},
		{"garbage", MechOAuthBearer, `not json`, "unparsable error challenge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewSASLClient(tt.mech, Credentials{"a@example.test", "tok"})
			if err != nil {
				t.Fatal(err)
			}
			if c.SentErrorChallenge() || c.ErrorStatus() != "" {
				t.Fatal("fresh client reports an error challenge")
			}
			resp, err := c.Next([]byte(tt.challenge))
			if err != nil {
				t.Fatal(err)
			}
			// RFC 7628 section 3.2.3: the dummy response is exactly %x01.
			if !bytes.Equal(resp, []byte{0x01}) {
				t.Errorf("Next() = %q, want \\x01", resp)
			}
			if got := c.ErrorStatus(); got != tt.wantStatus {
				t.Errorf("ErrorStatus() = %q, want %q", got, tt.wantStatus)
			}
			if _, err := c.Next([]byte("again")); err == nil {
				t.Error("second Next() succeeded, want an error")
			}
		})
	}
}
