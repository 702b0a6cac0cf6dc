package web

import (
	"net/http"
)

// routes lists every route on one screen. Login is required at registration (s.signedIn), not by path prefix.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", s.handle(s.handleHome))
	mux.Handle("GET /login", s.handle(s.handleLogin))
	mux.Handle("GET "+CallbackPath, s.handle(s.handleCallback))
	mux.Handle("POST /logout", s.handle(s.handleLogout))
	mux.Handle("GET /signed-out", s.handle(s.handleSignedOut))
	mux.Handle("GET /mail/{box...}", s.signedIn(s.handleMailbox))
	mux.Handle("GET /session", s.signedIn(s.handleSession))
	mux.Handle("GET /static/{file}", http.HandlerFunc(s.pages.serveStatic))
	mux.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	}))
	mux.Handle("/", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return &Error{Status: http.StatusNotFound, Msg: "There is no page at this address.", Retry: "/"}
	}))

	// Order, outermost first: the request log sees every response (including CSRF refusals); security headers apply
	// to every page; CrossOriginProtection refuses cross-site POSTs (CSRF) before any handler runs — only POST changes
	// state, GETs are safe by construction.
	var h http.Handler = mux
	h = http.NewCrossOriginProtection().Handler(h)
	h = s.withSecurityHeaders(h)
	h = s.withRequestLog(h)
	return h
}
