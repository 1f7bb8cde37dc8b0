package fault

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/emsim"
)

// dispute is one name published on two members: at once, or the second a
// second after the first. A member that takes replicas holds the first
// one's replica a second later, and cannot publish the name then: the
// second of a pair a second apart is the member that takes no replicas.
type dispute struct {
	name    string
	origins [2]int
	apart   bool
}

// conflictQuietResyncs is how many resyncs of every balancer the quiet
// window after a conflict settles spans.
const conflictQuietResyncs = 3

// TestConflicts publishes names on two members at once and a second apart,
// first with two balancers active-active on the group, then with a mesh of
// sidecars (one balancer beside each member, host set to it). Every
// balancer must pick the same winner: the replicas of each disputed name
// all pull from one of its origins (the first one when they were a second
// apart), every balancer's status names that origin, and once settled no
// balancer pulls or removes anything over three resyncs.
//
// The mesh is simplified: the relay gives every sidecar the events of
// every member, where a real sidecar hears only its own EMS; each still
// lists every member, as it does in production.
func TestConflicts(t *testing.T) {
	t.Parallel() // the two tests share the 2 cores CI has; each has its own members and relay
	seed := *flagSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (reproduce: go test ./test/fault -run TestConflicts -fault.seed=%d -v)", seed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d (reproduce: go test ./test/fault -run TestConflicts -fault.seed=%d -v)", seed, seed)
		}
	})
	rng := rand.New(rand.NewPCG(seed, seed^0xc0f1))
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "balancers.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	t.Cleanup(hc.CloseIdleConnections)
	rl, err := newRelay()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rl.close)

	var members []*member
	for i, ip := range emsim.RandomLoopbackIPs(4) {
		m := newMember(t, fmt.Sprintf("m%d", i+1), ip, false, i != 3, dir, rl.url, hc)
		if err := m.start(false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.kill)
		members = append(members, m)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				if len(b) > 64<<10 {
					b = b[len(b)-64<<10:]
				}
				t.Logf("balancer logs (end):\n%s", b)
			}
		}
	})
	undisputed := map[string]int{}
	for i, m := range members {
		name := "u-" + m.name
		undisputed[name] = i
		if err := m.publish(name); err != nil {
			t.Fatal(err)
		}
	}
	start := func(bs []*balancer) {
		for _, b := range bs {
			if err := b.start(); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop := func(bs []*balancer) {
		for _, b := range bs {
			if err := b.stop(); err != nil {
				t.Error(err)
			}
		}
	}

	// Active-active: two balancers with the same config.
	cfg, err := config.Parse("fault.json", []byte(configText(members, "")))
	if err != nil {
		t.Fatal(err)
	}
	var pair []*balancer
	for _, name := range []string{"A", "B"} {
		pair = append(pair, newBalancer(name, cfg, logFile, &removals{}, rl))
	}
	t.Cleanup(func() { stop(pair) })
	start(pair)
	var disputes []dispute
	disputes = append(disputes, publishDisputes(t, rng, members, "aa", 3)...)
	settleConflicts(t, "active-active", members, pair, undisputed, disputes)

	// A mesh of sidecars, one beside each member, taking over the group
	// as it is, then new names published on two members.
	stop(pair)
	var mesh []*balancer
	for i := range members {
		cfg, err := config.Parse(fmt.Sprintf("sidecar%d.json", i+1), []byte(sidecarText(members, i)))
		if err != nil {
			t.Fatal(err)
		}
		mesh = append(mesh, newBalancer("S"+members[i].name, cfg, logFile, &removals{}, rl))
	}
	t.Cleanup(func() { stop(mesh) })
	start(mesh)
	disputes = append(disputes, publishDisputes(t, rng, members, "mesh", 3)...)
	settleConflicts(t, "sidecar mesh", members, mesh, undisputed, disputes)
}

// publishDisputes publishes n names at once on two members each, and n
// names a second apart on a member that takes replicas and then on the one
// that does not (last of members), and returns them. A name published at
// once that a balancer replicated onto its second member before that
// member published it (a pull configuration holds the name there) is no
// dispute: it is returned with a single origin (both the same).
func publishDisputes(t *testing.T, rng *rand.Rand, members []*member, prefix string, n int) []dispute {
	t.Helper()
	last := len(members) - 1
	var ds []dispute
	for k := range 2 * n {
		d := dispute{name: fmt.Sprintf("d-%s-%d", prefix, k), apart: k >= n}
		if d.apart {
			d.origins = [2]int{rng.IntN(last), last}
		} else {
			a := rng.IntN(len(members))
			d.origins = [2]int{a, (a + 1 + rng.IntN(len(members)-1)) % len(members)}
		}
		ds = append(ds, d)
	}
	var mu sync.Mutex
	var errs []error
	publish := func(d *dispute, j int) {
		err := members[d.origins[j]].publish(d.name)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
		case !d.apart && strings.Contains(err.Error(), "a pull configuration holds that stream name"):
			t.Logf("%s: replicated onto %s before it published it; not a dispute", d.name, members[d.origins[j]].name)
			d.origins[j] = d.origins[1-j]
		default:
			errs = append(errs, err)
		}
	}
	var wg sync.WaitGroup
	for k := range ds {
		for j := range 2 {
			if !ds[k].apart || j == 0 {
				wg.Go(func() { publish(&ds[k], j) })
			}
		}
	}
	wg.Wait()
	time.Sleep(time.Second) // the schedule's pace: the second origin publishes a second later
	for k := range ds {
		if ds[k].apart {
			wg.Go(func() { publish(&ds[k], 1) })
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return ds
}

// settleConflicts waits until the group holds every undisputed source's
// replicas and one winner's for each disputed name, then checks that the
// balancers stay quiet and agree for conflictQuietResyncs resyncs.
func settleConflicts(t *testing.T, round string, members []*member, bs []*balancer, undisputed map[string]int, disputes []dispute) {
	t.Helper()
	began := time.Now()
	deadline := began.Add(convergeBound + 5*time.Second)
	var held map[string]uint64
	var problems []string
	for {
		held, problems = conflictState(members, bs, undisputed, disputes)
		if problems == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not settled %v after the names were published:\n%s", round, deadline.Sub(began), strings.Join(problems, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s: settled in %v", round, time.Since(began).Round(time.Millisecond))
	// Settled once every balancer has seen it: each completes a resync,
	// which lists every member, before the quiet window opens.
	if _, err := quietWindow(t, bs, 1); err != nil {
		t.Fatalf("%s: %v", round, err)
	}
	diff, err := quietWindow(t, bs, conflictQuietResyncs)
	if err != nil {
		t.Fatalf("%s: %v", round, err)
	}
	for k, v := range diff {
		if strings.HasSuffix(k, " pullStream fail") && !*flagStrict {
			t.Logf("%s: %s: %s: %v", round, issueRefusedPulls, k, v)
			delete(diff, k)
		}
	}
	if len(diff) > 0 {
		t.Errorf("%s: pullStream/removeConfig calls over %d resyncs once settled:\n%s", round, conflictQuietResyncs, diffString(diff))
	}
	after, problems := conflictState(members, bs, undisputed, disputes)
	if problems != nil {
		t.Errorf("%s: unsettled again after the quiet window:\n%s", round, strings.Join(problems, "\n"))
	}
	for k, id := range held {
		if after[k] != id {
			t.Errorf("%s: %s was config %d when settled, %d after the quiet window", round, k, id, after[k])
		}
	}
}

// conflictState lists the members and returns the config id of every
// replica by "member/name", or what is not settled: an undisputed source
// not replicated to every other member from its origin; a disputed name
// whose replicas (on the members that are not its origins) do not all
// pull from one of its origins, or not from the first when they were
// published a second apart; a balancer whose status names another origin.
func conflictState(members []*member, bs []*balancer, undisputed map[string]int, disputes []dispute) (map[string]uint64, []string) {
	configs := make([]map[string][]string, len(members))
	held := map[string]uint64{}
	for i, m := range members {
		l, err := m.listWithin(2 * time.Second)
		if err != nil {
			return nil, []string{fmt.Sprintf("%s: %v", m.name, err)}
		}
		configs[i] = map[string][]string{}
		for _, c := range l.configs {
			if c.Vars["_streamlb_group"] != groupName {
				return nil, []string{fmt.Sprintf("%s holds %s pulling %s, not tagged with the group", m.name, c.LocalStreamName, c.URI)}
			}
			configs[i][c.LocalStreamName] = append(configs[i][c.LocalStreamName], c.URI)
			held[m.name+"/"+c.LocalStreamName] = c.ConfigID
		}
	}
	uri := func(o int, name string) string { return "rtmp://" + members[o].ip + "/live/" + name }
	var problems []string
	winners := map[string]int{}
	for name, o := range undisputed {
		winners[name] = o
	}
	for _, d := range disputes {
		w := -1
		for i := range members {
			if i == d.origins[0] || i == d.origins[1] || !members[i].replicate {
				if n := len(configs[i][d.name]); n > 0 {
					problems = append(problems, fmt.Sprintf("%s: %s holds %d configs of a name it publishes or does not replicate", d.name, members[i].name, n))
				}
				continue
			}
			for _, o := range d.origins {
				if slices.Equal(configs[i][d.name], []string{uri(o, d.name)}) {
					if w >= 0 && w != o {
						problems = append(problems, fmt.Sprintf("%s: replicas pull from both %s and %s", d.name, members[w].name, members[o].name))
					}
					w = o
				}
			}
		}
		switch {
		case w < 0:
			problems = append(problems, fmt.Sprintf("%s (on %s and %s): no replica pulls from either", d.name, members[d.origins[0]].name, members[d.origins[1]].name))
		case d.apart && w != d.origins[0]:
			problems = append(problems, fmt.Sprintf("%s: published on %s a second before %s, but replicated from %s", d.name, members[d.origins[0]].name, members[d.origins[1]].name, members[w].name))
		default:
			winners[d.name] = w
		}
	}
	for name, o := range winners {
		for i := range members {
			if i == o || !members[i].replicate || slices.ContainsFunc(disputes, func(d dispute) bool { return d.name == name && (d.origins[0] == i || d.origins[1] == i) }) {
				continue
			}
			if got := configs[i][name]; !slices.Equal(got, []string{uri(o, name)}) {
				problems = append(problems, fmt.Sprintf("%s holds %v for %s, want exactly %s", members[i].name, got, name, uri(o, name)))
			}
		}
	}
	for _, b := range bs {
		b.mu.Lock()
		a := b.app
		b.mu.Unlock()
		if a == nil {
			continue
		}
		for _, ss := range a.Controller().Snapshot().Streams {
			if o, ok := winners[ss.Name]; ok && ss.Origin != members[o].name {
				problems = append(problems, fmt.Sprintf("balancer %s: status gives %s the origin %s, the replicas pull from %s", b.name, ss.Name, ss.Origin, members[o].name))
			}
		}
	}
	slices.Sort(problems)
	return held, problems
}
