//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/postern/postern/internal/seal"
	"github.com/postern/postern/internal/store"
	"github.com/postern/postern/internal/store/pgtest"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// TestMain removes the Postern binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// posternBinary builds ./cmd/postern once per test run: the suite exercises
// the real binary and its configuration loading, not an in-process wiring.
func posternBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "postern-e2e-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "postern")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/postern")
		cmd.Dir = ".." // the module root; go test runs in the package directory
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/postern: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// posternOptions are the knobs a scenario turns; the rest of the
// configuration is what a production user would write.
type posternOptions struct {
	Listen              string // host:port, also the public URL's authority
	Client              client
	RefreshBeforeExpiry time.Duration
	IMAPPort            int
	IMAPTLS             string
	SMTPPort            int
	SMTPTLS             string
	// TokenTimeout and IntrospectionURL set oidc.token_timeout (default 2m) and oidc.introspection_url.
	TokenTimeout     time.Duration
	IntrospectionURL string
	// Audience and AccessTokenType set oidc.audience and oidc.access_token_type (JWT access tokens).
	Audience        []string
	AccessTokenType string
	// ShareWith runs a second process of another instance: same secrets, same store, same public URL (as behind a
	// load balancer), its own Listen.
	ShareWith *instance
	// Extra is appended to the configuration as it is (a top-level block such as bridge:).
	Extra string
}

// instance is one running `postern serve`.
type instance struct {
	URL     string
	Dir     string
	cfgPath string
	dbPath  string
	dsn     string // PostgreSQL, in a schema of this instance's own (POSTERN_E2E_STORE=postgres); else SQLite at dbPath
	key     []byte
	issuer  string
	cmd     *exec.Cmd
	out     *syncBuffer
	exited  chan struct{}
}

// syncBuffer collects the child's log output; Postern writes from several
// goroutines and the test reads while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// configTemplate is a configuration as a production user writes it (see
// config.example.yml): secrets in *_file files, the mail server's private CA
// in ca_file, relative paths resolved against the file's directory.
var configTemplate = template.Must(template.New("config").Parse(`# Written by the e2e suite, like a production config.
server:
  public_url: {{.PublicURL}}
  listen: {{.Listen}}
log:
  # debug, so that the "never logs tokens" check covers every message.
  level: debug
  format: text
oidc:
  issuer: {{.Issuer}}
  client_id: {{.ClientID}}
  client_secret_file: secrets/oidc_client_secret
  scopes: [openid, profile, email, offline_access]
  http_timeout: 15s
  token_timeout: {{.TokenTimeout}}
  introspection_url: "{{.IntrospectionURL}}"
  audience: [{{range $i, $a := .Audience}}{{if $i}}, {{end}}{{$a}}{{end}}]
  access_token_type: "{{.AccessTokenType}}"
tokens:
  refresh_before_expiry: {{.RefreshBeforeExpiry}}
  refresh_token_lifetime: {{.RefreshLifetime}}
  refresh_concurrency: 4
  max_refreshes_per_second: 2
imap:
  host: {{.MailHost}}
  port: {{.IMAPPort}}
  tls: {{.IMAPTLS}}
  ca_file: {{.CAFile}}
  sasl: oauthbearer
  pool:
    max_per_user: 4
    max_total: 200
    idle_timeout: 5m
smtp:
  host: {{.MailHost}}
  port: {{.SMTPPort}}
  tls: {{.SMTPTLS}}
  ca_file: {{.CAFile}}
  sasl: oauthbearer
session:
  secret_file: secrets/session_secret
  cookie_name: postern_session
  idle_timeout: 24h
  lifetime: 720h
storage:
{{if .DSN}}  driver: postgres
  dsn_file: secrets/dsn
{{else}}  driver: sqlite
  path: data/postern.db
{{end}}  encryption_key_file: secrets/encryption_key
  encryption_key_id: "1"
web:
  page_size: 50
{{.Extra}}`))

// startPostern writes a configuration for opts, checks it with `postern
// config check`, runs `postern serve` and waits until /healthz answers. The
// process is stopped (SIGTERM, as a service manager would) when the test
// ends, and its log is shown if the test failed.
func startPostern(t *testing.T, tb *testbed, opts posternOptions) *instance {
	t.Helper()
	bin := posternBinary(t)
	if opts.RefreshBeforeExpiry == 0 {
		opts.RefreshBeforeExpiry = 5 * time.Minute
	}
	if opts.IMAPPort == 0 {
		opts.IMAPPort, opts.IMAPTLS = tb.IMAPPort, "tls"
	}
	if opts.SMTPPort == 0 {
		opts.SMTPPort, opts.SMTPTLS = tb.SubmissionPort, "tls"
	}
	if opts.TokenTimeout == 0 {
		opts.TokenTimeout = 2 * time.Minute
	}
	publicURL := "http://" + opts.Listen
	cfgName := "config.yml"
	var dir, dsn string
	var key []byte
	if o := opts.ShareWith; o != nil {
		// The configuration's relative paths resolve against its directory: the other instance's secrets and store.
		dir, key, publicURL, dsn = o.Dir, o.key, o.URL, o.dsn
		cfgName = "config-" + strings.ReplaceAll(opts.Listen, ":", "-") + ".yml"
	} else {
		dir = t.TempDir()
		for _, d := range []string{"secrets", "data"} {
			if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		key = make([]byte, 32)
		rand.Read(key)
		sessionSecret := make([]byte, 48)
		rand.Read(sessionSecret)
		writeSecret(t, filepath.Join(dir, "secrets/oidc_client_secret"), opts.Client.Secret+"\n")
		writeSecret(t, filepath.Join(dir, "secrets/session_secret"), base64.StdEncoding.EncodeToString(sessionSecret)+"\n")
		writeSecret(t, filepath.Join(dir, "secrets/encryption_key"), base64.StdEncoding.EncodeToString(key)+"\n")
		if dsn = postgresDSN(t); dsn != "" {
			writeSecret(t, filepath.Join(dir, "secrets/dsn"), dsn+"\n")
		}
	}

	var cfg bytes.Buffer
	err := configTemplate.Execute(&cfg, map[string]any{
		"PublicURL": publicURL, "Listen": opts.Listen,
		"TokenTimeout": opts.TokenTimeout, "IntrospectionURL": opts.IntrospectionURL,
		"Audience": opts.Audience, "AccessTokenType": opts.AccessTokenType, "DSN": dsn,
		"Issuer": tb.Issuer, "ClientID": opts.Client.ID,
		"RefreshBeforeExpiry": opts.RefreshBeforeExpiry, "RefreshLifetime": tb.RefreshLifetime,
		"MailHost": tb.MailHost, "CAFile": tb.CAFile,
		"IMAPPort": opts.IMAPPort, "IMAPTLS": opts.IMAPTLS, "SMTPPort": opts.SMTPPort, "SMTPTLS": opts.SMTPTLS,
		"Extra": opts.Extra,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, cfgName)
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if want := publicURL + "/callback"; want != opts.Client.RedirectURL {
		t.Fatalf("client %s is registered with redirect URI %s, but this Postern's callback is %s", opts.Client.ID, opts.Client.RedirectURL, want)
	}

	env := cleanEnv()
	check := exec.Command(bin, "config", "check", "-config", cfgPath)
	check.Env = env
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("postern config check: %v\n%s", err, out)
	}

	p := &instance{
		URL: "http://" + opts.Listen, Dir: dir, cfgPath: cfgPath,
		dbPath: filepath.Join(dir, "data/postern.db"), dsn: dsn, key: key, issuer: tb.Issuer,
		out: &syncBuffer{}, exited: make(chan struct{}),
	}
	p.cmd = exec.Command(bin, "serve", "-config", cfgPath)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start postern: %v", err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("postern log:\n%s", p.out.String())
		}
	})

	err = eventually(30*time.Second, 100*time.Millisecond, func() error {
		select {
		case <-p.exited:
			return fmt.Errorf("postern exited: %v", p.cmd.ProcessState)
		default:
		}
		resp, err := httpClient.Get(p.URL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: status %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("postern did not become ready: %v", err)
	}
	// /healthz answers from the first second, while the "starting" front door waits for discovery; wait for the app
	// itself, or the first page view races it and gets the starting page's 503.
	err = eventually(30*time.Second, 100*time.Millisecond, func() error {
		resp, err := httpClient.Get(p.URL + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "waiting for discovery") {
			return errors.New("postern is still starting")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("postern did not finish starting: %v", err)
	}
	return p
}

// cleanEnv is the test's environment without POSTERN_* variables, which
// would override the configuration file.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POSTERN_") {
			env = append(env, kv)
		}
	}
	return env
}

func writeSecret(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and waits for the graceful shutdown (at most 20 s of
// draining in Postern), then kills.
func (p *instance) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if st := p.cmd.ProcessState; st != nil && !st.Success() {
			t.Errorf("postern exited with %v after SIGTERM", st)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("postern did not stop within 30 s of SIGTERM; killing it")
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// Log returns what Postern has logged so far.
func (p *instance) Log() string { return p.out.String() }

// openStore opens Postern's database the way Postern does, with the key
// from the configuration, so the test can read the tokens of a grant. SQLite
// in WAL mode lets it share the file with the running server.
func (p *instance) openStore(t *testing.T) grantStore {
	t.Helper()
	s, err := seal.New(map[string][]byte{"1": p.key}, "1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st grantStore
	if p.dsn != "" {
		st, err = store.OpenPostgres(ctx, p.dsn, s)
	} else {
		st, err = store.OpenSQLite(ctx, p.dbPath, s)
	}
	if err != nil {
		t.Fatalf("open postern's store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// grantStore is what the tests read of Postern's store, with either driver.
type grantStore interface {
	GrantsBySubject(ctx context.Context, issuer, subject string) ([]string, error)
	Grant(ctx context.Context, id string) (store.Grant, error)
	UpdateGrant(ctx context.Context, g store.Grant) (store.Grant, error)
	Close() error
}

// postgresDSN is "" for SQLite (the default), or, with POSTERN_E2E_STORE=postgres, a DSN for a fresh schema of
// POSTERN_TEST_POSTGRES_DSN's database, dropped when the test ends: the suite then runs Postern on PostgreSQL.
func postgresDSN(t *testing.T) string {
	t.Helper()
	if os.Getenv("POSTERN_E2E_STORE") != "postgres" {
		return ""
	}
	if os.Getenv(pgtest.Env) == "" {
		t.Fatalf("POSTERN_E2E_STORE=postgres needs %s", pgtest.Env)
	}
	return pgtest.DSN(t)
}

// grantOf returns the only grant Postern holds for subject.
func (p *instance) grantOf(t *testing.T, st grantStore, subject string) store.Grant {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids, err := st.GrantsBySubject(ctx, p.issuer, subject)
	if err != nil {
		t.Fatalf("GrantsBySubject(%s) = %v", subject, err)
	}
	if len(ids) != 1 {
		t.Fatalf("GrantsBySubject(%s) = %d grants, want 1", subject, len(ids))
	}
	g, err := st.Grant(ctx, ids[0])
	if err != nil {
		t.Fatalf("Grant(%s) = %v", ids[0], err)
	}
	return g
}

// grantCount returns how many grants Postern holds for subject.
func (p *instance) grantCount(t *testing.T, st grantStore, subject string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids, err := st.GrantsBySubject(ctx, p.issuer, subject)
	if err != nil {
		t.Fatalf("GrantsBySubject(%s) = %v", subject, err)
	}
	return len(ids)
}
