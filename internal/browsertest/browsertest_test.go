package browsertest

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"
)

func TestForeign(t *testing.T) {
	in := []string{
		"http://127.0.0.1:8080/mail/INBOX",
		"ws://127.0.0.1:1/x",
		"data:text/html,<p>x",
		"about:blank",
		"https://tracker.example/open.gif",
		"http://localhost/", // only 127.0.0.1 counts as home: the harness listens there
		"blob:http://127.0.0.1/abc",
		"%zz",
	}
	got := Foreign(in)
	want := []string{"https://tracker.example/open.gif", "http://localhost/", "blob:http://127.0.0.1/abc", "%zz"}
	if !slices.Equal(got, want) {
		t.Errorf("Foreign = %q, want %q", got, want)
	}
}

func TestProxyRecords(t *testing.T) {
	rec := &Recorder{}
	proxy := StartProxy(t, rec)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy})}}
	for _, u := range []string{"http://tracker.example/open.gif", "http://clients2.google.com/x"} {
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatalf("GET %s through the proxy: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s through the proxy = %d, want 403", u, resp.StatusCode)
		}
	}
	if _, proxied, _ := rec.Snapshot(); !slices.Equal(proxied, []string{"tracker.example"}) {
		t.Errorf("proxied = %q, want only tracker.example (Chromium's own services are ignored)", proxied)
	}
	rec.Reset()
	if _, proxied, _ := rec.Snapshot(); len(proxied) != 0 {
		t.Errorf("after Reset, proxied = %q", proxied)
	}
}
