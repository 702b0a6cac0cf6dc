package bench

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

// TestMessagesParse: every kind of generated message is well-formed MIME with the structure its kind promises, so
// that both webmails are measured on mail they can show.
func TestMessagesParse(t *testing.T) {
	want := map[Kind]string{
		KindPlain: "text/plain", KindReply: "text/plain", KindHTML: "multipart/alternative",
		KindHTMLImage: "multipart/alternative", KindAttachment: "multipart/mixed",
	}
	seen := map[Kind]bool{}
	for i := 10; i < 40; i++ {
		raw := Message(i, "alice@example.test", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		r, err := gomail.CreateReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		kind := KindOf(i)
		seen[kind] = true
		ct, _, _ := r.Header.ContentType()
		if ct != want[kind] {
			t.Errorf("message %d (kind %d): Content-Type %s, want %s", i, kind, ct, want[kind])
		}
		subj, _ := r.Header.Subject()
		if (kind == KindReply) != strings.HasPrefix(subj, "Re: ") {
			t.Errorf("message %d (kind %d): subject %q", i, kind, subj)
		}
		parts, attachments := 0, 0
		for {
			p, err := r.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("message %d part %d: %v", i, parts, err)
			}
			// The inline image of an HTML message is a part with a Content-ID; only a declared attachment counts.
			if disp, _, _ := p.Header.(interface {
				ContentDisposition() (string, map[string]string, error)
			}).ContentDisposition(); disp == "attachment" {
				attachments++
			}
			if _, err := io.Copy(io.Discard, p.Body); err != nil {
				t.Fatalf("message %d part %d body: %v", i, parts, err)
			}
			parts++
		}
		if (kind == KindAttachment) != (attachments == 1) {
			t.Errorf("message %d (kind %d): %d attachments", i, kind, attachments)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("kinds seen %v, want all of %v", seen, want)
	}
}

// TestFillMaildir: n files in cur/, each named with its size (S=, which Dovecot trusts) and most of them \Seen.
func TestFillMaildir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	total, err := FillMaildir(dir, "alice@example.test", 60, 0)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "cur"))
	if err != nil || len(ents) != 60 {
		t.Fatalf("%d files, %v", len(ents), err)
	}
	var sum int64
	seen := 0
	for _, e := range ents {
		info, _ := e.Info()
		_, rest, _ := strings.Cut(e.Name(), ",S=")
		size, flags, _ := strings.Cut(rest, ":2,")
		if n, _ := strconv.ParseInt(size, 10, 64); n != info.Size() {
			t.Errorf("%s: S=%s but %d bytes", e.Name(), size, info.Size())
		}
		if strings.Contains(flags, "S") {
			seen++
		}
		sum += info.Size()
	}
	if sum != total {
		t.Errorf("FillMaildir says %d bytes, files hold %d", total, sum)
	}
	if seen == 0 || seen == 60 {
		t.Errorf("%d of 60 messages seen, want some but not all", seen)
	}
}

// TestWriteChartWithoutPoints: a run of scenarios the chart does not show (benchload -scenarios sign-in) writes no
// chart instead of panicking on a log axis without points.
func TestWriteChartWithoutPoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.svg")
	rs := []Result{{Webmail: "Postern", Scenario: "sign-in to first inbox page", Users: 1, P50: time.Second}}
	if err := WriteChart(path, rs, []string{"inbox page"}, []int{1, 10}); err != nil {
		t.Fatalf("WriteChart() = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("chart file: %v, want none written", err)
	}
}
