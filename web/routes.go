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
	// Settings (settings.go): the form, and the message page's "Always show remote content from this sender".
	mux.Handle("GET /settings", s.signedIn(s.handleSettings))
	mux.Handle("POST /settings", s.signedIn(s.handleSaveSettings))
	mux.Handle("POST /settings/remote-senders", s.signedIn(s.handleTrustSender))

	// Webmail (list, actions, compose, events): GET /mail/{box...} above lists and searches a folder. Every change
	// is a POST answered with 303 (CrossOriginProtection below refuses cross-site ones); the event stream has its
	// own gate that never redirects.
	mux.Handle("POST /act", s.signedIn(s.handleAct))
	mux.Handle("POST /undo", s.signedIn(s.handleUndo))
	mux.Handle("GET /folders", s.signedIn(s.handleFolders))
	mux.Handle("POST /folders", s.signedIn(s.handleFolderAction))
	mux.Handle("GET /compose", s.signedIn(s.handleCompose))
	mux.Handle("POST /send", s.signedIn(s.withUploadTime(s.handleSend)))
	mux.Handle("POST /drafts", s.signedIn(s.withUploadTime(s.handleSaveDraft)))
	mux.Handle("GET /events/{box...}", s.signedInStream(s.handleEvents))

	// Reading (message.go): the message page, its sandboxed HTML frame, one part, the source. {box} is one
	// path-escaped segment; the frame, part and raw routes set their own security headers (see message.go).
	mux.Handle("GET /msg/{box}/{uid}", s.signedIn(s.handleMessage))
	mux.Handle("GET /conv/{box}/{uid}", s.signedIn(s.handleConversation))
	mux.Handle("GET /msg/{box}/{uid}/html", s.signedIn(s.handleMessageHTML))
	mux.Handle("GET /msg/{box}/{uid}/part/{path}", s.signedIn(s.handlePart))
	mux.Handle("GET /msg/{box}/{uid}/raw", s.signedIn(s.handleRaw))
	mux.Handle("GET /msg/{box}/{uid}/newer", s.signedIn(s.handleNeighbour))
	mux.Handle("GET /msg/{box}/{uid}/older", s.signedIn(s.handleNeighbour))
	// Devices (devices.go, setup.go): mail clients through the bridge. The autoconfig documents are public, as
	// Thunderbird fetches them before any sign-in; they hold no secret.
	mux.Handle("GET /devices", s.signedIn(s.handleDevices))
	mux.Handle("POST /devices", s.signedIn(s.handleConnectDevice))
	mux.Handle("POST /devices/{id}/revoke", s.signedIn(s.handleRevokeDevice))
	mux.Handle("POST /devices/{id}/reconnect", s.signedIn(s.handleReconnectDevice))
	mux.Handle("POST /devices/{id}/mobileconfig", s.signedIn(s.handleMobileconfig))
	mux.Handle("GET /.well-known/autoconfig/mail/config-v1.1.xml", s.handle(s.handleAutoconfig))
	mux.Handle("GET /mail/config-v1.1.xml", s.handle(s.handleAutoconfig))
	mux.Handle("GET /static/{file}", http.HandlerFunc(s.pages.serveStatic))

	// Operations (health.go): liveness and readiness probes for the orchestrator; the mux is kept so that metrics
	// can label requests with their route pattern (RoutePattern).
	mux.Handle("GET /healthz", http.HandlerFunc(s.handleHealthz))
	mux.Handle("GET /readyz", http.HandlerFunc(s.handleReadyz))
	s.ops.mux = mux
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
