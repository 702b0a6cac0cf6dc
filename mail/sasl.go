package mail

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
)

// SASLClient presents a bearer token with OAUTHBEARER (RFC 7628) or XOAUTH2.
// It implements sasl.Client and is used for both IMAP and SMTP.
//
// go-sasl's own OAUTHBEARER client is not used because it returns an error
// from Next instead of sending the RFC 7628 section 3.2.3 dummy response, which
// leaves the server in the middle of AUTHENTICATE; go-sasl has no XOAUTH2.
type SASLClient struct {
	mech    Mechanism
	address string
	token   string
	// challenge is the server's error challenge, if it sent one (Dovecot does,
	// Stalwart answers with a tagged NO straight away).
	challenge []byte
}

var _ sasl.Client = (*SASLClient)(nil)

// NewSASLClient returns a SASL client for mech presenting c. It refuses
// values that would break the framing of the initial response.
func NewSASLClient(mech Mechanism, c Credentials) (*SASLClient, error) {
	if _, err := mech.saslName(); err != nil {
		return nil, err
	}
	if c.Token == "" {
		return nil, errors.New("mail: empty access token")
	}
	// RFC 7628 section 3.1: the bearer token is b64token-like and a
	// key/value pair ends at %x01, so control characters cannot appear.
	if strings.ContainsFunc(c.Token, isCtlOrSpace) {
		return nil, errors.New("mail: access token contains control characters or spaces")
	}
	if strings.ContainsFunc(c.Address, isCtlOrSpace) {
		return nil, errors.New("mail: address contains control characters or spaces")
	}
	return &SASLClient{mech: mech, address: c.Address, token: c.Token}, nil
}

func isCtlOrSpace(r rune) bool { return r <= ' ' || r == 0x7f }

// Start returns the mechanism name and the initial response, which carries
// the token so that the exchange costs one round trip (SASL-IR, RFC 4959;
// RFC 4954 section 4).
func (c *SASLClient) Start() (string, []byte, error) {
	name, err := c.mech.saslName()
	if err != nil {
		return "", nil, err
	}
	switch name {
	case "XOAUTH2":
		return name, []byte("user=" + c.address + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
	default:
		// RFC 7628 section 3.1: gs2-header "n,a=<authzid>," then kvpairs.
		// The authzid is always sent: Dovecot 2.3 refuses OAUTHBEARER
		// without it; Stalwart ignores it.
		return name, []byte("n,a=" + gs2Escape(c.address) + ",\x01auth=Bearer " + c.token + "\x01\x01"), nil
	}
}

// gs2Escape encodes a saslname (RFC 5801 section 4): "=" as "=3D" and ","
// as "=2C".
func gs2Escape(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

// Next answers a server challenge. After the initial response the only
// challenge a server sends is an error (RFC 7628 section 3.2.2, a JSON object;
// Dovecot sends one for XOAUTH2 too). The client keeps it and answers with
// the single %x01 dummy response of RFC 7628 section 3.2.3, after which the
// server completes AUTHENTICATE with a failure. The response is never empty:
// go-imap v2 encodes an empty response as "=", which Dovecot rejects.
func (c *SASLClient) Next(challenge []byte) ([]byte, error) {
	if c.challenge != nil {
		return nil, errors.New("mail: unexpected second SASL challenge")
	}
	c.challenge = append([]byte{}, challenge...)
	return []byte{0x01}, nil
}

// ErrorStatus returns the "status" member of the server's JSON error
// challenge (e.g. "invalid_token", or "401" from Dovecot's XOAUTH2), or ""
// if the server sent none. It never contains the token.
func (c *SASLClient) ErrorStatus() string {
	if c.challenge == nil {
		return ""
	}
	var v struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(c.challenge, &v) != nil {
		return "unparsable error challenge"
	}
	return v.Status
}

// SentErrorChallenge reports whether the server sent an error challenge.
func (c *SASLClient) SentErrorChallenge() bool { return c.challenge != nil }
