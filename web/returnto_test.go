package web

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

func TestSafeReturnToRefusesOpenRedirects(t *testing.T) {
	f, err := os.Open("testdata/openredirects.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		if got := safeReturnTo(line); got != defaultReturnTo {
			t.Errorf("safeReturnTo(%q) = %q, want %q", line, got, defaultReturnTo)
		}
	}
	if n < 25 {
		t.Fatalf("corpus has %d entries, want at least 25", n)
	}
}

func TestSafeReturnToKeepsLocalPaths(t *testing.T) {
	for _, p := range []string{
		"/mail/INBOX",
		"/mail/Projects/2026",
		"/mail/Sent%20Items",
		"/session",
		"/mail/INBOX?page=2",
	} {
		t.Run(p, func(t *testing.T) {
			if got := safeReturnTo(p); got != p {
				t.Errorf("safeReturnTo(%q) = %q, want it unchanged", p, got)
			}
		})
	}
}
