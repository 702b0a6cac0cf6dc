//go:build container

package containertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/devstack"
	"github.com/postern/postern/internal/devstack/idp"
)

// The image's HEALTHCHECK asks http://127.0.0.1:8080/healthz, so Postern listens on :8080 as in docs/deploy.md.
// With host networking that is the host's port; scripts/container-test gives the test a network namespace of its
// own, where it is free.
const (
	listen    = ":8080"
	publicURL = "http://127.0.0.1:8080"
	dataDir   = "/var/lib/postern"

	user, password, email = "alice", "alice-password", "alice@example.test"
	// seededSubject is in the dev mail server's seeded INBOX (mailserver.Seed); the inbox page must list it.
	seededSubject = "Welcome to your new mailbox"
	nonroot       = 65532
)

// probe asks /healthz and /readyz; Postern bounds its readiness checks itself, this only keeps a hung answer from
// hanging the test.
var probe = &http.Client{Timeout: 15 * time.Second}

// env is what every run of the image shares: the image, the peers and the files mounted into the container.
type env struct {
	image   string
	mounts  []string // podman -v arguments: the configuration and the secrets, read-only
	environ []string // podman -e arguments: the POSTERN_…_FILE variables
}

func TestContainer(t *testing.T) {
	image := os.Getenv("POSTERN_CONTAINER_IMAGE")
	if image == "" {
		t.Fatal("POSTERN_CONTAINER_IMAGE is not set: run scripts/container-test, which builds the image")
	}
	if ln, err := net.Listen("tcp", "127.0.0.1:8080"); err != nil {
		t.Fatalf("127.0.0.1:8080 is taken (%v): run the test in a network namespace of its own, as scripts/container-test does", err)
	} else {
		ln.Close()
	}
	e := &env{image: image}
	e.startPeers(t)

	// Docker's named volumes, unlike Podman's, are not chowned to the container's user: a new volume is an empty
	// root-owned directory, except that Docker copies the image's content at the mount point, with its owner and
	// mode, into it (moby container/container_unix.go, copyExistingContents). So an image without an owned
	// /var/lib/postern gives the non-root Postern a directory it cannot write. This emulates exactly that.
	t.Run("docker volume", func(t *testing.T) {
		vol := filepath.Join(t.TempDir(), "volume")
		if err := os.Mkdir(vol, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(vol, 0, 0); err != nil {
			t.Fatal(err)
		}
		copyMountPoint(t, image, dataDir, vol)
		c := e.start(t, "docker-volume", vol+":"+dataDir)
		c.waitReady(t)
		c.stop(t)
		checkDatabase(t, filepath.Join(vol, "postern.db"))
	})

	t.Run("named volume", func(t *testing.T) {
		vol := "postern-containertest-" + rand.Text()[:8]
		podman(t, "volume", "create", vol)
		t.Cleanup(func() { exec.Command("podman", "volume", "rm", "-f", vol).Run() })
		mountpoint := strings.TrimSpace(podman(t, "volume", "inspect", "-f", "{{.Mountpoint}}", vol))

		c := e.start(t, "named-volume-1", vol+":"+dataDir)
		startup := c.waitReady(t)
		t.Logf("ready: /readyz answered 200 %v after podman run started", startup.Round(10*time.Millisecond))

		uid, gid := processIDs(t, c.name)
		t.Logf("process ids: uid %s, gid %s", uid, gid)
		for _, ids := range []string{uid, gid} {
			for _, id := range strings.Fields(ids) { // real, effective, saved, file-system
				if id != strconv.Itoa(nonroot) {
					t.Errorf("container process ids uid %q gid %q, want all %d", uid, gid, nonroot)
				}
			}
		}
		if code, _ := get(t, probe, publicURL+"/healthz"); code != http.StatusOK {
			t.Errorf("GET /healthz = %d, want 200", code)
		}

		browser := signIn(t)
		inbox(t, browser)
		checkDatabase(t, filepath.Join(mountpoint, "postern.db"))

		// The image's HEALTHCHECK command, run by Podman as the orchestrator would.
		t.Logf("HEALTHCHECK %s", strings.TrimSpace(podman(t, "inspect", "-f", "{{.Config.Healthcheck.Test}}", c.name)))
		out, err := exec.Command("podman", "healthcheck", "run", c.name).CombinedOutput()
		t.Logf("podman healthcheck run: %v %s", exitStatus(err), strings.TrimSpace(string(out)))
		if err != nil {
			t.Errorf("podman healthcheck run = %v (%s), want exit 0", err, out)
		}

		// A new container on the same volume, as after an upgrade: the session cookie still opens the inbox.
		c.stop(t)
		c2 := e.start(t, "named-volume-2", vol+":"+dataDir)
		c2.waitReady(t)
		inbox(t, browser)
		c2.stop(t)
	})
}

// startPeers starts the demo's dev IdP and mail server on 127.0.0.1 (the container shares the network), and writes the
// configuration and secrets the container mounts.
func (e *env) startPeers(t *testing.T) {
	t.Helper()
	// Postern's callback (web.RedirectURL; the architecture test keeps web out of internal packages' tests).
	stack, err := devstack.Start(devstack.Options{
		RedirectURIs: []string{publicURL + "/callback"},
		Users:        []idp.User{{Username: user, Password: password, Email: email, Name: "Alice Liddell"}},
	})
	if err != nil {
		t.Fatalf("devstack.Start() = %v", err)
	}
	t.Cleanup(stack.Close)
	p, imapAddr, smtpAddr, secret := stack.IdP, stack.IMAP, stack.SMTP, stack.ClientSecret
	t.Logf("peers: dev IdP %s, IMAP %s, SMTP %s", p.Issuer(), imapAddr, smtpAddr)

	// The configuration has no secrets, like docs/deploy.md's; it is world-readable so that uid 65532 can read the
	// read-only bind mount. Plain IMAP and SMTP: the dev mail server speaks no TLS unless given a certificate.
	dir := t.TempDir()
	_, imapPort, _ := net.SplitHostPort(imapAddr.String())
	_, smtpPort, _ := net.SplitHostPort(smtpAddr.String())
	config := fmt.Sprintf(`server:
  public_url: %s
  listen: "%s"
oidc:
  issuer: %s
  client_id: %s
imap: {host: 127.0.0.1, port: %s, tls: none, sasl: oauthbearer}
smtp: {host: 127.0.0.1, port: %s, tls: none, sasl: oauthbearer}
storage:
  path: %s/postern.db
  encryption_key_id: "1"
`, publicURL, listen, p.Issuer(), devstack.ClientID, imapPort, smtpPort, dataDir)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mounts = append(e.mounts, cfgPath+":/etc/postern/config.yml:ro")

	// Secrets as files, one mount each, as compose's file secrets are: owned by the container's user and readable
	// only by it (a bind mount keeps the host file's owner and mode).
	key := make([]byte, 32)
	rand.Read(key)
	session := make([]byte, 48)
	rand.Read(session)
	for _, s := range []struct{ name, env, value string }{
		{"postern_client_secret", "POSTERN_OIDC_CLIENT_SECRET_FILE", secret},
		{"postern_session_secret", "POSTERN_SESSION_SECRET_FILE", base64.StdEncoding.EncodeToString(session)},
		{"postern_encryption_key", "POSTERN_STORAGE_ENCRYPTION_KEY_FILE", base64.StdEncoding.EncodeToString(key)},
	} {
		path := filepath.Join(dir, s.name)
		if err := os.WriteFile(path, []byte(s.value+"\n"), 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, nonroot, nonroot); err != nil {
			t.Fatal(err)
		}
		e.mounts = append(e.mounts, path+":/run/secrets/"+s.name+":ro")
		e.environ = append(e.environ, s.env+"=/run/secrets/"+s.name)
	}
}

// container is one `podman run` of the image.
type container struct {
	name    string
	started time.Time
	removed bool
	logged  bool
}

// start runs the image detached, as docs/deploy.md's compose file does, with volume mounted at /var/lib/postern.
func (e *env) start(t *testing.T, name, volume string) *container {
	t.Helper()
	c := &container{name: "postern-containertest-" + name}
	args := []string{"run", "--detach", "--name", c.name,
		"--read-only", "--tmpfs", "/tmp", "--network", "host", "-v", volume}
	for _, m := range e.mounts {
		args = append(args, "-v", m)
	}
	for _, v := range e.environ {
		args = append(args, "-e", v)
	}
	args = append(args, e.image) // the image's own ENTRYPOINT and CMD: serve -config /etc/postern/config.yml
	t.Logf("podman %s", strings.Join(args, " "))
	c.started = time.Now()
	podman(t, args...)
	t.Cleanup(func() {
		if c.removed {
			return
		}
		if t.Failed() && !c.logged {
			c.logs(t)
		}
		exec.Command("podman", "rm", "-f", "-t", "0", c.name).Run()
	})
	return c
}

// waitReady polls /readyz until it answers 200 and returns how long that took from `podman run`. It fails as soon
// as the container stops running. The deadline only bounds a failure: nothing is asserted about the duration.
func (c *container) waitReady(t *testing.T) time.Duration {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	last := "no answer yet"
	for {
		if running := strings.TrimSpace(podman(t, "inspect", "-f", "{{.State.Running}}", c.name)); running != "true" {
			c.logs(t)
			t.Fatalf("container %s stopped before /readyz answered 200 (%s)", c.name, last)
		}
		resp, err := probe.Get(publicURL + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				took := time.Since(c.started)
				t.Logf("GET /readyz = 200 %s", bytes.TrimSpace(body))
				return took
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: /readyz never answered 200, last: %s", c.name, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the container as an orchestrator does (SIGTERM, Postern drains for at most 20 s) and checks that
// Postern shut down cleanly.
func (c *container) stop(t *testing.T) {
	t.Helper()
	podman(t, "stop", "-t", "30", c.name)
	if code := strings.TrimSpace(podman(t, "inspect", "-f", "{{.State.ExitCode}}", c.name)); code != "0" {
		t.Errorf("container %s exited with %s after SIGTERM, want 0", c.name, code)
	}
	if t.Failed() {
		c.logs(t)
	}
	podman(t, "rm", c.name)
	c.removed = true
}

func (c *container) logs(t *testing.T) {
	t.Helper()
	out, _ := exec.Command("podman", "logs", c.name).CombinedOutput()
	t.Logf("podman logs %s:\n%s", c.name, out)
	c.logged = true
}

// copyMountPoint gives dir the owner and mode of path in image, if the image has it: what Docker does to a new
// named volume's root. Without the path in the image, dir stays as it is (root-owned).
func copyMountPoint(t *testing.T, image, path, dir string) {
	t.Helper()
	root := strings.TrimSpace(podman(t, "image", "mount", image))
	defer podman(t, "image", "unmount", image)
	fi, err := os.Stat(filepath.Join(root, path))
	if errors.Is(err, os.ErrNotExist) {
		t.Logf("the image has no %s: Docker would mount an empty root-owned directory there", path)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	t.Logf("the image's %s: uid %d gid %d mode %v; Docker copies these onto a new volume", path, st.Uid, st.Gid, fi.Mode())
	if err := os.Chown(dir, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// checkDatabase checks that Postern created its database in the volume, owned by the container's user and
// readable by nobody else: it holds sealed tokens and sessions.
func checkDatabase(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("database in the volume: %v", err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	t.Logf("database %s: uid %d mode %v, %d bytes", filepath.Base(path), st.Uid, fi.Mode(), fi.Size())
	if st.Uid != nonroot {
		t.Errorf("database owner uid = %d, want %d", st.Uid, nonroot)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode = %v, want -rw-------", fi.Mode())
	}
}

// processIDs reads the Uid and Gid lines of the container's main process from the host's /proc.
func processIDs(t *testing.T, name string) (uid, gid string) {
	t.Helper()
	pid := strings.TrimSpace(podman(t, "inspect", "-f", "{{.State.Pid}}", name))
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Gid:"); ok {
			gid = strings.TrimSpace(v)
		}
	}
	return uid, gid
}

// signIn signs alice in through the published port: Postern's /login sends the browser to the dev IdP, whose pages
// idp.SignIn drives, and the callback lands on the inbox. It returns the browser, whose cookie jar holds the session.
func signIn(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(publicURL + "/login?return_to=/mail/INBOX")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || authURL == "" {
		t.Fatalf("GET /login = %d Location %q, want 303 to the IdP", resp.StatusCode, authURL)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	callback, err := idp.SignIn(ctx, browser, authURL, user, password, true)
	if err != nil {
		t.Fatalf("idp.SignIn() = %v", err)
	}
	resp, err = browser.Get(callback.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/mail/INBOX" {
		t.Fatalf("GET /callback = %d Location %q, want 303 to /mail/INBOX", resp.StatusCode, loc)
	}
	t.Logf("signed in as %s: /login → dev IdP → /callback → /mail/INBOX", user)
	return browser
}

// inbox checks that the browser's session opens the inbox, which Postern reads from the mail server over IMAP with
// the user's token.
func inbox(t *testing.T, browser *http.Client) {
	t.Helper()
	code, body := get(t, browser, publicURL+"/mail/INBOX")
	if code != http.StatusOK || !strings.Contains(body, seededSubject) {
		t.Fatalf("GET /mail/INBOX = %d (lists %q: %v), want 200 listing it", code, seededSubject, strings.Contains(body, seededSubject))
	}
	t.Logf("GET /mail/INBOX = 200, lists %q", seededSubject)
}

func get(t *testing.T, hc *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// podman runs podman with args and returns its standard output; a failure fails the test with podman's output.
func podman(t *testing.T, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("podman", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s%s", args[0], err, out, stderr.Bytes())
	}
	return string(out)
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
