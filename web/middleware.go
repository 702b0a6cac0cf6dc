package web

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"
)

type ctxKey int

const (
	ctxRequestID ctxKey = iota
)

// requestID returns the id that every log line of this request carries.
func requestID(r *http.Request) string {
	id, _ := r.Context().Value(ctxRequestID).(string)
	return id
}

func (s *Server) log(r *http.Request) *slog.Logger {
	return s.logger.With(slog.String("request_id", requestID(r)))
}

// statusRecorder remembers the status for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withRequestLog gives the request an id and logs one line when it ends. It logs the path but never the query string:
// the callback's query carries the authorization code and state.
func (s *Server) withRequestLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		r = r.WithContext(context.WithValue(r.Context(), ctxRequestID, id))
		rec := &statusRecorder{ResponseWriter: w}
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				s.logger.Error("panic", slog.String("request_id", id), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
				if rec.status == 0 {
					http.Error(rec, "internal error", http.StatusInternalServerError)
				}
			}
			s.logger.Info("http request", slog.String("request_id", id), slog.String("method", r.Method),
				slog.String("path", r.URL.Path), slog.Int("status", rec.status), slog.String("client_ip", s.clientIP(r)),
				slog.Duration("duration", time.Since(start)))
			s.obs.ObserveRequest(s.RoutePattern(r), cmp.Or(rec.status, http.StatusOK), time.Since(start))
		}()
		next.ServeHTTP(rec, r)
	})
}

// clientIP is the address of the client for the access log: the connection's peer, or, when the peer is a trusted
// proxy (Config.TrustedProxies), the right-most X-Forwarded-For entry that is not itself a trusted proxy. Entries
// left of that one are whatever the client wrote and prove nothing; taking the right-most untrusted hop is the only
// reading a client cannot forge.
func (s *Server) clientIP(r *http.Request) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip := peer.Addr().Unmap()
	if !s.trusted(ip) {
		return ip.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a garbled entry: trust nothing further left
		}
		ip = h.Unmap()
		if !s.trusted(ip) {
			return ip.String()
		}
	}
	return ip.String()
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// withSecurityHeaders sets the headers every response carries. The CSP allows no inline script and no foreign
// origins except the IdP as a form target (the sign-in redirect chain); frame-ancestors 'none' stops click-jacking.
func (s *Server) withSecurityHeaders(next http.Handler) http.Handler {
	csp := "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
	if s.cfg.IssuerOrigin != "" {
		csp += " " + s.cfg.IssuerOrigin
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		// Another origin, even a sibling subdomain (same-site, so SameSite=Lax cookies go along), must not be able to
		// load any of Postern's responses as a subresource (a credentialed <img> or <script> of a part tells whether
		// a message exists and how large an image is). Postern's own pages load only same-origin resources, and
		// embedded images reach the message frame as data: URLs (message.go), so nothing legitimate is refused.
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		// A window that Postern opens, or that opens Postern, gets no handle on the other (tab-nabbing, XS-Leaks).
		// Cross-Origin-Embedder-Policy is not sent: it brings nothing to a site that embeds nothing cross-origin,
		// and require-corp would block the remote images a user chooses to show in the message frame (Safari has
		// no credentialless mode to soften it).
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if s.secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// Timeouts of the HTTP server (finding 4 of issue 10). A client that sends its headers or body slowly, or not at all
// (slowloris), must not hold a connection and a goroutine for ever; a user on a slow link must still be able to send
// a message with attachments up to Config.MaxUpload. One global read timeout cannot do both, so:
//   - the server bounds headers (ReadHeaderTimeout) and headers plus body (ReadTimeout), enough for every form but
//     the compose form, and idle keep-alive connections (IdleTimeout);
//   - the compose form's routes extend the read deadline, for signed-in users only, to what MaxUpload needs at
//     minUploadRate (withUploadTime);
//   - once a request's body has been read, net/http clears the read deadline itself (its background read, which
//     watches for a closed connection), so ReadTimeout does not cut long responses such as the live-update stream
//     or a large download (TestStreamOutlivesReadTimeout). Slow readers of responses are bounded where responses
//     are written (the stream's keep-alives, the download's write deadlines), not here.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	IdleTimeout       = 2 * time.Minute
	// minUploadRate is the slowest upload the compose form waits for: 32 KiB/s, a poor mobile link (256 kbit/s).
	minUploadRate = 32 << 10
)

// ConfigureTimeouts sets the read and idle timeouts described above on srv; cmd and the tests serve through it.
func ConfigureTimeouts(srv *http.Server) {
	srv.ReadHeaderTimeout = ReadHeaderTimeout
	srv.ReadTimeout = ReadTimeout
	srv.IdleTimeout = IdleTimeout
}

// uploadTime is how long a compose form of Config.MaxUpload bytes may take to arrive.
func (s *Server) uploadTime() time.Duration {
	return max(ReadTimeout, ReadTimeout+time.Duration(s.cfg.MaxUpload/minUploadRate)*time.Second)
}

// withUploadTime gives a signed-in user's compose form uploadTime to arrive, counted from now.
func (s *Server) withUploadTime(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.uploadTime()))
		return h(w, r)
	}
}
