package main

import (
	"html/template"
	"net/http"
	"sync/atomic"
)

// frontDoor is the public listener's handler from the first second on. Until the app is ready — Postern, Authelia and
// Stalwart usually start together, and discovery waits for the IdP — it answers /healthz with 200 (the process is
// alive), /readyz with 503, and every page with a friendly 503 that reloads itself, instead of leaving the reverse
// proxy to show a connection error. open swaps in the real handler.
type frontDoor struct {
	app    atomic.Pointer[http.Handler]
	issuer string
}

func (d *frontDoor) open(h http.Handler) { d.app.Store(&h) }

var startingPage = template.Must(template.New("starting").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>Starting · Postern</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">
<h1>Postern is starting</h1>
<p id="starting">It is waiting for your identity provider ({{.}}) to answer. This page reloads by itself; nothing is lost.</p>
</body></html>
`))

func (d *frontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := d.app.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	switch r.URL.Path {
	case "/healthz":
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	case "/readyz":
		hd.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"ready":false,"checks":{"idp":"waiting for discovery"}}` + "\n"))
	default:
		hd.Set("Content-Type", "text/html; charset=utf-8")
		hd.Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = startingPage.Execute(w, d.issuer)
	}
}
