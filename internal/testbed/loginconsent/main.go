// Command loginconsent is the throwaway login and consent app that Ory Hydra
// needs in the end-to-end testbed (scripts/testbed-up). Hydra has no user
// interface of its own: it redirects the browser here with a login challenge,
// then a consent challenge, and this app accepts them through Hydra's admin
// API.
//
// The login page mimics the dev IdP's (form ids username, password, submit),
// so one form-posting driver or browser script works against both. Consent is
// accepted automatically for every requested scope, and the profile and email
// claims go into the ID token session, which is also what Hydra's /userinfo
// returns: Dovecot's oauth2 passdb and Stalwart read the user's address there.
//
// It uses the standard library only and listens on 127.0.0.1.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// user is one test account. Username doubles as the OIDC subject.
type user struct {
	Username, Password, Email, Name string
}

// users are the testbed's accounts; the e2e suite signs in as them.
var users = map[string]user{
	"alice": {Username: "alice", Password: "alice-password", Email: "alice@example.test", Name: "Alice Tester"},
	"bob":   {Username: "bob", Password: "bob-password", Email: "bob@example.test", Name: "Bob Tester"},
}

// addBenchAccounts adds n accounts bench1 … benchN (password "bench-password") that all have alice's address, for
// scripts/bench: its virtual users sign in as different people, as 50 users would, yet read the one mailbox the
// benchmark fills (Dovecot takes the mailbox from the address at userinfo). One account for all of them would make
// every sign-in retire another user's session beyond Postern's per-user cap of 10 grants
// (auth.KeeperOptions.MaxGrantsPerUser), in the middle of that user's sign-in.
func addBenchAccounts(n int) {
	a := users["alice"]
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("bench%d", i)
		users[name] = user{Username: name, Password: "bench-password", Email: a.Email, Name: fmt.Sprintf("Bench User %d", i)}
	}
}

// app calls Hydra's admin API on behalf of the login and consent pages.
type app struct {
	admin string // Hydra admin base URL, no trailing slash
	hc    *http.Client
}

// errHydra marks a failed admin API call; the page shows a generic message
// and the cause goes to the log only.
var errHydra = errors.New("hydra admin api")

// call sends a JSON request to Hydra's admin API and decodes the JSON answer
// into out.
func (a *app) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.admin+path+"?"+q.Encode(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", errHydra, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", errHydra, method, path, err)
	}
	if resp.StatusCode >= 300 {
		// Hydra's error bodies describe the challenge, never a token.
		return fmt.Errorf("%w: %s %s: status %d: %s", errHydra, method, path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// loginPage is the sign-in form. The ids match the dev IdP's so that the
// same drivers fill both.
var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Testbed sign-in</title></head>
<body><h1>Testbed sign-in</h1>
{{if .Err}}<p id="error" role="alert">{{.Err}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="challenge" value="{{.Challenge}}">
<label>Username <input id="username" name="username" autocomplete="username" value="{{.Username}}"></label><br>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password"></label><br>
<button id="submit" type="submit">Sign in</button>
</form></body></html>
`))

type loginData struct{ Challenge, Username, Err string }

// fail logs the cause and answers with a message that never quotes it.
func fail(w http.ResponseWriter, what string, err error) {
	log.Printf("%s: %v", what, err)
	http.Error(w, what+" failed; see the loginconsent log", http.StatusBadGateway)
}

// handleLoginForm shows the form, or accepts at once when Hydra says the
// user already has a login session there (skip).
func (a *app) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("login_challenge")
	if ch == "" {
		http.Error(w, "missing login_challenge", http.StatusBadRequest)
		return
	}
	var lr struct {
		Skip    bool   `json:"skip"`
		Subject string `json:"subject"`
	}
	if err := a.call(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/login", url.Values{"login_challenge": {ch}}, nil, &lr); err != nil {
		fail(w, "login request", err)
		return
	}
	if lr.Skip {
		a.acceptLogin(w, r, ch, lr.Subject)
		return
	}
	render(w, http.StatusOK, loginData{Challenge: ch})
}

// handleLoginPost checks the password and accepts the login challenge.
func (a *app) handleLoginPost(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	ch := r.PostForm.Get("challenge")
	name := r.PostForm.Get("username")
	u, ok := users[name]
	if !ok || u.Password != r.PostForm.Get("password") {
		// 401 with the form again, like the dev IdP, so drivers can tell a
		// refused password from a broken flow.
		render(w, http.StatusUnauthorized, loginData{Challenge: ch, Username: name, Err: "Wrong username or password."})
		return
	}
	a.acceptLogin(w, r, ch, u.Username)
}

func render(w http.ResponseWriter, status int, d loginData) {
	var buf bytes.Buffer
	if err := loginPage.Execute(&buf, d); err != nil {
		log.Printf("render login page: %v", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (a *app) acceptLogin(w http.ResponseWriter, r *http.Request, ch, subject string) {
	var red struct {
		RedirectTo string `json:"redirect_to"`
	}
	// remember=false: every sign-in shows the form, so tests never depend on
	// a Hydra login session left over from an earlier test.
	if err := a.call(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept", url.Values{"login_challenge": {ch}},
		map[string]any{"subject": subject, "remember": false}, &red); err != nil {
		fail(w, "accept login", err)
		return
	}
	log.Printf("login accepted for %s", subject)
	http.Redirect(w, r, red.RedirectTo, http.StatusFound)
}

// handleConsent grants every requested scope and audience and puts the
// claims of the granted scopes (OIDC Core section 5.4) into the session.
func (a *app) handleConsent(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("consent_challenge")
	if ch == "" {
		http.Error(w, "missing consent_challenge", http.StatusBadRequest)
		return
	}
	var cr struct {
		Subject        string   `json:"subject"`
		RequestedScope []string `json:"requested_scope"`
		RequestedAud   []string `json:"requested_access_token_audience"`
	}
	if err := a.call(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent", url.Values{"consent_challenge": {ch}}, nil, &cr); err != nil {
		fail(w, "consent request", err)
		return
	}
	u, ok := users[cr.Subject]
	if !ok {
		http.Error(w, "unknown subject", http.StatusBadRequest)
		return
	}
	claims := map[string]any{}
	for _, s := range cr.RequestedScope {
		switch s {
		case "email":
			claims["email"] = u.Email
			claims["email_verified"] = true
		case "profile":
			claims["preferred_username"] = u.Username
			claims["name"] = u.Name
		}
	}
	var red struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := a.call(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept", url.Values{"consent_challenge": {ch}},
		map[string]any{
			"grant_scope":                 cr.RequestedScope,
			"grant_access_token_audience": cr.RequestedAud,
			"remember":                    false,
			"session": map[string]any{
				"id_token":     claims, // the ID token and /userinfo
				"access_token": claims, // introspection "ext"
			},
		}, &red); err != nil {
		fail(w, "accept consent", err)
		return
	}
	log.Printf("consent accepted for %s scopes=%v", cr.Subject, cr.RequestedScope)
	http.Redirect(w, r, red.RedirectTo, http.StatusFound)
}

// handleLogout accepts Hydra's logout challenge (RP-initiated logout). Postern
// does not use it, since Authelia has no end-session endpoint, but a browser
// that lands here should not see an error.
func (a *app) handleLogout(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("logout_challenge")
	if ch == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "signed out")
		return
	}
	var red struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := a.call(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/logout/accept", url.Values{"logout_challenge": {ch}}, nil, &red); err != nil {
		fail(w, "accept logout", err)
		return
	}
	http.Redirect(w, r, red.RedirectTo, http.StatusFound)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:3000", "listen address")
	admin := flag.String("admin", "http://127.0.0.1:4445", "Hydra admin URL")
	bench := flag.Int("bench-accounts", 0, "add accounts bench1…benchN with alice's address (scripts/bench)")
	flag.Parse()
	addBenchAccounts(*bench)

	a := &app{admin: *admin, hc: &http.Client{Timeout: 10 * time.Second}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", a.handleLoginForm)
	mux.HandleFunc("POST /login", a.handleLoginPost)
	mux.HandleFunc("GET /consent", a.handleConsent)
	mux.HandleFunc("GET /logout", a.handleLogout)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })

	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("listening on %s (hydra admin %s)", *listen, *admin)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
