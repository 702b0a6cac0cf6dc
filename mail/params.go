package mail

import (
	"bytes"
	"encoding/hex"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-message/charset"
)

// param returns parameter name of a header value, as parsed by
// go-message (parsed) or, when that lost it or the value uses RFC 2231
// extended syntax (name*=, name*0=), which mime.ParseMediaType decodes
// only in part, by lenientParam.
func param(raw, name string, parsed map[string]string) string {
	if v := parsed[name]; v != "" && !strings.Contains(strings.ToLower(raw), name+"*") {
		return v
	}
	if v := lenientParam(raw, name); v != "" {
		return v
	}
	return parsed[name]
}

// lenientParam extracts parameter name from a header value such as
// `attachment; filename*0*=iso-8859-1'de'R%FCck; filename*1=".pdf"` when
// mime.ParseMediaType cannot: it rejects the whole value for one bad
// parameter and decodes RFC 2231 extended values (RFC 2231 sections 3 and 4)
// only in UTF-8 and US-ASCII. Other charsets go through go-message's
// charset package.
func lenientParam(v, name string) string {
	name = strings.ToLower(name)
	type seg struct {
		val string
		ext bool
	}
	var (
		plain    string
		hasPlain bool
		segs     = map[int]seg{}
	)
	for _, field := range splitParams(v) {
		k, val, ok := strings.Cut(field, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = unquote(strings.TrimSpace(val))
		switch {
		case k == name:
			plain, hasPlain = val, true
		case k == name+"*":
			segs[0] = seg{val, true}
		case strings.HasPrefix(k, name+"*"):
			rest := k[len(name)+1:]
			ext := strings.HasSuffix(rest, "*")
			n, err := strconv.Atoi(strings.TrimSuffix(rest, "*"))
			if err == nil && n >= 0 && n < 100 {
				segs[n] = seg{val, ext}
			}
		}
	}
	if len(segs) == 0 {
		if hasPlain {
			return plain
		}
		return ""
	}
	var (
		raw []byte
		cs  string
	)
	for i := 0; i < len(segs); i++ {
		s, ok := segs[i]
		if !ok {
			break
		}
		if !s.ext {
			raw = append(raw, s.val...)
			continue
		}
		val := s.val
		if i == 0 {
			// charset'language'value
			if parts := strings.SplitN(val, "'", 3); len(parts) == 3 {
				cs, val = strings.ToLower(parts[0]), parts[2]
			}
		}
		raw = append(raw, percentDecode(val)...)
	}
	switch cs {
	case "", "utf-8", "us-ascii":
	default:
		if r, err := charset.Reader(cs, bytes.NewReader(raw)); err == nil {
			if out, err := io.ReadAll(r); err == nil {
				raw = out
			}
		}
	}
	return strings.ToValidUTF8(string(raw), "\uFFFD")
}

// splitParams splits a header value at semicolons outside quoted strings.
func splitParams(v string) []string {
	var (
		out     []string
		start   int
		quoted  bool
		escaped bool
	)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && quoted:
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		return b.String()
	}
	return s
}

func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if b, err := hex.DecodeString(s[i+1 : i+3]); err == nil {
				out = append(out, b[0])
				i += 2
				continue
			}
		}
		out = append(out, s[i])
	}
	return out
}
