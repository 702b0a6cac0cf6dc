//go:build nodemo

package main

import (
	"context"
	"errors"
	"io"
)

// The container image is built with -tags nodemo: the demo's in-process IdP and mail server (fosite and its
// dependencies) have no place in a production binary.
func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New("this build of postern has no demo (built with -tags nodemo); run `go run ./cmd/postern demo` from the source tree")
}
