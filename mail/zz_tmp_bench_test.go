package mail

import "testing"

func BenchmarkTmpOverview(b *testing.B) {
	_, s := benchFolder(b)
	for _, snip := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "snip"}[snip], func(b *testing.B) {
			s.OverviewWith(b.Context(), "Big", 0, 50, ListOptions{Snippets: snip})
			for b.Loop() {
				_, p, err := s.OverviewWith(b.Context(), "Big", 0, 50, ListOptions{Snippets: snip})
				if err != nil || len(p.Summaries) != 50 {
					b.Fatal(err)
				}
			}
		})
	}
}
