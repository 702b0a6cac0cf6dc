//go:build browser

package web

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/browsertest"
)

// TestBrowserCompose: the compose page never loses text (issue 15 item 3). Typing is saved to Drafts a few seconds
// after it stops, leaving with unsaved text asks first, Send stays in view at 1280×800 with a long text, and picked
// files are listed with name and size and can be removed one by one; sending deletes the autosaved draft. With
// POSTERN_SCREENSHOTS set it writes compose-attachments.png there.
func TestBrowserCompose(t *testing.T) {
	s := newStack(t)
	signedInAs(t, s, "bob") // bob's account exists
	dir := t.TempDir()
	var files []string
	for name, body := range map[string]string{"agenda.txt": "1. lunch", "budget.csv": strings.Repeat("1,2,3\n", 400)} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	ctx, rec := browsertest.Start(t)
	signInBrowser(t, ctx, s, "alice")
	browsertest.Do(t, ctx, "compose at 1280×800", browsertest.Emulate(1280, 800, false, "light"), chromedp.Navigate(s.ts.URL+"/compose"))
	browsertest.WaitTrue(t, ctx, "compose form", `!!document.getElementById("compose-form")`)
	browsertest.Do(t, ctx, "type",
		chromedp.SendKeys(chromedp.ID("to"), "bob@example.test"),
		chromedp.SendKeys(chromedp.ID("subject"), "Plans for the offsite"),
		chromedp.SendKeys(chromedp.ID("body"), strings.Repeat("A long line of text about the offsite.\n", 40)),
	)
	if !browsertest.Eval[bool](t, ctx, `(function () { const r = document.getElementById("send").getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; })()`) {
		t.Error("Send is not in view at 1280×800 with a long text")
	}
	// Before the autosave, leaving asks first (a cancelled beforeunload).
	leaveAsks := `(function () { const e = new Event("beforeunload", { cancelable: true }); window.dispatchEvent(e); return e.defaultPrevented; })()`
	if !browsertest.Eval[bool](t, ctx, leaveAsks) {
		t.Error("leaving with unsaved text does not ask")
	}
	browsertest.WaitTrue(t, ctx, "autosaved", `document.getElementById("autosave-status").textContent.startsWith("Draft saved") && document.getElementById("draft-uid").value !== ""`)
	if _, ok := findBySubject(t, s, "alice@example.test", "Drafts", "Plans for the offsite"); !ok {
		t.Fatal("the autosaved draft is not in Drafts")
	}
	if browsertest.Eval[bool](t, ctx, leaveAsks) {
		t.Error("leaving after the autosave still asks")
	}

	browsertest.Do(t, ctx, "attach two files", chromedp.SetUploadFiles(chromedp.ID("attach"), files))
	browsertest.WaitTrue(t, ctx, "files listed", `document.querySelectorAll("#picked li").length === 2`)
	listed := browsertest.Eval[string](t, ctx, `document.getElementById("picked").textContent`)
	if !strings.Contains(listed, "agenda.txt") || !strings.Contains(listed, "budget.csv") || !strings.Contains(listed, "kB)") || !strings.Contains(listed, "8 B)") {
		t.Errorf("picked files listed as %q, want names and sizes", listed)
	}
	if shots := os.Getenv("POSTERN_SCREENSHOTS"); shots != "" { // see TestBrowserScreenshots
		if !filepath.IsAbs(shots) {
			shots = filepath.Join("..", shots)
		}
		t.Logf("compose-attachments.png: %d bytes", browsertest.Screenshot(t, ctx, filepath.Join(shots, "compose-attachments.png")))
	}
	browsertest.Do(t, ctx, "remove agenda", chromedp.ScrollIntoView(chromedp.CSS(`#picked button[aria-label="Remove agenda.txt"]`)))
	// The Remove button must not sit under the sticky Send bar once scrolled to.
	if hidden := browsertest.Eval[bool](t, ctx, `(function () {
		const b = document.querySelector('#picked button[aria-label="Remove agenda.txt"]'), r = b.getBoundingClientRect();
		return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2) !== b;
	})()`); hidden {
		t.Error("the Remove button is covered")
	}
	browsertest.Eval[bool](t, ctx, `document.querySelector('#picked button[aria-label="Remove agenda.txt"]').click(), true`)
	browsertest.WaitTrue(t, ctx, "one file left", `document.getElementById("attach").files.length === 1 && document.querySelectorAll("#picked li").length === 1`)

	browsertest.Do(t, ctx, "send", chromedp.Click(chromedp.ID("send")))
	browsertest.WaitTrue(t, ctx, "sent", `location.pathname === "/mail/INBOX" && !!document.getElementById("notice")`)
	m, ok := findBySubject(t, s, "bob@example.test", "INBOX", "Plans for the offsite")
	if !ok {
		t.Fatal("the message did not arrive")
	}
	if raw := string(m.Raw); !strings.Contains(raw, "budget.csv") || strings.Contains(raw, "agenda.txt") {
		t.Error("the message does not carry exactly the file that was kept")
	}
	if _, ok := findBySubject(t, s, "alice@example.test", "Drafts", "Plans for the offsite"); ok {
		t.Error("the autosaved draft is still in Drafts after sending")
	}
	if _, _, dialogs := rec.Snapshot(); len(dialogs) > 0 {
		t.Errorf("dialogs opened: %q", dialogs)
	}
	if ex := rec.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %q", ex)
	}
}
