package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/postern/postern/internal/config"
)

// runConfigCheck loads and validates a configuration and prints every problem with its YAML key, like Authelia's
// `config validate`.
func runConfigCheck(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configPath(fs, getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 1 && *path == getenvDefault(getenv) {
		// Also accept the file as a positional argument: `postern config check config.yml`.
		*path = fs.Arg(0)
	}
	cfg, err := loadConfig(*path, getenv, stderr)
	if err != nil {
		return err
	}
	// Placeholder secrets make a valid file, so the exit status stays 0 (scripts and CI that check the example
	// keep working); each is a warning on stderr and the summary line says how many.
	warnings := cfg.Placeholders()
	for _, w := range warnings {
		fmt.Fprintf(stderr, "%s: warning: %s: %s\n", *path, w.Key, w.Msg)
	}
	if len(warnings) > 0 {
		fmt.Fprintf(stdout, "%s: ok, with %d warning(s): replace the placeholder secrets before going live\n", *path, len(warnings))
		return nil
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return nil
}

func getenvDefault(getenv func(string) string) string {
	if p := getenv("POSTERN_CONFIG"); p != "" {
		return p
	}
	return "/etc/postern/config.yml"
}

// runHealthcheck is for container HEALTHCHECK lines in images without a shell or curl.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	u := fs.String("url", "http://127.0.0.1:8080/healthz", "health URL")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", *u, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// loadConfig loads and validates the configuration; on failure it prints every problem with its YAML key, like
// Authelia's `config validate`, and returns an error already reported to the user.
func loadConfig(path string, getenv func(string) string, stderr io.Writer) (*config.Config, error) {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		var ps *config.Problems
		if errors.As(err, &ps) {
			fmt.Fprintf(stderr, "%s: %d problem(s):\n", path, len(ps.List))
			for _, p := range ps.List {
				fmt.Fprintf(stderr, "  %s: %s\n", p.Key, p.Msg)
			}
			return nil, exitError{err}
		}
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return nil, exitError{err}
	}
	return cfg, nil
}
