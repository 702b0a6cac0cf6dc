package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func contractSessionRoundTrip(t *testing.T, s *testStore) {
	ctx := context.Background()
	s.now = func() time.Time { return at(0) }
	tests := []struct {
		name string
		in   Session
		want Session
	}{
		{"all fields", Session{ID: "s1", Data: []byte("\x00gob\xff"), CreatedAt: at(-time.Hour), LastSeen: at(-time.Minute), ExpiresAt: at(time.Hour)},
			Session{ID: "s1", Data: []byte("\x00gob\xff"), CreatedAt: at(-time.Hour), LastSeen: at(-time.Minute), ExpiresAt: at(time.Hour)}},
		{"defaults and empty data", Session{ID: "s2", ExpiresAt: at(time.Hour)},
			Session{ID: "s2", CreatedAt: at(0), LastSeen: at(0), ExpiresAt: at(time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SaveSession(ctx, tt.in); err != nil {
				t.Fatalf("SaveSession = %v", err)
			}
			got, err := s.Session(ctx, tt.in.ID)
			if err != nil {
				t.Fatalf("Session = %v", err)
			}
			sameSession(t, got, tt.want)
		})
	}
}

func sameSession(t *testing.T, got, want Session) {
	t.Helper()
	if got.ID != want.ID || !bytes.Equal(got.Data, want.Data) || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.LastSeen.Equal(want.LastSeen) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("session = %+v,\nwant    %+v", got, want)
	}
}

func contractSaveSessionUpsert(t *testing.T, s *testStore) {
	ctx := context.Background()
	first := Session{ID: "s1", Data: []byte("v1"), CreatedAt: at(0), LastSeen: at(0), ExpiresAt: at(time.Hour)}
	if err := s.SaveSession(ctx, first); err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return at(0) }
	second := Session{ID: "s1", Data: []byte("v2"), CreatedAt: at(time.Minute), LastSeen: at(time.Minute), ExpiresAt: at(2 * time.Hour)}
	if err := s.SaveSession(ctx, second); err != nil {
		t.Fatal(err)
	}
	got, err := s.Session(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	want := second
	want.CreatedAt = first.CreatedAt // the absolute lifetime starts at the first save
	sameSession(t, got, want)

	if err := s.TouchSession(ctx, "s1", at(2*time.Minute), at(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Session(ctx, "s1")
	want.LastSeen, want.ExpiresAt = at(2*time.Minute), at(3*time.Hour)
	sameSession(t, got, want)
	if err := s.TouchSession(ctx, "missing", at(0), at(0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("TouchSession(missing) = %v, want ErrNotFound", err)
	}
}

func contractSaveSessionRejects(t *testing.T, s *testStore) {
	tests := []struct {
		name string
		sess Session
		want string
	}{
		{"no id", Session{ExpiresAt: at(0)}, "empty id"},
		{"no expiry", Session{ID: "s"}, "no expiry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SaveSession(context.Background(), tt.sess); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("SaveSession = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func contractSessionExpiry(t *testing.T, s *testStore) {
	ctx := context.Background()
	s.now = func() time.Time { return at(0) }
	for i, exp := range []time.Duration{-time.Hour, -time.Second, 0, time.Second, time.Hour} {
		if err := s.SaveSession(ctx, Session{ID: fmt.Sprint("s", i), Data: []byte("x"), ExpiresAt: at(exp)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		id      string
		wantErr error
	}{
		{"s0", ErrNotFound}, {"s1", ErrNotFound}, {"s2", ErrNotFound}, // expired at or before now
		{"s3", nil}, {"s4", nil},
		{"missing", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run("read "+tt.id, func(t *testing.T) {
			_, err := s.Session(ctx, tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Session(%s) = %v, want %v", tt.id, err, tt.wantErr)
			}
		})
	}
	n, err := s.DeleteExpiredSessions(ctx, at(0))
	if err != nil || n != 3 {
		t.Errorf("DeleteExpiredSessions = %d, %v; want 3", n, err)
	}
	if n, _ := s.DeleteExpiredSessions(ctx, at(0)); n != 0 {
		t.Errorf("second DeleteExpiredSessions = %d, want 0", n)
	}
	var left int
	left = s.count(t, "sessions")
	if left != 2 {
		t.Errorf("sessions left = %d, want 2", left)
	}
	if err := s.DeleteSession(ctx, "s3"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, "s3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Session after DeleteSession = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, "s3"); err != nil {
		t.Errorf("DeleteSession(missing) = %v, want nil", err)
	}
}

func contractSessionDataBoundToID(t *testing.T, s *testStore) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	for _, id := range []string{"victim", "attacker"} {
		if err := s.SaveSession(ctx, Session{ID: id, Data: []byte(id), ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.exec(t, `UPDATE sessions SET data_sealed =
		(SELECT data_sealed FROM sessions WHERE id = 'victim') WHERE id = 'attacker'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, "attacker"); err == nil || strings.Contains(err.Error(), "attacker") {
		t.Errorf("Session with transplanted data = %v; want an error that does not echo the session id", err)
	}
}
