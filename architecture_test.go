package postern_test

import (
	"errors"
	"go/build"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The dependency rules of the house style (../shared/STYLE.md, "Layout and dependency direction"), checked on the
// import lines of every package of the module. The rules are about what a package needs in order to run, so they read
// the non-test files; test files may import the dev peers (internal/devstack) and protocol libraries to set up and
// inspect real servers, but an internal package's tests still may not import web.
//
// Every file counts whatever its build tags (the nodemo, browser and e2e variants included): a rule that only holds
// for the default build is not a rule.

const module = "github.com/postern/postern"

// pendingAllowances are rule breaches that another branch removes; each names the branch, and the test fails once
// the breach is gone so that the entry is deleted with it.
var pendingAllowances = map[edge]string{}

// edge is one import: from (a package path relative to the module, "web") imports to (a full import path).
type edge struct{ from, to string }

// pkg is one package directory's imports, split as the rules need them.
type pkg struct {
	imports     []string // non-test files
	testImports []string // _test.go files, internal and external test packages alike
}

func TestDependencyRules(t *testing.T) {
	pkgs := loadPackages(t, ".")
	for _, want := range []string{"web", "bridge"} {
		if _, ok := pkgs[want]; !ok {
			t.Fatalf("found no package %s among %d packages: the walk is broken", want, len(pkgs))
		}
	}
	ours := func(p string) (string, bool) {
		if p == module {
			return "", true
		}
		rel, ok := strings.CutPrefix(p, module+"/")
		return rel, ok
	}
	under := func(rel, tree string) bool { return rel == tree || strings.HasPrefix(rel, tree+"/") }

	// deps is every package of this module that rel needs to run, directly or through another of ours.
	deps := func(rel string) []string {
		seen := map[string]bool{}
		var walk func(string)
		walk = func(r string) {
			for _, imp := range pkgs[r].imports {
				if o, ok := ours(imp); ok && !seen[o] {
					seen[o] = true
					walk(o)
				}
			}
		}
		walk(rel)
		return slices.Sorted(func(yield func(string) bool) {
			for k := range seen {
				if !yield(k) {
					return
				}
			}
		})
	}

	used := map[edge]bool{}
	breach := func(e edge, verb, why string) {
		t.Helper()
		if _, ok := pendingAllowances[e]; ok {
			used[e] = true
			return
		}
		t.Errorf("%s %s %s: %s", e.from, verb, e.to, why)
	}

	for rel, p := range pkgs {
		for _, d := range deps(rel) {
			switch {
			case under(rel, "auth") && (under(d, "mail") || under(d, "web")):
				// Only an access token and an address cross from auth to mail, carried by web.
				breach(edge{rel, d}, "depends on", "auth imports neither mail nor web")
			case under(rel, "mail"):
				// mail knows a bearer string and an address, nothing of OAuth, sessions or storage.
				breach(edge{rel, d}, "depends on", "mail imports nothing of this module")
			case under(rel, "bridge") && under(d, "web"):
				// The bridge serves mail clients beside web, not through it; what it needs of devices and grants it
				// declares as small interfaces that cmd fills in.
				breach(edge{rel, d}, "depends on", "bridge imports mail, never web")
			case under(rel, "internal") && under(d, "web"):
				breach(edge{rel, d}, "depends on", "internal packages serve web and cmd, never the other way round")
			case under(d, "cmd"):
				breach(edge{rel, d}, "depends on", "nothing imports cmd")
			}
		}
		for _, imp := range p.imports {
			o, isOurs := ours(imp)
			switch {
			case under(rel, "web") && slices.ContainsFunc(protocolLibraries, func(l string) bool { return imp == l || strings.HasPrefix(imp, l+"/") }):
				// web speaks HTTP; the protocols and their error codes belong to auth and mail.
				breach(edge{rel, imp}, "imports", "web leaves the protocol libraries to auth and mail")
			case under(rel, "bridge") && (imp == "github.com/coreos/go-oidc" || strings.HasPrefix(imp, "github.com/coreos/go-oidc/")):
				// The bridge knows a token source, nothing of OIDC: sign-in and refresh stay in auth.
				breach(edge{rel, imp}, "imports", "bridge leaves OIDC to auth")
			case isOurs && (under(o, "internal/metrics") || under(o, "internal/devstack")) &&
				!under(rel, "cmd") && !under(rel, "internal/metrics") && !under(rel, "internal/devstack"):
				// main wires the metrics and the dev peers; a library that imported them would pull Prometheus or a
				// fake IdP into every binary that uses it.
				breach(edge{rel, imp}, "imports", "only cmd wires internal/metrics and internal/devstack")
			}
		}
		for _, imp := range p.testImports {
			if o, ok := ours(imp); ok && under(rel, "internal") && under(o, "web") {
				breach(edge{rel, imp}, "imports in a test", "an internal package's tests do not build web; that wiring is tested in cmd or web")
			}
		}
	}
	for e, why := range pendingAllowances {
		if !used[e] {
			t.Errorf("allowance %s → %s (%s) is no longer needed: delete it from pendingAllowances", e.from, e.to, why)
		}
	}
}

// protocolLibraries are the modules that only auth and mail may import.
var protocolLibraries = []string{
	"github.com/emersion/go-imap",
	"github.com/emersion/go-smtp",
	"github.com/emersion/go-sasl",
	"github.com/coreos/go-oidc",
}

// loadPackages reads the import lines of every package directory below root, keyed by its path relative to the module.
func loadPackages(t *testing.T, root string) map[string]pkg {
	t.Helper()
	ctxt := build.Default
	ctxt.UseAllFiles = true // every build tag's files
	pkgs := map[string]pkg{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
			return filepath.SkipDir
		}
		bp, err := ctxt.ImportDir(p, build.ImportComment)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return err
		}
		rel := path.Clean(filepath.ToSlash(p))
		if rel == "." {
			rel = ""
		}
		pkgs[rel] = pkg{imports: bp.Imports, testImports: append(slices.Clone(bp.TestImports), bp.XTestImports...)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}
