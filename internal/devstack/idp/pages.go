package idp

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
)

// The sign-in, consent and message pages. They are plain HTML with one stylesheet served from this IdP
// (pathStylesheet): the pages' CSP allows styles from 'self' only, so there is no inline style, and no script at all.

// pathStylesheet is where the pages' stylesheet is served.
const pathStylesheet = "/static/idp.css"

//go:embed idp.css
var stylesheet []byte

func handleStylesheet(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/css; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.Write(stylesheet)
}

type loginPage struct{ FlowID, ClientID, Username, Error string }

type scopeLine struct{ Name, Description string }

type consentPage struct {
	FlowID, ClientID, Username string
	Scopes                     []scopeLine
	// Remember says the answer will be remembered (Options.RememberConsent).
	Remember bool
}

type messagePage struct{ Message string }

// page wraps a page's body in the common head and frame.
func page(name, title, body string) *template.Template {
	return template.Must(template.New(name).Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light dark">
<title>` + title + ` · Development identity provider</title>
<link rel="stylesheet" href="` + pathStylesheet + `"></head><body>
<header class="idp-top"><span class="idp-brand">Development identity provider</span><span class="idp-note">shaped like Authelia · demo accounts only</span></header>
<main class="idp-card">` + body + `</main></body></html>`))
}

var (
	loginTmpl = page("login", "Sign in", `
<h1>Sign in</h1>
<p class="idp-lead">to continue to <strong>{{.ClientID}}</strong></p>
{{if .Error}}<p id="error" class="idp-error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login" class="idp-form">
<input type="hidden" name="flow_id" value="{{.FlowID}}">
<label for="username">Username</label>
<input id="username" name="username" value="{{.Username}}" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="submit" type="submit" class="idp-primary">Sign in</button>
</form>`)

	consentTmpl = page("consent", "Allow access", `
<h1>Hi {{.Username}}</h1>
<p class="idp-lead">The application <strong>{{.ClientID}}</strong> is requesting the following permissions:</p>
<ul id="scopes" class="idp-scopes">{{range .Scopes}}<li data-scope="{{.Name}}"><span class="idp-scope">{{.Name}}</span>{{if .Description}} <span class="idp-desc">{{.Description}}</span>{{end}}</li>{{end}}</ul>
{{if .Remember}}<p class="idp-fine" id="remember">Your answer is remembered until this identity provider restarts: signing in to {{.ClientID}} again will not ask.</p>{{end}}
<form method="post" action="/consent" class="idp-actions">
<input type="hidden" name="flow_id" value="{{.FlowID}}">
<button id="accept" type="submit" name="consent" value="accept" class="idp-primary">Accept</button>
<button id="deny" type="submit" name="consent" value="deny">Deny</button>
</form>`)

	messageTmpl = page("message", "Identity provider", `<p id="message">{{.Message}}</p>`)
)

func (p *IdP) render(w http.ResponseWriter, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		p.log.Error("idp: render", "template", t.Name(), "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self' "+p.formTargets()+"; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (p *IdP) renderMessage(w http.ResponseWriter, status int, msg string) {
	p.render(w, status, messageTmpl, messagePage{Message: msg})
}
