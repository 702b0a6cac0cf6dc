package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ClientTLS returns the TLS client configuration for a peer whose CA bundle is configured by an `*.ca_file` key:
// the system roots plus the PEM certificates at caFile (none: system roots only). `postern serve` and `postern
// doctor` both use it, so the doctor checks exactly what the server will trust.
func ClientTLS(caFile, serverName string) (*tls.Config, error) {
	c := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", caFile)
	}
	c.RootCAs = pool
	return c, nil
}
