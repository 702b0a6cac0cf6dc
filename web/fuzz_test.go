package web

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzSafeReturnTo checks that whatever return_to a client sends, the redirect target stays on Postern's origin.
// Seeds: the open-redirect corpus (testdata/openredirects.txt) and testdata/fuzz/FuzzSafeReturnTo.
// Run: go test -fuzz=FuzzSafeReturnTo ./web/
func FuzzSafeReturnTo(f *testing.F) {
	if b, err := os.ReadFile("testdata/openredirects.txt"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
				f.Add(line)
			}
		}
	}
	for _, s := range []string{"/mail/INBOX", "/mail/INBOX?q=a&b=c", "/session#x", "/%2F%2Fevil", "/\t/evil", "/mail/\u202eevil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://mail.example.test/mail/INBOX")
	f.Fuzz(func(t *testing.T, in string) {
		got := safeReturnTo(in)
		if got != defaultReturnTo && got != in {
			t.Fatalf("safeReturnTo(%q) = %q: neither the input nor the default", in, got)
		}
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\") || hasControl(got) {
			t.Fatalf("safeReturnTo(%q) = %q: not a plain local path", in, got)
		}
		// As a browser would resolve the Location header: the origin must not change.
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatalf("safeReturnTo(%q) = %q does not parse: %v", in, got, err)
		}
		if u := base.ResolveReference(ref); u.Scheme != base.Scheme || u.Host != base.Host {
			t.Fatalf("safeReturnTo(%q) = %q leaves the origin: %s", in, got, u)
		}
		if strings.HasPrefix(got, "/login") || strings.HasPrefix(got, CallbackPath) || strings.HasPrefix(got, "/logout") {
			t.Fatalf("safeReturnTo(%q) = %q loops through sign-in", in, got)
		}
	})
}

// FuzzComposeForm feeds arbitrary multipart bodies to the compose form parser and checks its bounds: never more
// than maxFormFiles files or limit bytes, every file named with a plain name, and no panic.
// Seeds: testdata/fuzz/FuzzComposeForm. Run: go test -fuzz=FuzzComposeForm ./web/
func FuzzComposeForm(f *testing.F) {
	f.Add("--x\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nbob@example.test\r\n--x\r\nContent-Disposition: form-data; name=\"attach\"; filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--x--\r\n", "x")
	f.Add("--x\r\nContent-Disposition: form-data; name=\"attach\"; filename*=utf-8''%E2%80%AEfdp.exe\r\n\r\nMZ\r\n--x--\r\n", "x")
	f.Add("--x\r\nContent-Disposition: form-data; name=\"attach\"; filename=\"C:\\\\fakepath\\\\..\\\\x.txt\"\r\n\r\n\r\n--x--\r\n", "x")
	f.Add("to=bob%40example.test&subject=hi", "")
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, body, boundary string) {
		r := httptest.NewRequest(http.MethodPost, "/send", strings.NewReader(body))
		if boundary == "" {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			r.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		}
		_, files, _ := readComposeForm(httptest.NewRecorder(), r, limit)
		if len(files) > maxFormFiles {
			t.Fatalf("%d files, over maxFormFiles", len(files))
		}
		var total int
		for _, a := range files {
			total += len(a.Data)
			if a.Filename == "" || strings.ContainsAny(a.Filename, "/\\") || hasControl(a.Filename) || !utf8.ValidString(a.Filename) || len(a.Filename) > 200 {
				t.Fatalf("file name %q is not a plain name", a.Filename)
			}
			if a.ContentType == "" {
				t.Fatalf("file %q has no content type", a.Filename)
			}
		}
		if total > limit {
			t.Fatalf("%d bytes of files read with a limit of %d", total, limit)
		}
	})
}
