package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds the parsed templates and the static assets with their content hashes.
type pages struct {
	byName map[string]*template.Template
	static map[string]asset
}

type asset struct {
	body  []byte
	hash  string
	ctype string
}

// pageBase is embedded in every page's data.
type pageBase struct {
	Title   string
	User    string // the signed-in user's address, empty on public pages
	Version string
	Folders []folderLink
	Current string
	// Banner is Config.Banner.
	Banner string
	// Flash is the one-off notice of the last action (flash.go), set by render or by a handler that needs it early.
	Flash *flash
	// Clock shows times in the reader's time zone (times.go): {{$.Clock.List .Date}}, {{$.Clock.Stamp .Date}}.
	Clock clock
}

type folderLink struct {
	Name, Label, URL, Special string
	Unseen                    uint32
	Current                   bool
}

func (s *Server) base(r *http.Request, title string) pageBase {
	return pageBase{Title: title, Version: s.cfg.Version, Banner: s.cfg.Banner, Clock: s.prefs(r).clock()}
}

func loadPages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}, static: map[string]asset{}}
	err := fs.WalkDir(staticFS, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		p.static[path.Base(name)] = asset{body: b, hash: hex.EncodeToString(sum[:8]), ctype: ct}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load static: %w", err)
	}
	funcs := template.FuncMap{
		"static": func(name string) (string, error) {
			a, ok := p.static[name]
			if !ok {
				return "", fmt.Errorf("no static asset %q", name)
			}
			// Content-hashed URL: the asset can be cached forever, and a new build changes the URL.
			return "/static/" + name + "?v=" + a.hash, nil
		},
		"text":    text,
		"isolate": isolate,
		"people":  people,
		"size":    formatSize,
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		files := []string{"templates/layout.html", n}
		if base == "conversation.html" {
			// The conversation view renders each message as the reader does, with message.html's "addrs" and "segs";
			// its own "content", parsed last, replaces the reader's.
			files = []string{"templates/layout.html", "templates/message.html", n}
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, files...)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", base, err)
		}
		p.byName[strings.TrimSuffix(base, ".html")] = t
	}
	return p, nil
}

// render executes a page into a buffer first, so that a template error becomes a clean 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	t, ok := s.pages.byName[name]
	if !ok {
		s.log(r).Error("no such template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if fh, ok := data.(flashHolder); ok && *fh.flashSlot() == nil {
		// Before anything is written: taking the flash saves the session, which may set its cookie.
		*fh.flashSlot() = s.takeFlash(w, r)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		s.log(r).Error("render", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages show private mail: never store them in shared caches, and don't let the back button show them after
	// sign-out.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (p *pages) serveStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := p.static[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	if r.URL.Query().Get("v") == a.hash {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

func formatSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d kB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}
