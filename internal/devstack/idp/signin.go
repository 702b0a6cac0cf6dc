package idp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// ErrLoginRejected is returned by SignIn when the IdP refused the username or password.
var ErrLoginRejected = errors.New("idp: login rejected")

// SignIn drives the IdP's pages the way a browser would, for Go tests without a browser. It GETs authURL with hc
// (which must have a cookie jar, so the IdP's login session carries over to the next sign-in), follows the IdP's own
// redirects, submits the login form with username and password if it is shown, then the consent page (accept or
// deny), and returns the URL the IdP redirected to on the client's side (code, state, iss, or error) without
// requesting it. hc's redirect policy is not used: SignIn handles every redirect itself.
func SignIn(ctx context.Context, hc *http.Client, authURL, username, password string, accept bool) (*url.URL, error) {
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c.Jar == nil {
		return nil, errors.New("idp: SignIn needs an http.Client with a cookie jar")
	}
	start, err := url.Parse(authURL)
	if err != nil {
		return nil, fmt.Errorf("idp: parse authorization url: %w", err)
	}
	var redirect *url.URL
	if ru := start.Query().Get("redirect_uri"); ru != "" {
		redirect, _ = url.Parse(ru)
	}

	next, method, form := start, http.MethodGet, url.Values(nil)
	submittedLogin := false
	for range 16 {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, next.String(), body)
		if err != nil {
			return nil, err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("idp: %s %s: %w", method, next.Path, err)
		}
		page, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("idp: read %s: %w", next.Path, err)
		}

		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Location()
			if err != nil {
				return nil, fmt.Errorf("idp: redirect from %s: %w", next.Path, err)
			}
			if leavesIdP(loc, start, redirect) {
				return loc, nil
			}
			next, method, form = loc, http.MethodGet, nil
			continue
		case resp.StatusCode == http.StatusUnauthorized && submittedLogin:
			return nil, ErrLoginRejected
		case resp.StatusCode != http.StatusOK:
			return nil, fmt.Errorf("idp: %s %s: status %d%s", method, next.Path, resp.StatusCode, oauthError(page))
		}

		f, err := ParseForm(page)
		if err != nil {
			return nil, fmt.Errorf("idp: page %s: %w", next.Path, err)
		}
		action, err := next.Parse(f.Action)
		if err != nil {
			return nil, fmt.Errorf("idp: form action: %w", err)
		}
		switch {
		case f.IDs["username"] && f.IDs["password"]:
			if submittedLogin {
				return nil, ErrLoginRejected
			}
			submittedLogin = true
			f.Values.Set("username", username)
			f.Values.Set("password", password)
		case f.IDs["accept"] && f.IDs["deny"]:
			if accept {
				f.Values.Set("consent", "accept")
			} else {
				f.Values.Set("consent", "deny")
			}
		default:
			return nil, fmt.Errorf("idp: page %s is neither the login nor the consent page", next.Path)
		}
		next, method, form = action, http.MethodPost, f.Values
	}
	return nil, errors.New("idp: too many steps in the sign-in flow")
}

// leavesIdP reports whether loc is the client's side of the flow: its redirect_uri, or any other origin.
func leavesIdP(loc, idp, redirect *url.URL) bool {
	if redirect != nil && loc.Scheme == redirect.Scheme && loc.Host == redirect.Host && loc.Path == redirect.Path {
		return true
	}
	return loc.Scheme != idp.Scheme || loc.Host != idp.Host
}

// oauthError extracts an RFC 6749 error from a JSON body, for a readable test failure.
func oauthError(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	return fmt.Sprintf(" (%s: %s)", e.Error, e.Description)
}

// Form is the first form of a sign-in page: its action, hidden inputs and the ids of its controls. SignIn uses it
// for the dev IdP's pages; the end-to-end suite uses it for Hydra's login app, whose form is shaped the same.
type Form struct {
	Action string
	Values url.Values      // hidden inputs
	IDs    map[string]bool // ids of inputs and buttons
}

// ParseForm reads the first form of page.
func ParseForm(page []byte) (Form, error) {
	f := Form{Values: url.Values{}, IDs: map[string]bool{}}
	inForm, seen := false, false
	z := html.NewTokenizer(bytes.NewReader(page))
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if !seen {
				return f, errors.New("no form")
			}
			return f, nil
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "form" && inForm {
				return f, nil
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			attr := func(k string) string {
				for _, a := range t.Attr {
					if a.Key == k {
						return a.Val
					}
				}
				return ""
			}
			switch t.Data {
			case "form":
				inForm, seen = true, true
				f.Action = attr("action")
			case "input", "button":
				if !inForm {
					continue
				}
				if id := attr("id"); id != "" {
					f.IDs[id] = true
				}
				if t.Data == "input" && attr("type") == "hidden" {
					f.Values.Set(attr("name"), attr("value"))
				}
			}
		}
	}
}
