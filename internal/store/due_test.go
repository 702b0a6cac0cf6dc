package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func contractDueGrants(t *testing.T, s *testStore) {
	ctx := context.Background()
	for _, spec := range []struct {
		id    string
		next  time.Duration
		state GrantState
	}{
		{"later", time.Hour, StateOK},
		{"due-2", -time.Minute, StateOK},
		{"due-1", -time.Hour, StateDegraded},
		{"exactly-now", 0, StateOK},
		{"needs-sign-in", -2 * time.Hour, StateNeedsSignIn},
		{"due-3", -time.Second, StateOK},
	} {
		g := Grant{ID: spec.id, Issuer: "https://i", Subject: spec.id, State: spec.state, NextRefreshAt: at(spec.next)}
		if err := s.CreateGrant(ctx, &g); err != nil {
			t.Fatal(err)
		}
	}
	unscheduled := Grant{ID: "unscheduled", Issuer: "https://i", Subject: "u"} // zero NextRefreshAt: due first
	if err := s.CreateGrant(ctx, &unscheduled); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		before time.Time
		limit  int
		want   []string
	}{
		{"all due, most overdue first", at(0), 10, []string{"unscheduled", "due-1", "due-2", "due-3", "exactly-now"}},
		{"limit", at(0), 2, []string{"unscheduled", "due-1"}},
		{"earlier cut-off", at(-30 * time.Minute), 10, []string{"unscheduled", "due-1"}},
		{"zero limit", at(0), 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.DueGrants(ctx, tt.before, tt.limit)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("DueGrants = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestDueGrantsUsesIndex holds the refresher's query to an index search, so
// its cost does not grow with the number of grants.
func TestDueGrantsUsesIndex(t *testing.T) {
	t.Parallel()
	s, _ := openTemp(t)
	// Some rows and fresh statistics, so the planner's choice is the one it
	// would make in production rather than on an empty table.
	for i := range 50 {
		g := Grant{ID: fmt.Sprint(i), Issuer: "https://i", Subject: "s", NextRefreshAt: at(time.Duration(i) * time.Minute)}
		if err := s.CreateGrant(context.Background(), &g); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.db.Exec("ANALYZE"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		query string
		args  []any
		want  string
	}{
		{"DueGrants", dueGrantsSQL, []any{toNanos(at(0)), 256}, "SEARCH grants USING COVERING INDEX grants_due (next_refresh_at<?)"},
		{"GrantsBySubject", "SELECT id FROM grants WHERE issuer = ? AND subject = ? ORDER BY created_at, id", []any{"i", "s"}, "SEARCH grants USING INDEX grants_identity (issuer=? AND subject=?)"},
		{"DeleteExpiredSessions", "DELETE FROM sessions WHERE expires_at <= ?", []any{int64(0)}, "SEARCH sessions USING INDEX sessions_expiry (expires_at<?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := s.db.Query("EXPLAIN QUERY PLAN "+tt.query, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			joined := strings.Join(plan, "; ")
			if !strings.Contains(joined, tt.want) {
				t.Errorf("plan = %q, want %q", joined, tt.want)
			}
			if tt.name == "DueGrants" && (strings.Contains(joined, "SCAN") || strings.Contains(joined, "TEMP B-TREE")) {
				t.Errorf("plan = %q, want no table scan and no sort", joined)
			}
		})
	}
}
