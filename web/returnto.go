package web

import (
	"net/url"
	"strings"
)

const defaultReturnTo = "/mail/INBOX"

// safeReturnTo accepts only a same-origin relative path and returns defaultReturnTo for anything else. It is the
// guard against open redirects through /login?return_to=…: an absolute URL, a scheme-relative "//host", a
// backslash (browsers treat "/\host" as "//host"), control characters and encoded variants of these are refused.
func safeReturnTo(s string) string {
	if s == "" || len(s) > 2048 {
		return defaultReturnTo
	}
	if s[0] != '/' {
		return defaultReturnTo
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return defaultReturnTo
	}
	// Browsers strip tabs and newlines from URLs, so "/\t/evil" would become "//evil".
	if hasControl(s) || strings.Contains(s, "\\") {
		return defaultReturnTo
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return defaultReturnTo
	}
	// Decode once more: "/%2F%2Fevil" decodes to "//evil", which some routers and proxies normalise into a
	// scheme-relative URL.
	dec, err := url.PathUnescape(u.Path)
	if err != nil || strings.HasPrefix(dec, "//") || strings.Contains(dec, "\\") || hasControl(dec) {
		return defaultReturnTo
	}
	if strings.HasPrefix(u.Path, "/login") || strings.HasPrefix(u.Path, CallbackPath) || strings.HasPrefix(u.Path, "/logout") {
		return defaultReturnTo
	}
	return s
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func hasControl(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}
