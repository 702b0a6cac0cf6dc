package bridge

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPythonClients runs testdata/clients.py: imaplib and smtplib through the bridge.
func TestPythonClients(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	e := newEnv(t, Options{})
	_, imaps, _ := net.SplitHostPort(e.imaps)
	_, smtps, _ := net.SplitHostPort(e.smtps)
	before, _ := e.stack.Mail.Messages(alice, "INBOX")
	cmd := exec.CommandContext(t.Context(), py, filepath.Join("testdata", "clients.py"))
	cmd.Env = append(os.Environ(), "BRIDGE_CA="+e.certFile, "BRIDGE_USER="+alice, "BRIDGE_PASSWORD="+alicePW,
		"BRIDGE_IMAPS="+imaps, "BRIDGE_SMTPS="+smtps)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("clients.py: %v\n%s", err, out)
	}
	after, _ := e.stack.Mail.Messages(alice, "INBOX")
	// One moved to Archive, one expunged, one appended, one sent by smtplib.
	if len(after) != len(before) {
		t.Errorf("alice's INBOX has %d messages after the script, want %d", len(after), len(before))
	}
	arch, _ := e.stack.Mail.Messages(alice, "Archive")
	if len(arch) == 0 {
		t.Error("nothing moved to Archive")
	}
}

// TestCurl fetches a message with curl's imaps:// and sends one with smtps://.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	e := newEnv(t, Options{})
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), curl, append([]string{"-sS", "--cacert", e.certFile, "-u", alice + ":" + alicePW}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", args[0], err, out)
		}
		return string(out)
	}
	if out := run("imaps://" + e.imaps + "/"); !strings.Contains(out, "INBOX") {
		t.Errorf("curl LIST = %q, want INBOX", out)
	}
	if out := run("imaps://" + e.imaps + "/INBOX;UID=1"); !strings.Contains(out, "Subject:") {
		t.Errorf("curl FETCH = %q, want a message", out)
	}
	msg := filepath.Join(t.TempDir(), "msg.eml")
	os.WriteFile(msg, []byte("From: alice@example.test\r\nTo: bob@example.test\r\nSubject: sent by curl\r\n\r\nhi\r\n"), 0o600)
	before, _ := e.stack.Mail.Messages(bob, "INBOX")
	run("smtps://"+e.smtps, "--mail-from", alice, "--mail-rcpt", bob, "-T", msg)
	after, _ := e.stack.Mail.Messages(bob, "INBOX")
	if len(after) != len(before)+1 {
		t.Errorf("bob's INBOX after curl smtps = %d messages, want %d", len(after), len(before)+1)
	}
}
