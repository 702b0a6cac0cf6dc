package web

import (
	"testing"
	"time"
)

func BenchmarkTmpModes(b *testing.B) {
	s, br := benchStack(b)
	modes := [][2]bool{{true, true}, {true, false}}
	var cpu, wall [2]time.Duration
	for _, m := range modes {
		s.web.plainList, s.web.noSnippets = m[0], m[1]
		br.get(s.ts.URL + "/mail/Big")
	}
	trips := s.mail.Stats()
	_ = trips
	for i := 0; b.Loop(); i++ {
		for k := range modes {
			j := (i + k) % 2
			s.web.plainList, s.web.noSnippets = modes[j][0], modes[j][1]
			c0, t0 := processCPU(), time.Now()
			br.get(s.ts.URL + "/mail/Big")
			cpu[j] += processCPU() - c0
			wall[j] += time.Since(t0)
		}
	}
	for j, n := range []string{"today", "snippets"} {
		b.ReportMetric(float64(cpu[j])/float64(b.N), n+"-cpu-ns")
		b.ReportMetric(float64(wall[j])/float64(b.N), n+"-wall-ns")
	}
}
