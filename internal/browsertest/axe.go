package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// axe-core (https://github.com/dequelabs/axe-core) checks a page against WCAG's machine-checkable success criteria.
// It is not a Go module: .ci/run installs the npm package at an exact version into the user's cache directory, where
// AxePath finds it, and exports POSTERN_AXE; a developer runs the same npm command once (see AxeInstall).

// AxeVersion is the axe-core release the tests run, installed by .ci/run (keep the two in step); Axe refuses another.
const AxeVersion = "4.14.1"

// AxeInstall is the command that installs axe-core where AxePath looks by default.
const AxeInstall = `npm install --prefix "${XDG_CACHE_HOME:-$HOME/.cache}/postern/axe" --no-audit --no-fund --ignore-scripts axe-core@` + AxeVersion

// ErrNoAxe is wrapped by AxePath's error when axe-core is not installed.
var ErrNoAxe = errors.New("axe-core is not installed")

// AxePath returns axe.min.js: $POSTERN_AXE when set (then the file must exist), else the file AxeInstall puts in the
// user's cache directory. The error wraps ErrNoAxe and says how to install it.
func AxePath() (string, error) {
	if p := os.Getenv("POSTERN_AXE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return p, fmt.Errorf("POSTERN_AXE=%s: %w", p, err)
		}
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("%w: no user cache directory (%v); set POSTERN_AXE to axe.min.js", ErrNoAxe, err)
	}
	p := filepath.Join(dir, "postern", "axe", "node_modules", "axe-core", "axe.min.js")
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("%w at %s: install it with\n\t%s\nor set POSTERN_AXE to an axe.min.js", ErrNoAxe, p, AxeInstall)
	} else if err != nil {
		return p, err
	}
	return p, nil
}

// AxeViolation is one rule that failed on a page, with the elements that fail it.
type AxeViolation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"`
	Help    string   `json:"help"`
	Targets []string `json:"targets"`
}

func (v AxeViolation) String() string {
	return fmt.Sprintf("%s (%s): %s; at %s", v.ID, v.Impact, v.Help, strings.Join(v.Targets, " | "))
}

// WCAG22AA are the axe-core tags of WCAG 2.0, 2.1 and 2.2 at levels A and AA.
var WCAG22AA = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"}

// Axe runs axe-core (the source of axe.min.js, src) on the page in ctx with the rules tagged tags and returns the
// violations. The source is evaluated through DevTools, which the page's CSP does not govern, so the page runs as
// served. Frames are not entered: the only frame Postern shows is a message's own HTML, which is the sender's.
func Axe(t testing.TB, ctx context.Context, src string, tags []string) []AxeViolation {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(tctx, chromedp.Evaluate[bool](src+"\n;true")); err != nil {
		t.Fatalf("inject axe-core: %v (%s)", err, where(ctx))
	}
	// The pinned release: another one may judge differently, and then results would depend on the machine.
	if v, err := chromedp.Run(tctx, chromedp.Evaluate[string](`axe.version`)); err != nil || v != AxeVersion {
		t.Fatalf("axe-core version %q (%v), want %s: %s", v, err, AxeVersion, AxeInstall)
	}
	tagJSON, _ := json.Marshal(tags)
	run := `axe.run(document, {runOnly: {type: "tag", values: ` + string(tagJSON) + `}, iframes: false, resultTypes: ["violations"]})
		.then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help,
			targets: v.nodes.map(n => n.target.join(" ") + (n.failureSummary ? " — " + n.failureSummary.replace(/\s+/g, " ") : ""))}))))`
	out, err := chromedp.Run(tctx, chromedp.Evaluate[string](run, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("run axe-core: %v (%s)", err, where(ctx))
	}
	var vs []AxeViolation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("axe-core results: %v", err)
	}
	return vs
}

// SmallTargetsJS lists the visible interactive elements of the page (links, buttons, form controls, summaries and
// the labels of checkboxes and radio buttons) smaller than 24×24 CSS pixels that WCAG 2.2 SC 2.5.8 (Target Size,
// Minimum) does not excuse. Its exceptions, as the SC words them:
//   - spacing: a 24 px circle centred on the undersized target intersects no other target and no other undersized
//     target's circle;
//   - inline: a link inside a sentence or block of text (its size is that of the text's lines);
//   - a control the browser draws and the page does not size (none here: every control is styled).
//
// Each entry is "tag#id.class "text" W×H (too close to …)".
const SmallTargetsJS = `(function () {
	const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, label';
	const all = [...document.querySelectorAll(sel)].filter(el => {
		if (el.tagName === "LABEL") {
			const c = el.control;
			if (!c || !(c.type === "checkbox" || c.type === "radio")) return false;
		}
		// Not rendered: hidden, inside a closed <details> or <dialog> (whose content keeps layout boxes in Chromium
		// but is not shown), or inert.
		if (!el.checkVisibility({visibilityProperty: true, opacityProperty: true}) || el.closest("[inert]")) return false;
		const r = el.getBoundingClientRect();
		if (r.width < 2 && r.height < 2) return false;   // visually hidden (clip to 1 px) or not rendered
		if (r.right <= 0 || r.bottom <= 0) return false;  // parked off-screen until focused (the skip link)
		return true;
	});
	const rects = new Map(all.map(el => [el, el.getBoundingClientRect()]));
	const small = el => { const r = rects.get(el); return r.width < 23.99 || r.height < 23.99; };
	const centre = r => [r.left + r.width / 2, r.top + r.height / 2];
	const distToRect = (p, r) => Math.hypot(Math.max(r.left - p[0], 0, p[0] - r.right), Math.max(r.top - p[1], 0, p[1] - r.bottom));
	const inline = el => {
		if (el.tagName !== "A" || getComputedStyle(el).display !== "inline") return false;
		const block = el.parentElement && el.parentElement.closest("p, li, pre, dd, td, blockquote, div");
		if (!block) return false;
		const own = (el.textContent || "").trim().length;
		return (block.textContent || "").trim().length > own + 20;
	};
	const name = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
		(typeof el.className === "string" && el.className.trim() ? "." + el.className.trim().split(/\s+/).join(".") : "") +
		' "' + (el.textContent || el.value || el.getAttribute("aria-label") || "").trim().replace(/\s+/g, " ").slice(0, 30) + '"';
	const out = [];
	for (const el of all) {
		if (!small(el) || inline(el)) continue;
		const r = rects.get(el), c = centre(r);
		let near = null;
		for (const other of all) {
			if (other === el || other.contains(el) || el.contains(other)) continue;
			// A label and its own control are one target.
			if ((el.tagName === "LABEL" && el.control === other) || (other.tagName === "LABEL" && other.control === el)) continue;
			const o = rects.get(other);
			if (small(other) ? Math.hypot(c[0] - centre(o)[0], c[1] - centre(o)[1]) < 24 : distToRect(c, o) < 12) { near = other; break; }
		}
		if (near) out.push(name(el) + " " + Math.round(r.width) + "×" + Math.round(r.height) + " (too close to " + name(near) + ")");
	}
	return out;
})()`
