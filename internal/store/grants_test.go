package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func contractGrantRoundTrip(t *testing.T, s *testStore) {
	ctx := context.Background()
	tests := []struct {
		name  string
		grant Grant
	}{
		{"every field", sampleGrant("full")},
		{"empty tokens and zero times", Grant{
			ID: "bare", Issuer: "https://auth.example.org", Subject: "bare", Kind: KindWeb,
			State: StateNeedsSignIn, CreatedAt: at(0), UpdatedAt: at(0),
		}},
		{"unicode and long values", func() Grant {
			g := sampleGrant("uni")
			g.Name, g.AccessToken = "Zoë Ørsted 🦊", strings.Repeat("a.b-c_", 2000)
			return g
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.grant
			if err := s.CreateGrant(ctx, &in); err != nil {
				t.Fatalf("CreateGrant = %v", err)
			}
			want := tt.grant
			want.Version = 1
			sameGrant(t, in, want)
			got, err := s.Grant(ctx, tt.grant.ID)
			if err != nil {
				t.Fatalf("Grant = %v", err)
			}
			sameGrant(t, got, want)
		})
	}
}

func contractCreateGrantDefaults(t *testing.T, s *testStore) {
	ctx := context.Background()
	s.now = func() time.Time { return at(0) }

	g := Grant{Issuer: "https://auth.example.org", Subject: "alice", Version: 42}
	if err := s.CreateGrant(ctx, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.ID) != 22 || strings.ContainsAny(g.ID, "+/=") {
		t.Errorf("generated ID = %q, want 22 URL-safe characters (128 bits)", g.ID)
	}
	if g.Version != 1 || g.State != StateOK || !g.CreatedAt.Equal(at(0)) || !g.UpdatedAt.Equal(at(0)) {
		t.Errorf("defaults = version %d, state %q, created %v, updated %v; want 1, ok, %v, %v",
			g.Version, g.State, g.CreatedAt, g.UpdatedAt, at(0), at(0))
	}
	other := Grant{Issuer: "https://auth.example.org", Subject: "alice"}
	if err := s.CreateGrant(ctx, &other); err != nil || other.ID == g.ID {
		t.Errorf("second CreateGrant = %v, id %q (first %q); want a new id", err, other.ID, g.ID)
	}
}

func contractCreateGrantRejects(t *testing.T, s *testStore) {
	ctx := context.Background()
	createGrant(t, s, "taken")
	tests := []struct {
		name    string
		grant   Grant
		wantErr error
		wantMsg string
	}{
		{"duplicate id", sampleGrant("taken"), ErrConflict, "id exists"},
		{"no issuer", Grant{Subject: "x"}, nil, "issuer and a subject"},
		{"no subject", Grant{Issuer: "x"}, nil, "issuer and a subject"},
		{"unknown state", Grant{Issuer: "x", Subject: "y", State: "happy"}, nil, `unknown state "happy"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.grant
			err := s.CreateGrant(ctx, &g)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("CreateGrant = %v, want error containing %q", err, tt.wantMsg)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("CreateGrant = %v, want errors.Is %v", err, tt.wantErr)
			}
		})
	}
}

func contractGrantNotFound(t *testing.T, s *testStore) {
	ctx := context.Background()
	if _, err := s.Grant(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Grant(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateGrant(ctx, Grant{ID: "nope", Version: 1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateGrant(missing) = %v, want ErrNotFound", err)
	}
	if err := s.TouchGrant(ctx, "nope", at(0), at(0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("TouchGrant(missing) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteGrant(ctx, "nope"); err != nil {
		t.Errorf("DeleteGrant(missing) = %v, want nil (idempotent)", err)
	}
}

func contractUpdateGrant(t *testing.T, s *testStore) {
	ctx := context.Background()
	s.now = func() time.Time { return at(time.Hour) }
	orig := createGrant(t, s, "g1")

	next := orig
	next.Issuer, next.Subject, next.CreatedAt = "https://evil.example", "mallory", at(-999*time.Hour) // ignored
	next.Email, next.Username, next.Name = "new@example.org", "newuser", "New Name"
	next.AccessToken, next.RefreshToken, next.IDToken = "access-2", "refresh-2", ""
	next.AccessExpiry, next.RefreshExpiry = at(2*time.Hour), at(31*24*time.Hour)
	next.State, next.LastError, next.FailCount = StateOK, "", 0
	next.LastRefresh, next.LastActive, next.NextRefreshAt = at(time.Hour), at(time.Hour), at(110*time.Minute)

	got, err := s.UpdateGrant(ctx, next)
	if err != nil {
		t.Fatalf("UpdateGrant = %v", err)
	}
	want := next
	want.Issuer, want.Subject, want.CreatedAt = orig.Issuer, orig.Subject, orig.CreatedAt
	want.Version, want.UpdatedAt = 2, at(time.Hour)
	sameGrant(t, got, want)
	stored, err := s.Grant(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	sameGrant(t, stored, want)
}

// TestUpdateGrantStaleWriter is the refresh-token safety property: two
// writers read the same version; the second to write must fail and must not
// replace the first writer's (newer) refresh token.
func contractUpdateGrantStaleWriter(t *testing.T, s *testStore) {
	ctx := context.Background()
	createGrant(t, s, "g1")
	a, _ := s.Grant(ctx, "g1")
	b, _ := s.Grant(ctx, "g1")

	a.RefreshToken = "rotated-by-a"
	if _, err := s.UpdateGrant(ctx, a); err != nil {
		t.Fatalf("first UpdateGrant = %v", err)
	}
	b.RefreshToken = "spent-by-b"
	_, err := s.UpdateGrant(ctx, b)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("stale UpdateGrant = %v, want ErrConflict", err)
	}
	if !strings.Contains(err.Error(), "have version 1, stored 2") {
		t.Errorf("conflict error = %q, want it to name both versions", err)
	}
	got, _ := s.Grant(ctx, "g1")
	if got.RefreshToken != "rotated-by-a" || got.Version != 2 {
		t.Errorf("stored = %q v%d, want rotated-by-a v2", got.RefreshToken, got.Version)
	}
}

func contractUpdateGrantConcurrent(t *testing.T, s *testStore) {
	ctx := context.Background()
	other := s.reopen(t)
	g := createGrant(t, s, "g1")
	const writers = 16
	results := make(chan error, writers)
	for i := range writers {
		h := []contractStore{s, other}[i%2]
		go func() {
			g := g
			g.RefreshToken = "writer"
			_, err := h.UpdateGrant(ctx, g)
			results <- err
		}()
	}
	var ok, conflict int
	for range writers {
		switch err := <-results; {
		case err == nil:
			ok++
		case errors.Is(err, ErrConflict):
			conflict++
		default:
			t.Errorf("UpdateGrant = %v", err)
		}
	}
	if ok != 1 || conflict != writers-1 {
		t.Errorf("%d writers of version 1: %d succeeded, %d conflicted; want 1 and %d", writers, ok, conflict, writers-1)
	}
}

func contractTouchGrant(t *testing.T, s *testStore) {
	ctx := context.Background()
	g := sampleGrant("g1")
	g.State = StateOK
	if err := s.CreateGrant(ctx, &g); err != nil {
		t.Fatal(err)
	}
	stale, _ := s.Grant(ctx, "g1")

	// Touch brings next_refresh_at earlier, never later, and never moves last_active back.
	early := g.NextRefreshAt.Add(-time.Minute)
	if err := s.TouchGrant(ctx, "g1", at(time.Hour), early); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Grant(ctx, "g1")
	want := g
	want.LastActive, want.NextRefreshAt = at(time.Hour), early
	sameGrant(t, got, want) // version, tokens, updated_at untouched
	if err := s.TouchGrant(ctx, "g1", at(time.Minute), early.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Grant(ctx, "g1"); !got.NextRefreshAt.Equal(early) || !got.LastActive.Equal(at(time.Hour)) {
		t.Errorf("a later touch moved next_refresh_at to %v / last_active to %v; want both kept", got.NextRefreshAt, got.LastActive)
	}

	// A writer whose copy predates the touch still succeeds (no version bump)
	// but cannot roll last_active back.
	updated, err := s.UpdateGrant(ctx, stale)
	if err != nil {
		t.Fatalf("UpdateGrant after TouchGrant = %v, want success", err)
	}
	if !updated.LastActive.Equal(at(time.Hour)) {
		t.Errorf("LastActive after stale update = %v, want %v (kept)", updated.LastActive, at(time.Hour))
	}
}

func contractDeleteGrant(t *testing.T, s *testStore) {
	ctx := context.Background()
	g := createGrant(t, s, "g1")
	if err := s.DeleteGrant(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grant(ctx, "g1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Grant after delete = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateGrant(ctx, g); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateGrant after delete = %v, want ErrNotFound", err)
	}
}

func contractGrantsBySubjectAndCount(t *testing.T, s *testStore) {
	ctx := context.Background()
	for i, spec := range []struct {
		id, issuer, subject string
		state               GrantState
	}{
		{"a2", "https://one", "alice", StateOK},
		{"b1", "https://one", "bob", StateNeedsSignIn},
		{"a1", "https://one", "alice", StateDegraded},
		{"a3", "https://two", "alice", StateOK},
	} {
		g := Grant{ID: spec.id, Issuer: spec.issuer, Subject: spec.subject, State: spec.state,
			CreatedAt: at(time.Duration(i) * time.Second)}
		if err := s.CreateGrant(ctx, &g); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		issuer, subject string
		want            []string
	}{
		{"https://one", "alice", []string{"a2", "a1"}}, // creation order
		{"https://two", "alice", []string{"a3"}},
		{"https://one", "carol", nil},
	}
	for _, tt := range tests {
		t.Run(tt.issuer+" "+tt.subject, func(t *testing.T) {
			got, err := s.GrantsBySubject(ctx, tt.issuer, tt.subject)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("GrantsBySubject = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	counts, err := s.CountGrantsByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[GrantState]int{StateOK: 2, StateDegraded: 1, StateNeedsSignIn: 1}
	for st, n := range want {
		if counts[st] != n {
			t.Errorf("CountGrantsByState[%s] = %d, want %d", st, counts[st], n)
		}
	}
}

// TestTokensSealedAtRest greps the raw database files for the tokens. The
// email, stored in clear, must be found, proving the grep can see row data.
func TestTokensSealedAtRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, path := openTemp(t)
	g := sampleGrant("g1")
	g.Email = "canary-email@example.org"
	g.AccessToken = "CANARY-ACCESS-7f3c9a1e"
	g.RefreshToken = "CANARY-REFRESH-5b2d8e4f"
	g.IDToken = "CANARY-IDTOKEN-0a6c1d3b"
	if err := s.CreateGrant(ctx, &g); err != nil {
		t.Fatal(err)
	}
	g.RefreshToken = "CANARY-REFRESH-ROTATED-9e1f"
	if _, err := s.UpdateGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	sessData := []byte("CANARY-SESSION-DATA-4c8b")
	if err := s.SaveSession(ctx, Session{ID: "s1", Data: sessData, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	secrets := []string{"CANARY-ACCESS", "CANARY-REFRESH", "CANARY-IDTOKEN", "CANARY-SESSION"}

	check := func(t *testing.T) {
		var raw []byte
		for _, suffix := range []string{"", "-wal"} {
			b, err := os.ReadFile(path + suffix)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			raw = append(raw, b...)
		}
		if !bytes.Contains(raw, []byte(g.Email)) {
			t.Fatalf("email not found in %d raw bytes: the grep cannot see row data", len(raw))
		}
		for _, secret := range secrets {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("%s found in clear in the database files", secret)
			}
		}
	}
	t.Run("open", check) // the rows are in the WAL
	s.Close()
	t.Run("closed", check) // checkpointed into the main file
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "postern.db")
	old := openAt(t, path, newSealer(t, "old"))
	g := sampleGrant("g1")
	if err := old.CreateGrant(ctx, &g); err != nil {
		t.Fatal(err)
	}
	if err := old.SaveSession(ctx, Session{ID: "s1", Data: []byte("v"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	old.Close()

	rotated := openAt(t, path, newSealer(t, "new", "old"))
	got, err := rotated.Grant(ctx, "g1")
	if err != nil {
		t.Fatalf("Grant under rotated keys = %v", err)
	}
	if got.RefreshToken != g.RefreshToken {
		t.Errorf("RefreshToken = %q, want %q", got.RefreshToken, g.RefreshToken)
	}
	if sess, err := rotated.Session(ctx, "s1"); err != nil || string(sess.Data) != "v" {
		t.Errorf("Session under rotated keys = %q, %v", sess.Data, err)
	}
	// An update re-seals under the new key, so the old key can then go.
	if _, err := rotated.UpdateGrant(ctx, got); err != nil {
		t.Fatal(err)
	}
	var keyID string
	if err := rotated.db.QueryRow("SELECT key_id FROM grants WHERE id = 'g1'").Scan(&keyID); err != nil || keyID != "new" {
		t.Errorf("key_id after update = %q, %v; want new", keyID, err)
	}
	rotated.Close()
	onlyNew := openAt(t, path, newSealer(t, "new"))
	if _, err := onlyNew.Grant(ctx, "g1"); err != nil {
		t.Errorf("Grant with only the new key after re-seal = %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "postern.db")
	s := openAt(t, path, newSealer(t, "old"))
	createGrant(t, s, "g1")
	s.Close()

	tests := []struct {
		name    string
		current string
		wantErr string
	}{
		// The configuration lost the key: the error names it.
		{"key removed", "new", `grant "g1": open access token: seal: unknown key id "old"`},
		// Same id, different bytes: authentication fails.
		{"key replaced", "other", "authentication failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealer := newSealer(t, tt.current)
			if tt.current == "other" {
				sealer = newSealerBytes(t, "old", testKey(9))
			}
			s := openAt(t, path, sealer)
			_, err := s.Grant(ctx, "g1")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Grant = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestSealedBlobBoundToRow moves a sealed refresh token into another grant's
// row, as an attacker with write access to the file might; it must not open.
func contractSealedBlobBoundToRow(t *testing.T, s *testStore) {
	ctx := context.Background()
	for _, id := range []string{"victim", "attacker"} {
		g := sampleGrant(id)
		if err := s.CreateGrant(ctx, &g); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.exec(t, `UPDATE grants SET refresh_sealed =
		(SELECT refresh_sealed FROM grants WHERE id = 'victim') WHERE id = 'attacker'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grant(ctx, "attacker"); err == nil || !strings.Contains(err.Error(), "open refresh token") {
		t.Errorf("Grant with a transplanted token = %v, want an open error", err)
	}
}

func contractDeleteEndedGrants(t *testing.T, s *testStore) {
	ctx := context.Background()
	mk := func(id string, state GrantState, lastActive time.Duration) {
		g := sampleGrant(id)
		g.State, g.LastActive = state, at(lastActive)
		if err := s.CreateGrant(ctx, &g); err != nil {
			t.Fatal(err)
		}
	}
	mk("ended-old", StateNeedsSignIn, time.Minute)
	mk("ended-recent", StateNeedsSignIn, 3*time.Hour)
	mk("ok-old", StateOK, time.Minute)
	mk("degraded-old", StateDegraded, time.Minute)
	n, err := s.DeleteEndedGrants(ctx, at(2*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DeleteEndedGrants = %d, %v; want 1, nil", n, err)
	}
	for id, want := range map[string]bool{"ended-old": false, "ended-recent": true, "ok-old": true, "degraded-old": true} {
		_, err := s.Grant(ctx, id)
		if got := err == nil; got != want {
			t.Errorf("grant %s present = %v, want %v", id, got, want)
		}
	}
}

// TestTouchKeepsBackoff: a page view that read the grant before a refresh failed must not replace the degraded
// grant's backoff time with its own schedule.
func contractTouchKeepsBackoff(t *testing.T, s *testStore) {
	ctx := context.Background()
	createGrant(t, s, "g1")
	cur, _ := s.Grant(ctx, "g1")
	cur.State, cur.NextRefreshAt = StateDegraded, at(5*time.Second)
	if _, err := s.UpdateGrant(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchGrant(ctx, "g1", at(time.Hour), at(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Grant(ctx, "g1"); !got.NextRefreshAt.Equal(at(5 * time.Second)) {
		t.Errorf("touch moved a degraded grant's next_refresh_at to %v, want its backoff %v", got.NextRefreshAt, at(5*time.Second))
	}
}
