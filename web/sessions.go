package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/gob"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/postern/postern/internal/store"
)

// SessionStore persists browser sessions server-side; *store.SQLite implements it and seals the data at rest.
type SessionStore interface {
	SaveSession(ctx context.Context, s store.Session) error
	Session(ctx context.Context, id string) (store.Session, error)
	DeleteSession(ctx context.Context, id string) error
}

// serverStore is a gorilla sessions.Store that keeps everything on the server. The cookie carries only a random
// 256-bit id, signed with the session secret (HMAC) so that a forged or truncated id is rejected before any
// database lookup. The data row holds the grant id and the user: none of it ever reaches the browser. A session is
// written only once signed in; the sign-in flow before that lives in a sealed cookie (flowcookie.go).
type serverStore struct {
	db       SessionStore
	codec    *securecookie.SecureCookie
	opts     sessions.Options
	idle     time.Duration
	lifetime time.Duration
	// browserSession: the cookie has no Max-Age (Config.BrowserSessionCookie).
	browserSession bool
}

// Values keys. The typed wrapper below is the only code that touches them.
const (
	keyGrant    = "grant"
	keyUser     = "user"
	keyCreated  = "created"
	keyLastSeen = "seen"
)

func newServerStore(db SessionStore, secret []byte, cookieName string, secure bool, idle, lifetime time.Duration, browserSession bool) *serverStore {
	codec := securecookie.New(secret, nil) // signed, not encrypted: the value is a random id with no meaning
	codec.MaxAge(int(lifetime / time.Second))
	codec.SetSerializer(securecookie.NopEncoder{})
	return &serverStore{
		db:    db,
		codec: codec,
		opts: sessions.Options{
			Path:     "/",
			HttpOnly: true,
			Secure:   secure,
			// Lax, not Strict: the IdP's redirect back to /callback is a cross-site top-level GET, and the login flow
			// stored in this session must be sent with it.
			SameSite: http.SameSiteLaxMode,
		},
		idle:           idle,
		lifetime:       lifetime,
		browserSession: browserSession,
	}
}

// Get returns the session cached for this request, loading it once.
func (st *serverStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(st, name)
}

// New loads the session named by the request's cookie, or returns a fresh one. An expired, unknown or forged cookie
// yields a fresh session and no error: the user simply is not signed in.
func (st *serverStore) New(r *http.Request, name string) (*sessions.Session, error) {
	s := sessions.NewSession(st, name)
	opts := st.opts
	s.Options = &opts
	s.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return s, nil
	}
	var raw []byte
	if err := st.codec.Decode(name, c.Value, &raw); err != nil {
		return s, nil
	}
	id := string(raw)
	row, err := st.db.Session(r.Context(), rowID(id))
	if errors.Is(err, store.ErrNotFound) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("load session: %w", err)
	}
	now := time.Now()
	if !row.ExpiresAt.IsZero() && !now.Before(row.ExpiresAt) {
		_ = st.db.DeleteSession(r.Context(), rowID(id))
		return s, nil
	}
	if err := gob.NewDecoder(bytes.NewReader(row.Data)).Decode(&s.Values); err != nil {
		// Data from an older, incompatible version: start over rather than fail every request.
		return s, nil
	}
	s.ID = id
	s.IsNew = false
	return s, nil
}

// Save writes the session row and the cookie. MaxAge < 0 deletes both.
func (st *serverStore) Save(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	ctx := r.Context()
	if s.Options != nil && s.Options.MaxAge < 0 {
		if s.ID != "" {
			if err := st.db.DeleteSession(ctx, rowID(s.ID)); err != nil {
				return fmt.Errorf("delete session: %w", err)
			}
		}
		http.SetCookie(w, sessions.NewCookie(s.Name(), "", s.Options))
		return nil
	}
	now := time.Now()
	if s.ID == "" {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		s.ID = base64.RawURLEncoding.EncodeToString(b[:])
		s.Values[keyCreated] = now.UnixNano()
	}
	created := now
	if v, ok := s.Values[keyCreated].(int64); ok {
		created = time.Unix(0, v)
	}
	s.Values[keyLastSeen] = now.UnixNano()
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(s.Values); err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	expires := now.Add(st.idle)
	if _, signedIn := s.Values[keyGrant]; !signedIn {
		// A session that only carries a sign-in flow lives as long as the flow may (auth refuses flows older than
		// 10 minutes), so anonymous /login requests cannot fill the store with day-long rows.
		expires = now.Add(preLoginLifetime)
	}
	if hard := created.Add(st.lifetime); hard.Before(expires) {
		expires = hard
	}
	if err := st.db.SaveSession(ctx, store.Session{ID: rowID(s.ID), Data: buf.Bytes(), CreatedAt: created, LastSeen: now, ExpiresAt: expires}); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	enc, err := st.codec.Encode(s.Name(), []byte(s.ID))
	if err != nil {
		return fmt.Errorf("sign session cookie: %w", err)
	}
	opts := *s.Options
	// The cookie lives as long as the absolute lifetime allows; the idle limit is enforced server-side.
	opts.MaxAge = int(time.Until(created.Add(st.lifetime)) / time.Second)
	if st.browserSession {
		opts.MaxAge = 0 // no Max-Age, no Expires: the browser drops it when its session ends
	}
	http.SetCookie(w, sessions.NewCookie(s.Name(), enc, &opts))
	return nil
}

// preLoginLifetime bounds a session that has no grant yet.
const preLoginLifetime = 15 * time.Minute

// session is the typed view of a gorilla session that handlers use; nothing else reads or writes Values.
type session struct {
	s *sessions.Session
}

func (x session) GrantID() string {
	id, _ := x.s.Values[keyGrant].(string)
	return id
}

// UserKey is the user the grant belongs to (userKey), "" for sessions signed in before it was recorded.
func (x session) UserKey() string {
	id, _ := x.s.Values[keyUser].(string)
	return id
}

// SignIn binds the session to a grant of user (a userKey) under a new id: the pre-login id, which an attacker may
// have planted, dies here (session fixation).
func (x session) SignIn(ctx context.Context, st *serverStore, grantID, user string) error {
	if x.s.ID != "" {
		if err := st.db.DeleteSession(ctx, rowID(x.s.ID)); err != nil {
			return fmt.Errorf("drop pre-login session: %w", err)
		}
	}
	x.s.ID = ""
	x.s.Values = map[any]any{keyGrant: grantID, keyUser: user}
	return nil
}

// LastSeen reports when the session was last saved.
func (x session) LastSeen() time.Time {
	if v, ok := x.s.Values[keyLastSeen].(int64); ok {
		return time.Unix(0, v)
	}
	return time.Time{}
}

// Destroy marks the session for deletion at Save.
func (x session) Destroy() {
	x.s.Options.MaxAge = -1
	x.s.Values = map[any]any{}
}

// rowID is the database key of a session: a hash of the cookie's id, so that someone who can read the database (a
// backup, a replica) cannot turn a row into a working cookie.
func rowID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
