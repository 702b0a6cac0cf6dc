package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var durationType = reflect.TypeFor[time.Duration]()

// decodeYAML decodes data onto c field by field, so that every unknown key
// and every badly typed value becomes a problem with its key path and line
// (yaml.v3's KnownFields stops at the first one and names no path). A null
// value, or a key left out, keeps the default.
func decodeYAML(data []byte, c *Config, ps *Problems) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		ps.add(fileKey, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return // empty file: all defaults, validation reports what is required
	}
	decodeNode(doc.Content[0], reflect.ValueOf(c).Elem(), "", ps)
}

func decodeNode(n *yaml.Node, v reflect.Value, path string, ps *Problems) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return
	}
	switch {
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			ps.add(keyOr(path), "line %d: expected a mapping of keys", n.Line)
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(v, k.Value)
			if !ok {
				msg := fmt.Sprintf("line %d: unknown key", k.Line)
				if s := suggest(k.Value, v.Type()); s != "" {
					msg += fmt.Sprintf("; did you mean %s?", join(path, s))
				}
				name := k.Value
				if name == "" {
					name = `""` // an empty key (found by FuzzDecode) still needs a name in the report
				}
				ps.add(join(path, name), "%s", msg)
				continue
			}
			decodeNode(val, f, join(path, k.Value), ps)
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			ps.add(path, "line %d: expected a list", n.Line)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			decodeNode(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i), ps)
		}
		v.Set(s)
	default:
		if v.Kind() == reflect.Slice && n.Kind != yaml.SequenceNode {
			ps.add(path, "line %d: expected a list, such as [a, b]", n.Line)
			return
		}
		if v.Kind() != reflect.Slice && n.Kind != yaml.ScalarNode {
			ps.add(path, "line %d: expected %s", n.Line, typeName(v.Type()))
			return
		}
		tmp := reflect.New(v.Type())
		if err := n.Decode(tmp.Interface()); err != nil {
			ps.add(path, "line %d: %q is not %s", n.Line, n.Value, typeName(v.Type()))
			return
		}
		v.Set(tmp.Elem())
	}
}

// fieldByTag returns the field of struct v whose yaml tag names key.
func fieldByTag(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tagName(t.Field(i)) == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func keyOr(path string) string {
	if path == "" {
		return fileKey
	}
	return path
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration such as "90s", "5m" or "24h"`
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice:
		return "a list of strings"
	default:
		return "a string"
	}
}

// suggest returns the key of struct type t closest to an unknown key, if
// one is within two edits (a typo such as "tsl" for "tls").
func suggest(key string, t reflect.Type) string {
	best, bestD := "", 3
	for i := range t.NumField() {
		name := tagName(t.Field(i))
		if d := editDistance(key, name); d < bestD {
			best, bestD = name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// EnvName returns the environment variable that overrides the YAML key path,
// e.g. "oidc.client_secret" → "POSTERN_OIDC_CLIENT_SECRET".
func EnvName(key string) string {
	return "POSTERN_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// applyEnv overrides every scalar key (and the scopes list, comma-separated)
// from POSTERN_* variables. An empty variable is treated as unset. It returns
// the key paths that were overridden. Lists of mappings (previous_keys) have
// no override.
func applyEnv(c *Config, getenv func(string) string, ps *Problems) map[string]bool {
	set := map[string]bool{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		t := v.Type()
		for i := range t.NumField() {
			f, key := v.Field(i), join(path, tagName(t.Field(i)))
			if f.Kind() == reflect.Struct {
				walk(f, key)
				continue
			}
			if f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct {
				continue
			}
			name := EnvName(key)
			s := getenv(name)
			if s == "" {
				continue
			}
			if err := setFromString(f, s); err != nil {
				ps.add(name, "%q is not %s (overrides %s)", s, typeName(f.Type()), key)
				continue
			}
			set[key] = true
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return set
}

func setFromString(v reflect.Value, s string) error {
	s = strings.TrimSpace(s)
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Slice:
		var list []string
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		v.SetString(s)
	}
	return nil
}
