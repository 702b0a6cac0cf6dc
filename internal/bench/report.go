package bench

import (
	"fmt"
	"image/color"
	"io"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func find(rs []Result, web, sc string, users int, cold bool) *Result {
	for i := range rs {
		r := &rs[i]
		if r.Webmail == web && r.Scenario == sc && r.Users == users && r.Cold == cold {
			return r
		}
	}
	return nil
}

// WriteMarkdown writes one table per scenario (both webmails side by side, p50 and p95 in ms, Postern / Roundcube),
// then throughput, CPU, memory and logins.
func WriteMarkdown(w io.Writer, rs []Result, scenarios []string, levels []int) {
	get := func(web, sc string, u int, cold bool) Result {
		if r := find(rs, web, sc, u, cold); r != nil {
			return *r
		}
		return Result{}
	}
	for _, sc := range scenarios {
		fmt.Fprintf(w, "\n#### %s\n\n", sc)
		fmt.Fprintln(w, "| users | Postern p50 / p95 (ms) | Roundcube p50 / p95 (ms) | p50 ratio P/R | p95 ratio P/R | Postern ops/s | Roundcube ops/s | errors P / R |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
		c := func(u int, cold bool, label string) {
			p, r := get("Postern", sc, u, cold), get("Roundcube", sc, u, cold)
			if p.Ops+p.Errors+r.Ops+r.Errors == 0 {
				return
			}
			fmt.Fprintf(w, "| %s | %s / %s | %s / %s | %s | %s | %.0f | %.0f | %d / %d |\n", label, ms(p.P50), ms(p.P95), ms(r.P50), ms(r.P95),
				ratio(p.P50, r.P50), ratio(p.P95, r.P95), p.PerSec, r.PerSec, p.Errors, r.Errors)
		}
		c(1, true, "1, cold")
		for _, u := range levels {
			c(u, false, fmt.Sprint(u))
		}
	}
	top := levels[len(levels)-1]
	fmt.Fprintf(w, "\n#### Throughput at %d users, CPU and memory (warm)\n\n", top)
	fmt.Fprintln(w, "| scenario | webmail | ops/s | CPU s / 1,000 ops: webmail | Dovecot | IdP (Hydra) | memory per active user (MiB) |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|")
	for _, sc := range scenarios {
		for _, web := range []string{"Postern", "Roundcube"} {
			r := get(web, sc, top, false)
			if r.Ops == 0 {
				continue
			}
			webCPU := r.CPU["postern"]
			if web == "Roundcube" {
				webCPU = r.CPU["php-fpm"] + r.CPU["nginx"]
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %.2f | %.2f | %.2f | %.1f |\n", sc, web, r.PerSec, webCPU, r.CPU["dovecot"], r.CPU["hydra"], r.MemPerUser)
		}
	}
	fmt.Fprintln(w, "\n#### Memory per active user (inbox page, warm)")
	fmt.Fprintln(w, "\nPSS of the webmail's processes (Postern; php-fpm master and workers + nginx): after a restart with nobody signed in, "+
		"then the median while the users load inbox pages; per user = the difference divided by the users.")
	fmt.Fprintln(w, "\n| users | Postern idle / active (MiB) | per user | Roundcube idle / active (MiB) | per user |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, u := range levels {
		p, r := get("Postern", "inbox page", u, false), get("Roundcube", "inbox page", u, false)
		if p.MemBase == 0 && r.MemBase == 0 {
			continue
		}
		fmt.Fprintf(w, "| %d | %.1f / %.1f | %.2f | %.1f / %.1f | %.2f |\n", u, float64(p.MemBase)/1024, float64(p.MemActive)/1024, p.MemPerUser,
			float64(r.MemBase)/1024, float64(r.MemActive)/1024, r.MemPerUser)
	}
	fmt.Fprintln(w, "\n#### IMAP logins and IdP calls per 100 HTTP requests (warm, all scenarios after sign-in, all levels)")
	fmt.Fprintln(w, "\n| webmail | HTTP requests | IMAP logins | per 100 requests | IdP userinfo calls | per 100 requests |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, web := range []string{"Postern", "Roundcube"} {
		var reqs, logins, idp int64
		for _, r := range rs {
			if r.Webmail == web && !r.Cold && !strings.HasPrefix(r.Scenario, "sign-in") {
				reqs, logins, idp = reqs+r.HTTPReqs, logins+r.IMAPLogins, idp+r.IdPCalls
			}
		}
		if reqs == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.2f | %d | %.2f |\n", web, reqs, logins, 100*float64(logins)/float64(reqs), idp, 100*float64(idp)/float64(reqs))
	}
	var errs []string
	for _, r := range rs {
		if r.FirstErr != "" {
			errs = append(errs, fmt.Sprintf("- %s, %s, %d users%s: %d errors, first: `%.200s`", r.Webmail, r.Scenario, r.Users,
				map[bool]string{true: " (cold)"}[r.Cold], r.Errors, strings.ReplaceAll(strings.Join(strings.Fields(r.FirstErr), " "), "`", "'")))
		}
	}
	if len(errs) > 0 {
		fmt.Fprint(w, "\nErrors seen:\n\n")
		fmt.Fprintln(w, strings.Join(errs, "\n"))
	}
}

// WriteChart draws p50 latency against concurrency for the inbox page and the message page, both webmails, as SVG.
func WriteChart(path string, rs []Result, scenarios []string, levels []int) error {
	if len(levels) < 2 {
		return nil // a chart needs two levels (and its log scale starts at 1 user)
	}
	p := plot.New()
	p.Title.Text = "Postern vs Roundcube: median latency vs concurrent users (warm)"
	p.X.Label.Text = "concurrent users"
	p.Y.Label.Text = "p50 latency (ms)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	ticks := func(vs ...float64) plot.ConstantTicks {
		var t plot.ConstantTicks
		for _, v := range vs {
			t = append(t, plot.Tick{Value: v, Label: fmt.Sprint(v)})
		}
		return t
	}
	p.X.Tick.Marker = ticks(1, 2, 5, 10, 20, 50, 100)
	p.Y.Tick.Marker = ticks(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
	p.Legend.Top, p.Legend.Left = true, true
	colors := map[string]color.Color{"Postern": color.RGBA{0x1f, 0x77, 0xb4, 0xff}, "Roundcube": color.RGBA{0xd6, 0x27, 0x28, 0xff}}
	dashes := [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}, {vg.Points(8), vg.Points(2), vg.Points(2), vg.Points(2)}}
	lines := 0
	for si, sc := range scenarios {
		for _, web := range []string{"Postern", "Roundcube"} {
			var pts plotter.XYs
			for _, u := range levels {
				if r := find(rs, web, sc, u, false); r != nil && r.P50 > 0 {
					pts = append(pts, plotter.XY{X: float64(u), Y: float64(r.P50) / float64(time.Millisecond)})
				}
			}
			if len(pts) == 0 {
				continue
			}
			l, s, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			l.Color, s.Color = colors[web], colors[web]
			l.Dashes = dashes[si%len(dashes)]
			s.Shape = draw.CircleGlyph{}
			p.Add(l, s)
			p.Legend.Add(web+": "+sc, l, s)
			lines++
		}
	}
	if lines == 0 {
		return nil // none of the charted scenarios ran (benchload -scenarios); a log axis without points panics
	}
	Dir(path)
	return p.Save(9*vg.Inch, 5.5*vg.Inch, path)
}

// ScenarioNames returns the names of scs.
func ScenarioNames(scs []Scenario) []string {
	out := make([]string, 0, len(scs))
	for _, s := range scs {
		out = append(out, s.Name)
	}
	return slices.Clip(out)
}
