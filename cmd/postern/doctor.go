package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/doctor"
)

// runDoctor checks a configuration against the live identity provider and mail server and prints one line per
// check, with the exact fix under every failure. It exits 1 when any check fails.
//
//	postern doctor -config /etc/postern/config.yml [-token ACCESS_TOKEN | -token-file FILE]
func runDoctor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", stderr)
	path := configPath(fs, getenv)
	token := fs.String("token", "", "an access token of a real user: also check userinfo and log in to IMAP and SMTP with it")
	tokenFile := fs.String("token-file", "", "read the access token from this file instead (keeps it out of the process list)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each network step")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("doctor: -token-file: %w", err)
		}
		*token = strings.TrimSpace(string(b))
	}

	fmt.Fprintf(stdout, "postern doctor %s: %s\n", version, *path)
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		var ps *config.Problems
		if !errors.As(err, &ps) {
			return err
		}
		for _, p := range ps.List {
			printResult(stdout, doctor.Result{Name: "config", Status: doctor.Fail, Detail: p.Key + ": " + p.Msg,
				Fix: "Fix " + p.Key + " in " + *path + " (postern config check lists the same problems)."})
		}
		fmt.Fprintf(stdout, "\nThe configuration has %d problem(s); fix them first, then run the doctor again.\n", len(ps.List))
		return exitError{err}
	}
	printResult(stdout, doctor.Result{Name: "config", Status: doctor.Pass, Detail: "valid"})

	results := doctor.Run(ctx, cfg, doctor.Options{Token: *token, Timeout: *timeout})
	counts := map[doctor.Status]int{}
	for _, r := range results {
		printResult(stdout, r)
		counts[r.Status]++
	}
	fmt.Fprintf(stdout, "\n%d checks: %d ok, %d with warnings, %d failed, %d skipped\n",
		len(results)+1, counts[doctor.Pass]+1, counts[doctor.Warn], counts[doctor.Fail], counts[doctor.Skip])
	if doctor.Failed(results) {
		return exitError{errors.New("doctor: checks failed")}
	}
	return nil
}

// nameWidth aligns the details of every line.
const nameWidth = 15

// printResult prints "✓ name  detail" and, under a failure or warning, the fix, indented.
func printResult(w io.Writer, r doctor.Result) {
	fmt.Fprintf(w, "%s %-*s %s\n", r.Status, nameWidth, r.Name, r.Detail)
	if r.Fix == "" || r.Status == doctor.Pass || r.Status == doctor.Skip {
		return
	}
	pad := strings.Repeat(" ", nameWidth+3)
	lines := strings.Split(r.Fix, "\n")
	fmt.Fprintf(w, "%sfix: %s\n", pad, lines[0])
	for _, l := range lines[1:] {
		fmt.Fprintf(w, "%s     %s\n", pad, l)
	}
}
