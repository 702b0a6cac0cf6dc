package main

import (
	"slices"
	"testing"

	"github.com/postern/postern/internal/bench"
)

func TestSelectScenarios(t *testing.T) {
	all := bench.Scenarios(nil, nil)
	tests := []struct {
		name, filter string
		want         []string // nil: an error
	}{
		{"empty keeps all", "", bench.ScenarioNames(all)},
		{"prefix", "sign-in", []string{"sign-in to first inbox page"}},
		{"several, report order", " open ,sign-in", []string{"sign-in to first inbox page", "open plain message", "open HTML message"}},
		{"full name", "inbox page", []string{"inbox page"}},
		{"no match", "login", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := selectScenarios(all, tt.filter)
			if tt.want == nil {
				if err == nil {
					t.Errorf("selectScenarios(%q) = %q, want an error", tt.filter, bench.ScenarioNames(got))
				}
				return
			}
			if err != nil || !slices.Equal(bench.ScenarioNames(got), tt.want) {
				t.Errorf("selectScenarios(%q) = %q, %v, want %q", tt.filter, bench.ScenarioNames(got), err, tt.want)
			}
		})
	}
}
