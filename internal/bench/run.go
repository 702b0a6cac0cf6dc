package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Scenario is one user action, measured as one operation.
type Scenario struct {
	Name string
	Do   func(ctx context.Context, w Webmail, n int) error
	// MaxOps bounds each user's operations in one Run (0: none); moves use up the messages of a folder.
	MaxOps int
}

// Scenarios are the measured actions, in report order. n is the operation's index in its user's loop.
func Scenarios(attachment []byte, moveUIDs func(user, n int) uint32) []Scenario {
	return []Scenario{
		{Name: "sign-in to first inbox page", Do: func(ctx context.Context, w Webmail, n int) error { return w.SignIn(ctx) }},
		{Name: "inbox page", Do: func(ctx context.Context, w Webmail, n int) error { return w.Inbox(ctx) }},
		{Name: "next page", Do: func(ctx context.Context, w Webmail, n int) error { return w.NextPage(ctx) }},
		{Name: "open plain message", Do: func(ctx context.Context, w Webmail, n int) error { return w.OpenPlain(ctx) }},
		{Name: "open HTML message", Do: func(ctx context.Context, w Webmail, n int) error { return w.OpenHTML(ctx) }},
		{Name: "search by subject", Do: func(ctx context.Context, w Webmail, n int) error { return w.Search(ctx) }},
		{Name: "move a message", MaxOps: 10}, // Do is set by the runner, which hands out the messages
		{Name: "send with 1 MB attachment", Do: func(ctx context.Context, w Webmail, n int) error { return w.Send(ctx, attachment) }},
	}
}

// Result is one scenario at one concurrency for one webmail.
type Result struct {
	Webmail, Scenario string
	Users             int
	Cold              bool
	Ops, Errors       int
	FirstErr          string
	P50, P95          time.Duration
	PerSec            float64
	// CPU is CPU seconds per 1,000 operations per process group. MemPerUser is the memory of the webmail's processes
	// while the users were active (median PSS over the run, sampled every 100 ms) minus MemBase, divided by the
	// users; MemBase (KiB) is the same processes' PSS right after a restart, before any user signed in (Run's memBase;
	// 0: not measured).
	CPU         map[string]float64
	MemPerUser  float64 // MiB
	MemBase     int64   // KiB
	MemActive   int64   // KiB
	IMAPLogins  int64
	IdPCalls    int64
	HTTPReqs    int64
	DurationSec float64
}

// Procs are the process groups measured: a name and the root PID of each (children included).
type Procs map[string]int

// cpuTicks returns the CPU time (user+system, including reaped children) of pid and its live descendants, in
// clock ticks (proc(5): fields 14-17).
func cpuTicks(pid int) int64 {
	total := int64(0)
	for _, p := range tree(pid) {
		f := statFields(p)
		if len(f) < 17 {
			continue
		}
		for _, i := range []int{13, 14, 15, 16} {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			total += v
		}
	}
	return total
}

// PSSKiB returns the proportional set size (smaps_rollup "Pss") of pid and its live descendants: each page shared
// by k processes counts 1/k, so php-fpm's 16 workers sharing the OPcache and the PHP binary are not counted 16 times,
// as a sum of RSS would. Reading another user's smaps needs root (scripts/bench runs as root).
func PSSKiB(pid int) int64 {
	total := int64(0)
	for _, p := range tree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Pss:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += n
			}
		}
	}
	return total
}

func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	// fields[0] is the PID and [1] the command; the rest follow the closing parenthesis.
	return append([]string{"", ""}, strings.Fields(s[i+1:])...)
}

// tree returns pid and its descendants.
func tree(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(p)
		if len(f) > 3 {
			pp, _ := strconv.Atoi(f[3])
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// Counters are what the run reads from the servers' logs before and after a step.
type Counters struct {
	DovecotLog, HydraLog string
}

// count returns the IMAP logins (Dovecot "imap-login: Info: Login:" lines) and the IdP userinfo calls (Hydra's request
// log) so far.
func (c Counters) count() (logins, idp int64) {
	if b, err := os.ReadFile(c.DovecotLog); err == nil {
		logins = int64(strings.Count(string(b), "imap-login: Info: Login:"))
	}
	if b, err := os.ReadFile(c.HydraLog); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "/userinfo") && strings.Contains(l, "completed handling request") {
				idp++
			}
		}
	}
	return
}

// Run measures one scenario at users concurrent users for d (at least one operation each). users holds one signed-in
// Webmail per user; the webmail's processes are procs[w.Name()] plus the shared ones.
func Run(ctx context.Context, sc Scenario, users []Webmail, d time.Duration, procs Procs, webProcs []string, ctr Counters, cold bool, memBase int64) Result {
	res := Result{Webmail: users[0].Name(), Scenario: sc.Name, Users: len(users), Cold: cold, CPU: map[string]float64{}, MemBase: memBase}
	cpu0 := map[string]int64{}
	for name, pid := range procs {
		cpu0[name] = cpuTicks(pid)
	}
	l0, i0 := ctr.count()
	var req0 int64
	for _, u := range distinct(users) {
		req0 += u.Requests()
	}
	var (
		mu       sync.Mutex
		lat      []time.Duration
		errs     int
		firstErr string
		mem      []int64 // PSS samples, KiB
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			total := int64(0)
			for _, n := range webProcs {
				total += PSSKiB(procs[n])
			}
			mu.Lock()
			mem = append(mem, total)
			mu.Unlock()
		}
	}()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for ui, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				t0 := time.Now()
				err := sc.Do(ctx, u, ui*1_000_000+n)
				el := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					lat = append(lat, el)
				}
				mu.Unlock()
				if cold || time.Now().After(deadline) || ctx.Err() != nil || (sc.MaxOps > 0 && n+1 >= sc.MaxOps) {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	res.DurationSec = elapsed.Seconds()
	res.Ops, res.Errors, res.FirstErr = len(lat), errs, firstErr
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50 = lat[len(lat)*50/100]
		res.P95 = lat[min(len(lat)-1, len(lat)*95/100)]
		res.PerSec = float64(len(lat)) / elapsed.Seconds()
	}
	for name, pid := range procs {
		ticks := cpuTicks(pid) - cpu0[name]
		if res.Ops > 0 {
			res.CPU[name] = float64(ticks) / 100 / float64(res.Ops) * 1000 // USER_HZ is 100 on Linux
		}
	}
	if memBase > 0 && len(mem) > 0 {
		slices.Sort(mem)
		res.MemActive = mem[len(mem)/2]
		res.MemPerUser = float64(res.MemActive-memBase) / 1024 / float64(len(users))
	}
	l1, i1 := ctr.count()
	res.IMAPLogins, res.IdPCalls = l1-l0, i1-i0
	for _, u := range distinct(users) {
		res.HTTPReqs += u.Requests()
	}
	res.HTTPReqs -= req0
	return res
}

// Dir returns the directory of path, created.
func Dir(path string) string {
	d := filepath.Dir(path)
	os.MkdirAll(d, 0o755)
	return d
}

// distinct drops users that share another's browser (Postern.Share), whose requests are counted once.
func distinct(users []Webmail) []Webmail {
	seen := map[any]bool{}
	var out []Webmail
	for _, u := range users {
		key := any(u)
		if p, ok := u.(*Postern); ok {
			key = p.b
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, u)
		}
	}
	return out
}
