// Command postern is the Postern server: the OIDC client that signs users in with Authelia and reads and sends their
// mail on Stalwart with the access token.
//
//	postern serve -config /etc/postern/config.yml
//	postern demo                       # everything in one process on 127.0.0.1, no external service
//	postern config check -config FILE  # every problem at once, with its YAML key
//	postern doctor -config FILE        # live checks of Authelia and Stalwart, each failure with its fix
//	postern healthcheck -url URL       # for container HEALTHCHECK
//	postern version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		var ee exitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "postern:", err)
		}
		os.Exit(1)
	}
}

// exitError is an error that has already been reported to the user; main only sets the exit status.
type exitError struct{ error }

const usage = `usage: postern <command> [flags]

commands:
  serve          run the server (-config FILE, default /etc/postern/config.yml or $POSTERN_CONFIG)
  demo           run a self-contained demo on 127.0.0.1 (identity provider, mail server and Postern)
  config check   check a configuration file and list every problem (-config FILE)
  doctor         check the live set-up: IdP discovery, client auth, IMAP/SMTP TLS and SASL (-config FILE [-token T])
  healthcheck    exit 0 when the server at -url answers /healthz
  version        print the version
`

// run is main without globals, so that tests can call it with their own arguments, environment and outputs.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, "postern: no command given\n\n"+usage)
		return exitError{errors.New("no command")}
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], getenv, stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], getenv, stdout, stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			what := "postern config: missing subcommand (check)"
			if len(args) >= 2 {
				what = fmt.Sprintf("postern config: unknown subcommand %q (try: config check)", args[1])
			}
			fmt.Fprint(stderr, what+"\n\n"+usage)
			return exitError{errors.New("unknown config command")}
		}
		return runConfigCheck(args[2:], getenv, stdout, stderr)
	case "doctor":
		return runDoctor(ctx, args[1:], getenv, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "postern", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		err := fmt.Errorf("unknown command %q", args[0])
		fmt.Fprint(stderr, "postern: "+err.Error()+"\n\n"+usage)
		return exitError{err}
	}
}

func configPath(fs *flag.FlagSet, getenv func(string) string) *string {
	def := getenv("POSTERN_CONFIG")
	if def == "" {
		def = "/etc/postern/config.yml"
	}
	return fs.String("config", def, "configuration file")
}
