// Command benchload is scripts/bench's load generator. "benchload fill" writes realistic mail into a maildir;
// "benchload run" drives Postern and Roundcube and writes the results (Markdown tables, an SVG chart, JSON).
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postern/postern/internal/bench"
)

func main() {
	log.SetFlags(log.Ltime)
	if len(os.Args) < 2 {
		log.Fatal("usage: benchload fill|run [flags]")
	}
	switch os.Args[1] {
	case "fill":
		fill(os.Args[2:])
	case "run":
		run(os.Args[2:])
	case "ratio":
		ratio(os.Args[2:])
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

func fill(args []string) {
	fs := flag.NewFlagSet("fill", flag.ExitOnError)
	dir := fs.String("maildir", "", "the maildir folder to fill (e.g. ~/Maildir or ~/Maildir/.Archive)")
	n := fs.Int("n", 10000, "messages")
	seed := fs.Int("seed", 0, "first message index (different folders, different mail)")
	to := fs.String("to", "alice@example.test", "recipient")
	fs.Parse(args)
	t0 := time.Now()
	size, err := bench.FillMaildir(*dir, *to, *n, *seed)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("fill %s: %d messages, %.1f MB in %v", *dir, *n, float64(size)/1e6, time.Since(t0).Round(time.Millisecond))
}

func run(args []string) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	postern := fs.String("postern", "http://127.0.0.1:18080", "Postern's URL")
	roundcube := fs.String("roundcube", "http://127.0.0.1:8090", "Roundcube's URL")
	idpUser := fs.String("idp-user", "alice", "the user at the IdP's login page")
	idpPass := fs.String("idp-password", "alice-password", "")
	idpAccounts := fs.Int("idp-accounts", 0, "sign-in scenario: user i signs in at the IdP as bench<i+1> (password bench-password), "+
		"one of this many accounts of loginconsent -bench-accounts; 0: everyone is -idp-user")
	mailUser := fs.String("mail-user", "alice@example.test", "the IMAP user (Roundcube's login)")
	mailPass := fs.String("mail-password", "", "the IMAP password of the bench passdb")
	imapAddr := fs.String("imap", "127.0.0.1:1993", "Dovecot's IMAPS address (to find the scenario messages)")
	caFile := fs.String("ca", "", "the testbed CA")
	levelsF := fs.String("users", "1,10,50", "concurrency levels")
	dur := fs.Duration("duration", 8*time.Second, "measuring time per scenario and level")
	pidsF := fs.String("pids", "", "name=pid,... of the processes to measure (postern, dovecot, php-fpm, nginx, hydra)")
	dovecotLog := fs.String("dovecot-log", "", "")
	hydraLog := fs.String("hydra-log", "", "")
	coldCmd := fs.String("cold-cmd", "", "shell command that makes both webmails cold (restart, drop caches); run before each cold scenario")
	md := fs.String("md", "docs/bench-results.md", "Markdown output")
	svg := fs.String("svg", "docs/bench-latency.svg", "chart output")
	jsonOut := fs.String("json", "", "raw results")
	only := fs.String("only", "", "comma-separated webmails to run (Postern,Roundcube); default both")
	coldReps := fs.Int("cold-reps", 3, "cold runs per scenario and webmail (the median is reported)")
	scenariosF := fs.String("scenarios", "", "comma-separated scenario names or name prefixes to run (e.g. sign-in); default all")
	fs.Parse(args)

	var levels []int
	for _, s := range strings.Split(*levelsF, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			log.Fatal(err)
		}
		levels = append(levels, n)
	}
	procs := bench.Procs{}
	for _, kv := range strings.Split(*pidsF, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			n, _ := strconv.Atoi(v)
			procs[k] = n
		}
	}
	ctx := context.Background()
	t, err := findTargets(*imapAddr, *caFile, *mailUser, *mailPass)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("targets: newest %d, plain %d, html %d, search %q", t.Newest, t.Plain, t.HTML, t.SearchSubject)
	attachment := make([]byte, 1<<20)
	rand.Read(attachment)
	scs, err := selectScenarios(bench.Scenarios(attachment, nil), *scenariosF)
	if err != nil {
		log.Fatal(err)
	}
	var floor interleaved
	// The floor measurement is about the inbox page: skipped when that scenario is not run.
	if (*only == "" || strings.Contains(*only, "Postern")) && slices.ContainsFunc(scs, func(sc bench.Scenario) bool { return sc.Name == "inbox page" }) {
		if floor, err = interleave(ctx, *postern, *imapAddr, *caFile, *mailUser, *mailPass, t, 300); err != nil {
			log.Fatal(err)
		}
		log.Print(floor)
	}
	ctr := bench.Counters{DovecotLog: *dovecotLog, HydraLog: *hydraLog}

	type mk struct {
		name string
		new  func() bench.Webmail
		// signIn makes the sign-in scenario's user i.
		signIn   func(i int) bench.Webmail
		webProcs []string
	}
	makers := []mk{
		{"Postern", func() bench.Webmail { return bench.NewPostern(*postern, *idpUser, *idpPass, t) },
			func(i int) bench.Webmail {
				// Different people signing in, as different accounts at the IdP (all with alice's address, so the same
				// mailbox): Postern caps the grants of one account at 10 and retires the oldest at each sign-in, which
				// with one account for all would end other users' sessions while they sign in (issue 14).
				if *idpAccounts > 0 {
					return bench.NewPostern(*postern, fmt.Sprintf("bench%d", i%*idpAccounts+1), "bench-password", t)
				}
				return bench.NewPostern(*postern, *idpUser, *idpPass, t)
			}, []string{"postern"}},
		{"Roundcube", func() bench.Webmail { return bench.NewRoundcube(*roundcube, *mailUser, *mailPass, t) },
			func(int) bench.Webmail { return bench.NewRoundcube(*roundcube, *mailUser, *mailPass, t) }, []string{"php-fpm", "nginx"}},
	}
	var active []mk
	for _, m := range makers {
		if *only == "" || strings.Contains(*only, m.name) {
			active = append(active, m)
		}
	}
	var results []bench.Result
	// Cold: one user, one operation of each scenario right after cold-cmd, both webmails one after the other for each
	// scenario (the first one alternating), *coldReps times; the run with the median latency is kept. A single cold
	// operation on a shared machine is one sample of the load of that second: interleaving gives both webmails the
	// same minutes, and the median of several drops the outliers.
	for i, sc := range scs {
		sc := bind(sc, t)
		runs := map[string][]bench.Result{}
		for rep := range *coldReps {
			for j := range active {
				m := active[(j+rep+i)%len(active)]
				if *coldCmd != "" {
					if out, err := exec.Command("sh", "-c", *coldCmd).CombinedOutput(); err != nil {
						log.Fatalf("cold-cmd: %v\n%s", err, out)
					}
					procs = reread(procs)
				}
				u := m.new()
				if isSignIn(sc) {
					u = m.signIn(0)
				} else {
					if err := u.SignIn(ctx); err != nil {
						log.Fatalf("%s sign-in: %v", m.name, err)
					}
					if *coldCmd != "" {
						// The sign-in warmed the webmail: cold again, keeping the browser's session.
						exec.Command("sh", "-c", *coldCmd+" keep-sessions").Run()
						procs = reread(procs)
					}
				}
				r := bench.Run(ctx, sc, []bench.Webmail{u}, 0, procs, m.webProcs, ctr, true, 0)
				log.Printf("%s cold %s (%d/%d): %v (%d errors %s)", m.name, sc.Name, rep+1, *coldReps, r.P50, r.Errors, r.FirstErr)
				runs[m.name] = append(runs[m.name], r)
			}
		}
		for _, m := range active {
			rs := runs[m.name]
			slices.SortFunc(rs, func(a, b bench.Result) int { return int(a.P50 - b.P50) })
			results = append(results, rs[len(rs)/2])
		}
	}
	// Warm: level by level, both webmails one after the other at each level.
	for _, n := range levels {
		for _, m := range active {
			// Memory: both webmails restarted (without dropping the page cache), then their PSS with nobody signed in
			// is the base that each scenario's PSS while its users are active is compared with.
			var memBase int64
			if *coldCmd != "" {
				if out, err := exec.Command("sh", "-c", *coldCmd+" restart").CombinedOutput(); err != nil {
					log.Fatalf("cold-cmd restart: %v\n%s", err, out)
				}
				procs = reread(procs)
				time.Sleep(2 * time.Second)
				for _, w := range m.webProcs {
					memBase += bench.PSSKiB(procs[w])
				}
			}
			// The page-view scenarios' users, signed in once; a run of the sign-in scenario alone needs none (and they
			// would add grants of the one bench account that its sign-ins then retire).
			var users []bench.Webmail
			if slices.ContainsFunc(scs, func(sc bench.Scenario) bool { return !isSignIn(sc) }) {
				users = make([]bench.Webmail, n)
			}
			for i := range users {
				if p, ok := users[i%postSessions].(*bench.Postern); ok && i >= postSessions {
					users[i] = p.Share()
					continue
				}
				users[i] = m.new()
				if err := users[i].SignIn(ctx); err != nil {
					log.Fatalf("%s sign-in of user %d: %v", m.name, i, err)
				}
			}
			// Sign-in last: at Postern each one retires the user's oldest grant beyond 10, and runs on users of its own.
			order := slices.Clone(scs)
			if isSignIn(order[0]) {
				order = append(order[1:], order[0])
			}
			for _, sc := range order {
				sc := bind(sc, t)
				us := users
				if isSignIn(sc) {
					us = make([]bench.Webmail, n)
					for i := range us {
						us[i] = m.signIn(i)
					}
				}
				// Warm-up: one operation each, not measured.
				if !isSignIn(sc) {
					bench.Run(ctx, sc, us, 0, procs, m.webProcs, ctr, true, 0)
				}
				r := bench.Run(ctx, sc, us, *dur, procs, m.webProcs, ctr, false, memBase)
				log.Printf("%s %d users %s: p50 %v p95 %v %.1f/s, %d ops %d errors %s", m.name, n, sc.Name, r.P50, r.P95, r.PerSec, r.Ops, r.Errors, r.FirstErr)
				results = append(results, r)
			}
		}
	}
	names := bench.ScenarioNames(scs)
	f, err := os.Create(*md)
	if err != nil {
		log.Fatal(err)
	}
	if floor.n > 0 {
		fmt.Fprintf(f, "\nInbox page vs raw FETCH (1 user, warm, one Postern page view then one imapclient `UID FETCH` of the same 50 rows "+
			"(UID FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE) on an already selected TLS connection to the same Dovecot, "+
			"%d rounds): page p50 %.2f ms, raw p50 %.2f ms: **%.2f×**. The page's own IMAP commands sent the same way on the raw connection "+
			"(a NOOP waited for, then `UID FETCH hint:top (UID FLAGS RFC822.SIZE)` of the 55 rows the session has cached): %.2f ms; with the folder list and counts (LIST RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))) "+
			"pipelined with that FETCH: %.2f ms. The list above groups conversations (a fresh user's default: the grouping, and a UID THREAD "+
			"only when the messages changed); the plain list (conversations off in Settings), which shows exactly the raw FETCH's 50 rows, in "+
			"%d more rounds: page p50 %.2f ms, raw p50 %.2f ms: **%.2f×**.\n", floor.n, ms(floor.page), ms(floor.raw), float64(floor.page)/float64(floor.raw), ms(floor.imapNoList), ms(floor.imapList),
			floor.n, ms(floor.plainPage), ms(floor.plainRaw), float64(floor.plainPage)/float64(floor.plainRaw))
	}
	bench.WriteMarkdown(f, results, names, levels)
	f.Close()
	if err := bench.WriteChart(*svg, results, []string{"inbox page", "open plain message", "search by subject"}, levels); err != nil {
		log.Fatal(err)
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		os.WriteFile(*jsonOut, b, 0o644)
	}
	log.Printf("wrote %s and %s", *md, *svg)
}

// isSignIn reports whether sc is the sign-in scenario, which runs on fresh users of its own.
func isSignIn(sc bench.Scenario) bool { return strings.HasPrefix(sc.Name, "sign-in") }

// selectScenarios keeps the scenarios named by filter (comma-separated names or name prefixes, e.g. "sign-in,inbox"),
// in report order; an empty filter keeps all. A filter that matches nothing is an error, not an empty run.
func selectScenarios(all []bench.Scenario, filter string) ([]bench.Scenario, error) {
	if strings.TrimSpace(filter) == "" {
		return all, nil
	}
	var out []bench.Scenario
	for _, sc := range all {
		for _, f := range strings.Split(filter, ",") {
			if f = strings.TrimSpace(f); f != "" && strings.HasPrefix(sc.Name, f) {
				out = append(out, sc)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-scenarios %q matches none of %q", filter, bench.ScenarioNames(all))
	}
	return out, nil
}

// bind gives the move scenario its messages: each operation moves one of the 2,000 messages of the Move folder to
// the other folder and back, a different one per user so that users do not move each other's message away.
func bind(sc bench.Scenario, t *bench.Targets) bench.Scenario {
	if sc.Do != nil {
		return sc
	}
	sc.Do = func(ctx context.Context, w bench.Webmail, n int) error {
		user, i := n/1_000_000, n%1_000_000
		return w.Move(ctx, moveUID(t, user, i))
	}
	return sc
}

// postSessions is the number of Postern browser sessions (grants) the virtual users share: under the default cap of
// 10 grants per user.
const postSessions = 8

// nextMove is the last UID of the Move folder handed out: every move takes a message no other took.
var nextMove atomic.Uint32

func moveUID(*bench.Targets, int, int) uint32 { return nextMove.Add(1) }

// reread is a hook for PIDs that change across cold-cmd restarts: the script writes them to files named by
// BENCH_PIDDIR/<name>.pid.
func reread(p bench.Procs) bench.Procs {
	dir := os.Getenv("BENCH_PIDDIR")
	if dir == "" {
		return p
	}
	out := bench.Procs{}
	for k, v := range p {
		out[k] = v
		if b, err := os.ReadFile(dir + "/" + k + ".pid"); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// ratio measures Postern's inbox page against the raw FETCH floor interleaved, request by request, so that both
// meet the same load on a shared machine: n rounds of one raw FETCH then one page view; medians of each.
func ratio(args []string) {
	fs := flag.NewFlagSet("ratio", flag.ExitOnError)
	postern := fs.String("postern", "http://127.0.0.1:18080", "")
	mailUser := fs.String("mail-user", "alice@example.test", "")
	mailPass := fs.String("mail-password", "", "")
	imapAddr := fs.String("imap", "127.0.0.1:1993", "")
	caFile := fs.String("ca", "", "")
	n := fs.Int("n", 300, "rounds")
	fs.Parse(args)
	ctx := context.Background()
	t, err := findTargets(*imapAddr, *caFile, *mailUser, *mailPass)
	if err != nil {
		log.Fatal(err)
	}
	r, err := interleave(ctx, *postern, *imapAddr, *caFile, *mailUser, *mailPass, t, *n)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r)
}

// interleaved is the result of interleave.
type interleaved struct {
	n                          int
	page, pageP95, raw, rawP95 time.Duration
	// imapNoList and imapList are Postern's warm-view IMAP commands on the raw connection (the NOOP waited for, then
	// the flags FETCH of the 55 rows it has cached; then the same with the folder list and counts pipelined with the
	// FETCH), so that the page's time splits into IMAP and Postern.
	imapNoList, imapList time.Duration
	// plainPage and plainRaw are the same rounds' page and raw FETCH with the user's conversations turned off: the
	// plain list, which shows the same 50 rows as the raw FETCH; the page above groups them into conversations, which
	// adds a THREAD command and the grouping (a fresh user's default, and what the scenarios measure).
	plainPage, plainPageP95, plainRaw time.Duration
}

func (r interleaved) String() string {
	return fmt.Sprintf("interleaved, %d rounds: inbox page p50 %.2f ms (p95 %.2f), raw FETCH p50 %.2f ms (p95 %.2f): ratio %.2f×; "+
		"the page's IMAP commands on the raw connection: NOOP, then the rows' FLAGS %.2f ms, with LIST-STATUS %.2f ms; "+
		"plain list (conversations off): page p50 %.2f ms (p95 %.2f), raw FETCH p50 %.2f ms: ratio %.2f×", r.n,
		ms(r.page), ms(r.pageP95), ms(r.raw), ms(r.rawP95), float64(r.page)/float64(r.raw), ms(r.imapNoList), ms(r.imapList),
		ms(r.plainPage), ms(r.plainPageP95), ms(r.plainRaw), float64(r.plainPage)/float64(r.plainRaw))
}

func interleave(ctx context.Context, postern, imapAddr, caFile, mailUser, mailPass string, t *bench.Targets, n int) (interleaved, error) {
	p := bench.NewPostern(postern, "alice", "alice-password", t)
	if err := p.SignIn(ctx); err != nil {
		return interleaved{}, err
	}
	c, set, items, err := rawConn(imapAddr, caFile, mailUser, mailPass, t.Newest)
	if err != nil {
		return interleaved{}, err
	}
	defer c.Close()
	// Postern's IMAP part of a quiet warm view (mail.Session.Overview), on the raw connection: a NOOP waited for, then
	// "UID FETCH hint:top (UID FLAGS RFC822.SIZE)" of the 55 rows it has cached and LIST "" "*" RETURN (SPECIAL-USE
	// STATUS (MESSAGES UNSEEN)), pipelined; and the same without the LIST.
	var hintSet imap.UIDSet
	hintSet.AddRange(imap.UID(t.Newest-54), imap.UID(t.Newest))
	flagItems := &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true}
	listOpts := &imap.ListOptions{ReturnSpecialUse: true, ReturnStatus: &imap.StatusOptions{NumMessages: true, NumUnseen: true}}
	pipelined := func(list bool) error {
		if err := c.Noop().Wait(); err != nil {
			return err
		}
		f := c.Fetch(hintSet, flagItems)
		var l *imapclient.ListCommand
		if list {
			l = c.List("", "*", listOpts)
		}
		if msgs, err := f.Collect(); err != nil || len(msgs) < 50 {
			return fmt.Errorf("pipelined fetch: %d rows, %v", len(msgs), err)
		}
		if l != nil {
			if _, err := l.Collect(); err != nil {
				return err
			}
		}
		return nil
	}
	// rawThenPage times one raw FETCH of the 50 rows, then one inbox page view.
	rawThenPage := func() (raw, page time.Duration, err error) {
		t0 := time.Now()
		if msgs, err := c.Fetch(set, items).Collect(); err != nil || len(msgs) != 50 {
			return 0, 0, fmt.Errorf("raw fetch: %d rows, %v", len(msgs), err)
		}
		t1 := time.Now()
		if err := p.Inbox(ctx); err != nil {
			return 0, 0, err
		}
		return t1.Sub(t0), time.Since(t1), nil
	}
	var raw, page, imapOnly, imapList []time.Duration
	for i := range n + 20 {
		r, pg, err := rawThenPage()
		if err != nil {
			return interleaved{}, err
		}
		t2 := time.Now()
		if err := pipelined(false); err != nil {
			return interleaved{}, err
		}
		t3 := time.Now()
		if err := pipelined(true); err != nil {
			return interleaved{}, err
		}
		t4 := time.Now()
		if i >= 20 {
			raw, page = append(raw, r), append(page, pg)
			imapOnly, imapList = append(imapOnly, t3.Sub(t2)), append(imapList, t4.Sub(t3))
		}
	}
	// The plain list: conversations off for these rounds, then back to the default for the scenarios.
	if err := p.SetConversations(ctx, false); err != nil {
		return interleaved{}, err
	}
	var plainRaw, plainPage []time.Duration
	for i := range n + 20 {
		r, pg, err := rawThenPage()
		if err != nil {
			return interleaved{}, err
		}
		if i >= 20 {
			plainRaw, plainPage = append(plainRaw, r), append(plainPage, pg)
		}
	}
	if err := p.SetConversations(ctx, true); err != nil {
		return interleaved{}, err
	}
	for _, l := range [][]time.Duration{raw, page, imapOnly, imapList, plainRaw, plainPage} {
		slices.Sort(l)
	}
	return interleaved{n, page[len(page)/2], page[len(page)*95/100], raw[len(raw)/2], raw[len(raw)*95/100],
		imapOnly[len(imapOnly)/2], imapList[len(imapList)/2],
		plainPage[len(plainPage)/2], plainPage[len(plainPage)*95/100], plainRaw[len(plainRaw)/2]}, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func rawConn(addr, caFile, user, pass string, newest uint32) (*imapclient.Client, imap.UIDSet, *imap.FetchOptions, error) {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(caFile); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		return nil, nil, nil, err
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		return nil, nil, nil, err
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return nil, nil, nil, err
	}
	var set imap.UIDSet
	set.AddRange(imap.UID(newest-49), imap.UID(newest))
	items := &imap.FetchOptions{UID: true, Envelope: true, Flags: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, RFC822Size: true, InternalDate: true}
	return c, set, items, nil
}

// findTargets logs in to Dovecot with the bench password and picks the messages the scenarios open.
func findTargets(addr, caFile, user, pass string) (*bench.Targets, error) {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(caFile); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		return nil, err
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	// (fewer than 1000 messages: fill the folder first)
	if err != nil {
		return nil, err
	}
	if sel.NumMessages < 1000 {
		return nil, errors.New("INBOX has fewer than 1000 messages; fill it first")
	}
	// Dovecot's own caches (dovecot.index.cache) are warmed for every message once, before either webmail is
	// measured, so that the first webmail measured does not pay for the second: what both list (envelope, structure,
	// flags, dates, sizes), and the subject search.
	var all imap.SeqSet
	all.AddRange(1, sel.NumMessages)
	if err := c.Fetch(all, &imap.FetchOptions{UID: true, Envelope: true, Flags: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		RFC822Size: true, InternalDate: true}).Close(); err != nil {
		return nil, err
	}
	if _, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "Invoice"}}}, nil).Wait(); err != nil {
		return nil, err
	}
	var set imap.SeqSet
	set.AddRange(sel.NumMessages-min(sel.NumMessages, 1000)+1, sel.NumMessages)
	msgs, err := c.Fetch(set, &imap.FetchOptions{UID: true, BodyStructure: &imap.FetchItemBodyStructure{}, Envelope: true}).Collect()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(msgs, func(a, b *imapclient.FetchMessageBuffer) int { return int(b.UID) - int(a.UID) })
	t := &bench.Targets{MoveFrom: "Move", Store: "Archive", SearchSubject: "Invoice", SendTo: "bob@example.test"}
	for _, m := range msgs {
		t.Newest = max(t.Newest, uint32(m.UID))
		switch bs := m.BodyStructure.(type) {
		case *imap.BodyStructureSinglePart:
			if bs.MediaType() == "text/plain" && !strings.HasPrefix(m.Envelope.Subject, "Re:") && t.Plain == 0 {
				t.Plain = uint32(m.UID)
			}
		case *imap.BodyStructureMultiPart:
			if bs.MediaType() == "multipart/alternative" && len(bs.Children) == 2 && bs.Children[1].MediaType() == "text/html" && t.HTML == 0 {
				t.HTML = uint32(m.UID)
			}
		}
	}
	if t.Plain == 0 || t.HTML == 0 {
		return nil, fmt.Errorf("no plain (%d) or HTML (%d) message among the newest 1000", t.Plain, t.HTML)
	}
	c.Logout().Wait()
	return t, nil
}
