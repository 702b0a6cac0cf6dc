// Package e2e holds Postern's end-to-end suite against real peers: Ory Hydra
// as the OIDC provider (standing in for Authelia), Dovecot IMAP and
// submission with an oauth2 passdb, and Postfix (standing in for Stalwart).
// The tests build and run the real `postern serve` with a configuration file
// written the way a production user would.
//
// The tests are behind the build tag e2e, so `go test ./...` never needs the
// peers. To run them (as root, Debian 12):
//
//	scripts/testbed-up            # installs, builds Hydra once, starts everything on 127.0.0.1
//	go test -tags e2e ./e2e/      # skips with a message when $TB/env is missing
//	scripts/testbed-down
//
// TB (default /var/tmp/postern-testbed) says where the testbed lives.
package e2e
