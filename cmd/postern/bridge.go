package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/postern/postern/bridge"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/devices"
	"github.com/postern/postern/mail"
	"github.com/postern/postern/web"
)

// deviceAuth is the bridge's Authenticator: device passwords are internal/devices', tokens the keeper's, through
// web's adapter (web.GrantTokens), so that the bridge and the webmail share one token mapping and mail.WithToken's
// retry rule.
type deviceAuth struct {
	devices *devices.Service
	tokens  web.Tokens
}

// Verify implements bridge.Authenticator. devices.Service.Verify has done the argon2id work whatever the outcome;
// its two refusals map onto the bridge's answers, anything else is a store failure ("try later").
func (d deviceAuth) Verify(ctx context.Context, username, password string, from netip.Addr) (bridge.Login, error) {
	l, err := d.devices.Verify(ctx, username, password, from)
	switch {
	case errors.Is(err, devices.ErrBadCredentials):
		return bridge.Login{}, bridge.ErrBadCredentials
	case errors.Is(err, devices.ErrSignInAgain):
		return bridge.Login{}, fmt.Errorf("%w (%w)", bridge.ErrSignInAgain, err)
	case err != nil:
		return bridge.Login{}, err
	}
	return bridge.Login{DeviceID: l.DeviceID, GrantID: l.GrantID, Address: l.Address}, nil
}

// Tokens implements bridge.Authenticator.
func (d deviceAuth) Tokens(grantID string) mail.TokenSource {
	return web.GrantTokens(d.tokens, grantID)
}

// bridgeListeners are the bridge's listeners, opened before anything waits for the IdP, so that a port in use is
// reported at once, naming its key. A nil listener is a listener not configured.
type bridgeListeners struct {
	imaps, imap, submissions, submission net.Listener
}

func openBridgeListeners(b config.BridgeConfig) (*bridgeListeners, error) {
	bl := &bridgeListeners{}
	for _, l := range []struct {
		key, addr string
		ln        *net.Listener
	}{
		{"bridge.imaps_listen", b.IMAPSListen, &bl.imaps},
		{"bridge.imap_listen", b.IMAPListen, &bl.imap},
		{"bridge.submissions_listen", b.SubmissionsListen, &bl.submissions},
		{"bridge.submission_listen", b.SubmissionListen, &bl.submission},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			bl.close()
			if errors.Is(err, syscall.EACCES) {
				return nil, fmt.Errorf("%s: %w (ports below 1024 need CAP_NET_BIND_SERVICE; see docs/deploy.md)", l.key, err)
			}
			return nil, fmt.Errorf("%s: %w", l.key, err)
		}
		*l.ln = ln
	}
	return bl, nil
}

func (bl *bridgeListeners) close() {
	for _, l := range []net.Listener{bl.imaps, bl.imap, bl.submissions, bl.submission} {
		if l != nil {
			l.Close()
		}
	}
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// webBridge is the bridge's public face for the Devices page: bridge.host and the ports clients type (the
// listeners' bound ports unless bridge.public_*_port says otherwise).
func webBridge(b config.BridgeConfig, bl *bridgeListeners) web.Bridge {
	ip, is, sp, ss := b.BridgePorts(addrOf(bl.imaps), addrOf(bl.imap), addrOf(bl.submissions), addrOf(bl.submission))
	return web.Bridge{Host: b.Host, IMAPPort: ip, IMAPStartTLS: is, SMTPPort: sp, SMTPStartTLS: ss}
}

// serveBridge serves every configured listener until the bridge is closed, and reloads the certificate on SIGHUP
// until ctx is done. Each goroutine is started on wg.
func (a *app) serveBridge(ctx context.Context, goroutine func(func())) {
	// SIGHUP re-reads bridge.cert_file and bridge.key_file (a renewed certificate, e.g. from a certbot deploy
	// hook); connections made afterwards present it, open ones keep theirs. A pair that does not load leaves the
	// old one in use.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	bl := a.bridgeLn
	for _, l := range []struct {
		name  string
		ln    net.Listener
		serve func(net.Listener) error
	}{
		{"IMAP (TLS)", bl.imaps, a.bridge.ServeIMAPS},
		{"IMAP (STARTTLS)", bl.imap, a.bridge.ServeIMAP},
		{"SMTP submission (TLS)", bl.submissions, a.bridge.ServeSubmissions},
		{"SMTP submission (STARTTLS)", bl.submission, a.bridge.ServeSubmission},
	} {
		if l.ln == nil {
			continue
		}
		a.log.Info("bridge listening", slog.String("protocol", l.name), slog.String("addr", l.ln.Addr().String()))
		goroutine(func() {
			if err := l.serve(l.ln); err != nil && !errors.Is(err, net.ErrClosed) {
				a.log.Error("bridge listener stopped", slog.String("protocol", l.name), slog.Any("err", err))
			}
		})
	}
	goroutine(func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := a.bridge.ReloadCertificate(); err != nil {
					a.log.Error("bridge certificate not reloaded; the previous one stays in use",
						slog.String("cert_file", a.cfg.Bridge.CertFile), slog.Any("err", err))
				} else {
					a.log.Info("bridge certificate reloaded", slog.String("cert_file", a.cfg.Bridge.CertFile))
				}
			}
		}
	})
}
