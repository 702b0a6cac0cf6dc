package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/bridge"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/devices"
	"github.com/postern/postern/internal/metrics"
	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/mail"
	"github.com/postern/postern/web"
)

// app is one running Postern: main wires concrete types here and nowhere else.
type app struct {
	cfg     *config.Config
	log     *slog.Logger
	store   appStore
	auth    *auth.Provider
	keeper  *auth.Keeper
	pool    *mail.Pool
	smtp    mail.Server
	web     *web.Server
	metrics *metrics.Metrics
	// devices, bridge and bridgeLn are set when a bridge listener is configured (bridge.go).
	devices  *devices.Service
	bridge   *bridge.Server
	bridgeLn *bridgeListeners
}

// newLogger builds the slog logger the config asks for.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newApp opens the store, discovers the IdP and wires every layer. hc, when non-nil, is the HTTP client for the IdP
// (the demo passes one); otherwise one is built from the config. banner, if not empty, is shown on every page (the
// demo says where mail to strangers goes).
// idpIdleConns is how many idle connections to the IdP the HTTP client keeps (http.Transport.MaxIdleConnsPerHost).
const idpIdleConns = 32

func newApp(ctx context.Context, cfg *config.Config, logger *slog.Logger, hc *http.Client, banner string) (*app, error) {
	a := &app{cfg: cfg, log: logger}
	if cfg.Bridge.Enabled() {
		// First, before the store and the wait for the IdP: a port in use is reported at once, naming its key.
		bl, err := openBridgeListeners(cfg.Bridge)
		if err != nil {
			return nil, err
		}
		a.bridgeLn = bl
	}
	ok := false
	defer func() {
		if !ok && a.bridgeLn != nil {
			a.bridgeLn.close()
		}
	}()
	keys, current, err := cfg.SealKeys()
	if err != nil {
		return nil, fmt.Errorf("storage keys: %w", err)
	}
	sealer, err := seal.New(keys, current)
	if err != nil {
		return nil, err
	}
	a.store, err = openStore(ctx, cfg.Storage, sealer)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if !ok {
			a.store.Close()
		}
	}()

	if hc == nil {
		tc, err := config.ClientTLS(cfg.OIDC.CAFile, "")
		if err != nil {
			return nil, fmt.Errorf("oidc.ca_file: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		// Every call goes to the one IdP host: concurrent sign-ins (code exchange, userinfo) and refreshes would
		// otherwise keep only the default 2 idle connections and open, with a TLS handshake each, a new one for
		// nearly every call beyond them.
		tr.MaxIdleConnsPerHost = idpIdleConns
		hc = &http.Client{Transport: tr, Timeout: cfg.OIDC.HTTPTimeout}
	}
	public, err := url.Parse(cfg.Server.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("server.public_url: %w", err)
	}
	a.auth, err = discover(ctx, auth.Config{
		Issuer:       cfg.OIDC.Issuer,
		ClientID:     cfg.OIDC.ClientID,
		ClientSecret: cfg.OIDC.ClientSecret,
		RedirectURL:  web.RedirectURL(public),
		Scopes:       cfg.OIDC.Scopes,
		// Short for what may be abandoned, long for token calls: a refresh abandoned early may still commit.
		Timeout:          cfg.OIDC.HTTPTimeout,
		TokenTimeout:     cfg.OIDC.TokenTimeout,
		IntrospectionURL: cfg.OIDC.IntrospectionURL,
		Audience:         cfg.OIDC.Audience,
		AccessTokenType:  cfg.OIDC.AccessTokenType,
	}, hc, logger)
	if err != nil {
		return nil, err
	}
	a.keeper = auth.NewKeeper(a.auth, a.store, auth.KeeperOptions{
		RefreshBeforeExpiry:  cfg.Tokens.RefreshBeforeExpiry,
		RefreshTokenLifetime: cfg.Tokens.RefreshTokenLifetime,
		IdleTimeout:          cfg.Session.IdleTimeout,
		Lifetime:             cfg.Session.Lifetime,
		Concurrency:          cfg.Tokens.RefreshConcurrency,
		MaxPerSecond:         cfg.Tokens.MaxRefreshesPerSecond,
		Limiter:              sharedLimiter(a.store, cfg.Tokens.MaxRefreshesPerSecond),
		TokenCallTimeout:     cfg.OIDC.TokenTimeout,
		Owner:                leaseOwner(),
		// A grant the keeper ends (signed out, retired beyond the per-user cap, expired, refused by the IdP)
		// keeps no mail connection here; other instances hear of it through the database (store.go).
		// A device grant that ends (revoked, refused by the IdP, expired) closes that device's bridge connections,
		// which would otherwise stay authenticated upstream.
		OnEnded: func(id string) {
			if a.pool != nil {
				a.pool.CloseKey(id)
			}
			if a.bridge != nil {
				a.bridge.CloseGrant(id)
			}
		},
		Logger: logger,
	})

	imapSrv, err := mailServer(cfg.IMAP.Host, cfg.IMAP.Port, cfg.IMAP.TLS, cfg.IMAP.CAFile, cfg.IMAP.SASL)
	if err != nil {
		return nil, fmt.Errorf("imap.ca_file: %w", err)
	}
	a.smtp, err = mailServer(cfg.SMTP.Host, cfg.SMTP.Port, cfg.SMTP.TLS, cfg.SMTP.CAFile, cfg.SMTP.SASL)
	if err != nil {
		return nil, fmt.Errorf("smtp.ca_file: %w", err)
	}
	a.pool = mail.NewPool(imapSrv, mail.PoolOptions{
		MaxPerUser:  cfg.IMAP.Pool.MaxPerUser,
		MaxTotal:    cfg.IMAP.Pool.MaxTotal,
		IdleTimeout: cfg.IMAP.Pool.IdleTimeout,
		Logger:      logger,
	})

	var devicesOn web.Devices
	var closer web.DeviceCloser
	var wb web.Bridge
	if a.bridgeLn != nil {
		a.devices = devices.New(a.store, &devices.Options{MaxPerUser: cfg.Bridge.MaxDevicesPerUser, Logger: logger})
		a.bridge, err = bridge.New(bridge.Options{
			IMAP:              imapSrv,
			Submission:        a.smtp,
			Auth:              deviceAuth{devices: a.devices, tokens: a.keeper},
			Recorder:          a.devices,
			PublicURL:         cfg.Server.PublicURL,
			CertFile:          cfg.Bridge.CertFile,
			KeyFile:           cfg.Bridge.KeyFile,
			MaxConns:          cfg.Bridge.MaxConnections,
			MaxConnsPerDevice: cfg.Bridge.MaxConnectionsPerDevice,
			PreLoginTimeout:   cfg.Bridge.PreloginTimeout,
			FailureDelay:      cfg.Bridge.FailureDelay,
			Logger:            logger.With(slog.String("component", "bridge")),
		})
		if err != nil {
			return nil, fmt.Errorf("bridge.cert_file: %w", err)
		}
		// Set only here: a nil *devices.Service in the interface would read as "enabled".
		devicesOn, closer, wb = a.devices, a.bridge, webBridge(cfg.Bridge, a.bridgeLn)
	}

	src := metrics.Sources{Keeper: a.keeper.Metrics, Pool: a.pool.Stats, Grants: a.store.CountGrantsByState, Version: version}
	if pg, ok := a.store.(*store.Postgres); ok {
		src.DB = pg.PoolStats
	}
	a.metrics = metrics.New(src)
	issuer, _ := url.Parse(cfg.OIDC.Issuer)
	a.web, err = web.New(web.Config{
		Banner:        banner,
		PublicURL:     public,
		IssuerOrigin:  issuer.Scheme + "://" + issuer.Host,
		CookieName:    cfg.Session.CookieName,
		SessionSecret: []byte(cfg.Session.Secret),
		IdleTimeout:   cfg.Session.IdleTimeout,
		Lifetime:      cfg.Session.Lifetime,
		PageSize:      cfg.Web.PageSize,
		WarmOnSignIn:  true,
		MaxUpload:     int64(cfg.Web.MaxUploadMB) << 20,
		Logger:        logger,
		Version:       version,
		Sender:        web.SMTPSender{Server: a.smtp},
		// The metrics count what web reports: requests by route, sign-ins, submissions.
		Observer: a.metrics,

		BrowserSessionCookie: cfg.Session.BrowserSessionCookie,
		TrustedProxies:       trustedProxies(cfg.Server.TrustedProxies),

		Devices:      devicesOn,
		Bridge:       wb,
		DeviceCloser: closer,
		Settings:     a.store,
	}, a.auth, a.keeper, a.pool, a.store)
	if err != nil {
		return nil, err
	}
	a.web.SetReadiness(map[string]web.Checker{
		"store": web.CheckFunc(a.store.Ping),
		// The discovery document, through the Provider's client; cached so that frequent probes cost the IdP one
		// request per 10 s.
		"idp": web.CacheCheck(web.CheckFunc(a.auth.Probe), 10*time.Second),
		// Cached like discovery, so that probing /readyz does not open a connection to the mail server each time.
		"imap": web.CacheCheck(web.IMAPCheck(imapSrv), 10*time.Second),
	})
	ok = true
	return a, nil
}

func mailServer(host string, port int, tlsMode, caFile, sasl string) (mail.Server, error) {
	tc, err := config.ClientTLS(caFile, host)
	if err != nil {
		return mail.Server{}, err
	}
	return mail.Server{
		Host:        host,
		Port:        port,
		TLS:         mail.TLSMode(tlsMode),
		TLSConfig:   tc,
		Mechanism:   mail.Mechanism(sasl),
		DialTimeout: 15 * time.Second,
	}, nil
}

func dirOf(p string) string {
	i := strings.LastIndexAny(p, `/\`)
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// serve runs the HTTP server, the background refresher and the janitors until ctx is done, then shuts down in order:
// stop accepting and drain requests, stop the refresher (in-flight refreshes are persisted first), log out pooled IMAP
// connections, close the store.
func (a *app) serve(ctx context.Context, srv *http.Server, errc <-chan error) error {
	// Live-update streams (SSE) stay open until the client leaves; without this Shutdown would wait for them.
	srv.RegisterOnShutdown(a.web.CloseStreams)
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := a.keeper.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error("refresher stopped", slog.Any("err", err))
		}
	}()
	go func() {
		defer wg.Done()
		a.janitor(bg)
	}()
	if w, ok := a.store.(endedGrantWatcher); ok {
		wg.Go(func() { a.watchEndedGrants(bg, w) })
	}

	if a.cfg.Server.MetricsListen != "" {
		// Metrics get a listener of their own so the public one never exposes them.
		mln, err := net.Listen("tcp", a.cfg.Server.MetricsListen)
		if err != nil {
			stopBG()
			wg.Wait()
			if a.bridge != nil {
				a.bridge.Close()
				a.bridgeLn.close()
			}
			return fmt.Errorf("server.metrics_listen: %w", err)
		}
		wg.Go(func() {
			if err := a.metrics.Serve(bg, mln, a.log); err != nil {
				a.log.Error("metrics server", slog.Any("err", err))
			}
		})
	}
	if a.bridge != nil {
		a.serveBridge(bg, wg.Go)
	}
	a.log.Info("postern ready", slog.String("public_url", a.cfg.Server.PublicURL), slog.String("version", version))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		a.log.Warn("http shutdown", slog.Any("err", err))
	}
	if a.bridge != nil {
		// Mail clients reconnect on their own; their spliced sessions end here, before the refresher stops. The
		// listeners are closed here too: they are ours, and one not yet being served when Close ran is not the
		// bridge's to close.
		a.bridge.Close()
		a.bridgeLn.close()
	}
	stopBG()
	wg.Wait()
	a.pool.Close()
	if err := a.store.Close(); err != nil {
		a.log.Warn("close store", slog.Any("err", err))
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// handler is the app's public HTTP handler; the web server reports each request to the metrics itself.
func (a *app) handler() http.Handler { return a.web }

// janitor closes idle IMAP connections (well before the server's 30-minute autologout) and deletes expired sessions.
// Grants are the keeper's: its Run also deletes those that ended long ago.
func (a *app) janitor(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.pool.Reap(now)
			if n, err := a.store.DeleteExpiredSessions(ctx, now); err != nil {
				a.log.Warn("delete expired sessions", slog.Any("err", err))
			} else if n > 0 {
				a.log.Debug("expired sessions deleted", slog.Int("count", n))
			}
		}
	}
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	path := configPath(fs, getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	for _, w := range cfg.Placeholders() {
		logger.Warn("placeholder secret in the configuration", slog.String("key", w.Key), slog.String("problem", w.Msg))
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	return listenAndServe(ctx, ln, cfg, logger, nil, "", nil)
}

// listenAndServe serves ln from the start — a "starting" page while newApp waits for the IdP — then the app, until
// ctx is done. hc is passed to newApp; ready, if set, is called with the app once it serves the web (the bridge's
// listeners are bound; it accepts right after); an error from ready stops the app.
func listenAndServe(ctx context.Context, ln net.Listener, cfg *config.Config, logger *slog.Logger, hc *http.Client, banner string, ready func(*app) error) error {
	door := &frontDoor{issuer: cfg.OIDC.Issuer}
	srv := &http.Server{
		Handler:  door,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Header, body and idle timeouts; the compose form and long responses adjust theirs per request (web).
	web.ConfigureTimeouts(srv)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("postern listening", slog.String("addr", ln.Addr().String()))
	a, err := newApp(ctx, cfg, logger, hc, banner)
	if err != nil {
		srv.Close()
		if ctx.Err() != nil {
			// Stopped (SIGTERM) while still starting, e.g. waiting for the IdP: a clean stop, not a failure.
			logger.Info("stopped before the identity provider answered", slog.Any("err", err))
			return nil
		}
		return err
	}
	door.open(a.handler())
	if ready != nil {
		if err := ready(a); err != nil {
			rctx, cancel := context.WithCancel(ctx)
			cancel()
			// Shut down in order as a signal would, then report ready's error.
			_ = a.serve(rctx, srv, errc)
			if ctx.Err() != nil {
				// Stopped (SIGTERM) while ready was still at work: a clean stop, as while waiting for the IdP.
				logger.Info("stopped while starting", slog.Any("err", err))
				return nil
			}
			return err
		}
	}
	return a.serve(ctx, srv, errc)
}

// trustedProxies parses server.trusted_proxies; Validate has refused any entry that does not parse.
func trustedProxies(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := config.ParseTrustedProxy(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// discover runs OIDC discovery, waiting for the IdP if it is not up yet: Postern, Authelia and Stalwart usually start
// together, and a start-up race must not need a human to restart Postern. It gives up only when ctx is done.
func discover(ctx context.Context, cfg auth.Config, hc *http.Client, logger *slog.Logger) (*auth.Provider, error) {
	wait := time.Second
	for {
		p, err := auth.New(ctx, cfg, hc)
		if err == nil {
			return p, nil
		}
		logger.Warn("identity provider not ready; retrying", slog.String("issuer", cfg.Issuer), slog.Duration("retry_in", wait), slog.Any("err", err))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("identity provider %s: %w", cfg.Issuer, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}
