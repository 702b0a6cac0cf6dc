package containertest

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// compose is the part of the Compose file format (compose-spec) that docs/deploy.md's example uses.
type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"` // a context path, or a mapping with context
		ReadOnly    bool              `yaml:"read_only"`
		Tmpfs       []string          `yaml:"tmpfs"`
		Volumes     []string          `yaml:"volumes"`
		Secrets     []string          `yaml:"secrets"`
		Environment map[string]string `yaml:"environment"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestDeployCompose parses docs/deploy.md's compose file (a YAML error fails it) and checks
// that the postern service runs the way the container test runs the image: an image the reader can get (it is
// built: none is published), read-only, tmpfs /tmp, the data volume and the configuration mounted, and every
// _FILE variable naming a secret the service has.
func TestDeployCompose(t *testing.T) {
	doc, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(# compose.yml\n.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/deploy.md has no ```yaml block starting with # compose.yml")
	}
	var c compose
	dec := yaml.NewDecoder(strings.NewReader(string(m[1])))
	dec.KnownFields(false) // other services use keys (ports, networks, depends_on) this test does not model
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("compose file: %v", err)
	}
	for name, s := range c.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("service %s mounts volume %s, which volumes: does not declare", name, src)
				}
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("service %s uses secret %s, which secrets: does not declare", name, sec)
			}
		}
	}

	p, ok := c.Services["postern"]
	if !ok {
		t.Fatal("compose file has no postern service")
	}
	if p.Build == nil {
		t.Errorf("postern service has no build: no image is published, so the reader must build it")
	}
	if strings.HasPrefix(p.Image, "ghcr.io/") {
		t.Errorf("postern image = %q, which is not published", p.Image)
	}
	if !p.ReadOnly {
		t.Error("postern service: read_only is not true")
	}
	if !slices.Contains(p.Tmpfs, "/tmp") {
		t.Errorf("postern tmpfs = %q, want /tmp", p.Tmpfs)
	}
	var data, cfg bool
	for _, v := range p.Volumes {
		parts := strings.Split(v, ":")
		data = data || len(parts) >= 2 && parts[1] == "/var/lib/postern"
		cfg = cfg || len(parts) == 3 && parts[1] == "/etc/postern/config.yml" && parts[2] == "ro"
	}
	if !data || !cfg {
		t.Errorf("postern volumes = %q, want a volume at /var/lib/postern and /etc/postern/config.yml read-only", p.Volumes)
	}
	for k, v := range p.Environment {
		sec, ok := strings.CutPrefix(v, "/run/secrets/")
		if !strings.HasSuffix(k, "_FILE") || !ok || !slices.Contains(p.Secrets, sec) {
			t.Errorf("postern environment %s=%s, want a _FILE variable naming one of its secrets %q", k, v, p.Secrets)
		}
	}
	if len(p.Environment) != 3 {
		t.Errorf("postern has %d secret variables, want 3 (client secret, session secret, encryption key)", len(p.Environment))
	}
}
