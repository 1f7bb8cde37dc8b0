package fault

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"streamlb/internal/ems"
)

// interval is a span of time; an open one has a zero end.
type interval struct{ start, end time.Time }

// source is one source stream the test put on a member: an encoder
// publishing, or an external camera pulled by the member.
type source struct {
	name     string
	origin   int
	external bool
	// on reports whether the source is meant to be there now; ended
	// sources stay off for good.
	on    bool
	ended bool
	burst bool // published in a burst, ended with the next one
	// off lists when the test had the source off.
	off []interval
}

func (s *source) setOff(now time.Time) {
	if s.on {
		s.on = false
		s.off = append(s.off, interval{start: now})
	}
}

func (s *source) setOn(now time.Time) {
	if !s.on {
		s.on = true
		if n := len(s.off); n > 0 && s.off[n-1].end.IsZero() {
			s.off[n-1].end = now
		}
	}
}

// foreignConfig is a pull configuration streamlb did not create; it must
// stay as it is.
type foreignConfig struct {
	name, uri string
	vars      map[string]string
}

// world is the group under test and the test's model of what it should
// hold.
type world struct {
	t         *testing.T
	members   []*member
	balancers []*balancer
	relay     *relay
	removed   *removals

	mu       sync.Mutex
	sources  map[string]*source
	gone     map[string]bool   // ended sources dropped from sources
	foreign  [][]foreignConfig // by member
	conflict map[[2]string]bool
	faults   [][]interval // by member: killed, down, slow or failing API
	lost     []interval   // events lost
}

func (w *world) uri(origin int, name string) string {
	return "rtmp://" + w.members[origin].ip + "/live/" + name
}

// addForeign creates member i's configurations that streamlb does not own:
// an untagged pull of another member's stream under another name, another
// group's tagged replica, and optionally a config holding the name of one
// of this group's sources (a conflict). It records those it created.
func (w *world) addForeign(i int, conflictName string) error {
	m := w.members[i]
	next := w.members[(i+1)%len(w.members)]
	want := []foreignConfig{
		{name: "fx-" + m.name, uri: "rtmp://" + next.ip + "/live/elsewhere-" + m.name},
		{name: "fg-" + m.name, uri: "rtmp://" + next.ip + "/live/other-" + m.name,
			vars: map[string]string{"_streamlb_group": "othergroup", "_streamlb_origin": next.ip}},
	}
	if conflictName != "" {
		want = append(want, foreignConfig{name: conflictName, uri: "rtmp://" + next.ip + "/live/not-" + conflictName})
	}
	l, err := m.list()
	if err != nil {
		return err
	}
	var kept []foreignConfig
	for _, f := range want {
		if k := slices.IndexFunc(l.configs, func(c ems.PullConfig) bool { return c.LocalStreamName == f.name }); k >= 0 {
			switch c := l.configs[k]; {
			case c.URI == f.uri:
				kept = append(kept, f) // restored from the state file
			case f.name == conflictName:
				// The balancer refilled the member first.
				w.t.Logf("member %s: %s is streamlb's replica now; the conflicting config is not recreated", m.name, f.name)
			default:
				return fmt.Errorf("member %s: %s pulls %s, not the foreign config %s", m.name, f.name, c.URI, f.uri)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := m.api.PullStream(ctx, ems.PullRequest{URI: f.uri, LocalStreamName: f.name, Vars: f.vars})
		cancel()
		switch {
		case err == nil:
			kept = append(kept, f)
		case ems.IsAlreadyTaken(err) && f.name == conflictName:
			// The balancer refilled the member first: the name is its
			// replica now, and no conflict remains.
			w.t.Logf("member %s: %s is streamlb's replica now; the conflicting config is not recreated", m.name, f.name)
		default:
			return fmt.Errorf("member %s: create foreign config %s: %w", m.name, f.name, err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.foreign) <= i {
		w.foreign = append(w.foreign, nil)
	}
	w.foreign[i] = kept
	for k := range w.conflict {
		if k[0] == m.name {
			delete(w.conflict, k)
		}
	}
	for _, f := range kept {
		if f.name == conflictName {
			w.conflict[[2]string{m.name, f.name}] = true
		}
	}
	return nil
}

// restore brings member i's world back after a restart: encoders publish
// again, lost external pulls and foreign configs are created again.
func (w *world) restore(i int) error {
	m := w.members[i]
	w.mu.Lock()
	var encoders, externals []string
	for _, s := range w.sources {
		if s.origin != i || !s.on {
			continue
		}
		if s.external {
			externals = append(externals, s.name)
		} else {
			encoders = append(encoders, s.name)
		}
	}
	var conflictName string
	for k := range w.conflict {
		if k[0] == m.name {
			conflictName = k[1]
		}
	}
	w.mu.Unlock()
	sort.Strings(encoders)
	for _, n := range encoders {
		if err := m.publish(n); err != nil {
			return err
		}
	}
	l, err := m.list()
	if err != nil {
		return err
	}
	for _, n := range externals {
		if slices.ContainsFunc(l.configs, func(c ems.PullConfig) bool { return c.LocalStreamName == n }) {
			continue
		}
		if err := w.pullExternal(i, n); err != nil {
			return err
		}
	}
	return w.addForeign(i, conflictName)
}

func (w *world) pullExternal(i int, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := w.members[i].api.PullStream(ctx, ems.PullRequest{URI: "rtsp://camera.example.invalid/" + name, LocalStreamName: name})
	if err != nil {
		return fmt.Errorf("member %s: pull external %s: %w", w.members[i].name, name, err)
	}
	return nil
}

// check compares every member's configurations and streams with the
// model, and each running balancer's status with them. It returns what
// differs; nothing when the group has converged.
func (w *world) check() []string {
	listings := make([]listing, len(w.members))
	var problems []string
	for i, m := range w.members {
		l, err := m.list()
		if err != nil {
			return []string{fmt.Sprintf("member %s: %v", m.name, err)}
		}
		listings[i] = l
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	live := map[string]*source{}
	for _, s := range w.sources {
		if s.on {
			live[s.name] = s
		}
	}
	for i, m := range w.members {
		l := listings[i]
		seen := map[string]int{}
		foreign := map[string]foreignConfig{}
		for _, f := range w.foreign[i] {
			foreign[f.name] = f
		}
		for _, c := range l.configs {
			seen[c.LocalStreamName]++
			name := c.LocalStreamName
			s := w.sources[name]
			switch {
			case c.Vars["_streamlb_group"] == groupName:
				switch {
				case s == nil || !s.on:
					problems = append(problems, fmt.Sprintf("%s holds a replica of %s, which is not a live source", m.name, name))
				case s.origin == i:
					problems = append(problems, fmt.Sprintf("%s holds a replica of its own source %s", m.name, name))
				case !m.replicate:
					problems = append(problems, fmt.Sprintf("%s (replicate false) holds a replica of %s", m.name, name))
				case c.URI != w.uri(s.origin, name) || c.Vars["_streamlb_origin"] != w.members[s.origin].ip:
					problems = append(problems, fmt.Sprintf("%s pulls %s from %s (tag origin %s), want %s", m.name, name, c.URI, c.Vars["_streamlb_origin"], w.uri(s.origin, name)))
				}
			case foreign[name].name != "":
				f := foreign[name]
				if c.URI != f.uri || !maps.Equal(c.Vars, f.vars) {
					problems = append(problems, fmt.Sprintf("%s: foreign config %s changed: %s %v, want %s %v", m.name, name, c.URI, c.Vars, f.uri, f.vars))
				}
			case s != nil && s.external && s.origin == i:
				if !s.on {
					problems = append(problems, fmt.Sprintf("%s: ended external source %s still configured", m.name, name))
				}
			default:
				problems = append(problems, fmt.Sprintf("%s holds a config nobody asked for: %s pulling %s %v", m.name, name, c.URI, c.Vars))
			}
		}
		for name, n := range seen {
			if n > 1 {
				problems = append(problems, fmt.Sprintf("%s holds %d configs named %s", m.name, n, name))
			}
		}
		for _, f := range w.foreign[i] {
			if seen[f.name] == 0 {
				problems = append(problems, fmt.Sprintf("%s: foreign config %s is gone", m.name, f.name))
			}
		}
		for name, s := range live {
			switch {
			case s.origin == i:
				if !l.inbound[name] {
					problems = append(problems, fmt.Sprintf("%s: its source %s is not streaming", m.name, name))
				}
			case !m.replicate || w.conflict[[2]string{m.name, name}]:
			case seen[name] == 0:
				problems = append(problems, fmt.Sprintf("%s lacks the replica of %s", m.name, name))
			case !l.inbound[name]:
				problems = append(problems, fmt.Sprintf("%s: replica of %s is not streaming", m.name, name))
			}
		}
	}
	for _, b := range w.balancers {
		b.mu.Lock()
		a := b.app
		b.mu.Unlock()
		if a == nil {
			continue
		}
		// Converged but for the model's conflict, which status reports.
		st := a.Controller().Snapshot()
		for _, ms := range st.Members {
			if ms.State != "up" {
				problems = append(problems, fmt.Sprintf("balancer %s: status says %s is %s", b.name, ms.Name, ms.State))
			}
		}
		for _, ss := range st.Streams {
			for mem, rs := range ss.Replicas {
				if rs.State != "present" && !(rs.State == "conflict" && w.conflict[[2]string{mem, ss.Name}]) {
					problems = append(problems, fmt.Sprintf("balancer %s: status says replica of %s on %s is %s", b.name, ss.Name, mem, rs.State))
				}
			}
		}
		if len(st.Streams) != len(live) {
			problems = append(problems, fmt.Sprintf("balancer %s: status lists %d streams, want %d", b.name, len(st.Streams), len(live)))
		}
	}
	sort.Strings(problems)
	return problems
}

// checkRemovals returns the replica removals logged in [from, to) that the
// model does not justify. A removal is due only when its source was off
// (the model's off spans) when the removal was decided, and had been off a
// teardown grace before. An origin's trouble never justifies one: killed,
// down, slow, failing, refusing the credentials or restarted empty (its
// encoders gone until the test publishes them again, a window much
// shorter than the grace), its sources are unknown, not absent. The
// decision came before the log line by at most the removal call, which
// takes up to the call timeout while the member it is made on is slow.
//
// known would hold the removals matching a removal bug reported and not
// fixed yet, as "ISSUE | PROBLEM"; there is none now, so every unjustified
// removal is a problem.
func (w *world) checkRemovals(from, to time.Time) (problems, known []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.removed.between(from, to) {
		s := w.sources[r.stream]
		if s == nil && w.gone[r.stream] {
			continue // ended long before
		}
		if s == nil {
			problems = append(problems, fmt.Sprintf("%s: balancer %s removed %s on %s, not a replica of any source", r.at.Format(tsFormat), r.balancer, r.stream, r.member))
			continue
		}
		if r.reason != "source ended" {
			problems = append(problems, fmt.Sprintf("%s: balancer %s removed %s on %s: %q", r.at.Format(tsFormat), r.balancer, r.stream, r.member, r.reason))
			continue
		}
		// The call itself is quick unless the member is slow; a second
		// covers a loaded machine.
		lag := time.Second
		if i := w.memberIndex(r.member); i >= 0 && overlaps(w.faults[i], r.at.Add(-callTimeout-lag), r.at) {
			lag += callTimeout
		}
		if !justified(s.off, r.at, lag) {
			p := fmt.Sprintf("%s: balancer %s removed %s on %s (config %d) while its source was live or before it was off for %v (off: %s; origin trouble: %s)",
				r.at.Format(tsFormat), r.balancer, r.stream, r.member, r.configID, teardownGrace, spansString(recent(s.off, r.at)), spansString(recent(w.faults[s.origin], r.at)))
			problems = append(problems, p)
		}
	}
	return problems, known
}

// Known issues: the signatures of calls that controller bugs, reported
// and not fixed yet, make. They are logged and counted in the figures, not
// failed, unless -fault.strict is given. Delete an entry once its bug is
// fixed. (Two removal bugs found by this suite are fixed: a peer's replica
// removed on an origin listing older than the replica, and an absence
// counted across the time its origin could not be listed. Every
// unjustified removal fails the run.)
const (
	// issueRefusedPulls: once the group has converged, a balancer still
	// makes pulls on a member whose API failed shortly before, and EMS
	// refuses them (FAIL): replicas another balancer made meanwhile,
	// pulled again on a stale view of the member. Nothing changes on the
	// member, but the calls are made.
	issueRefusedPulls = "known issue: refused pulls on a stale view of a member once converged"
)

// originWindow is what the test saw of an origin's sources when a fault
// on the origin began: their replicas on the other members, by member and
// name, with their config ids.
type originWindow struct {
	origin int
	kind   string
	start  time.Time
	names  map[string]bool           // the origin's live sources
	held   map[int]map[string]uint64 // member → name → configId
}

// openWindow lists the members other than origin and notes the replicas
// of origin's live sources they hold. A member that does not answer within
// a second (its own fault) is left out.
func (w *world) openWindow(origin int, kind string) *originWindow {
	ow := &originWindow{origin: origin, kind: kind, start: time.Now(), names: map[string]bool{}, held: map[int]map[string]uint64{}}
	w.mu.Lock()
	for n, s := range w.sources {
		if s.origin == origin && s.on && !s.ended {
			ow.names[n] = true
		}
	}
	w.mu.Unlock()
	for j, m := range w.members {
		if j == origin {
			continue
		}
		l, err := m.listWithin(time.Second)
		if err != nil {
			continue
		}
		held := map[string]uint64{}
		for _, c := range l.configs {
			if ow.names[c.LocalStreamName] && c.Vars["_streamlb_group"] == groupName && c.URI == w.uri(origin, c.LocalStreamName) {
				held[c.LocalStreamName] = c.ConfigID
			}
		}
		ow.held[j] = held
	}
	return ow
}

// closeWindow checks, while the fault on the origin still lasts, that no
// replica of its sources that stayed live throughout was removed anywhere,
// and that every replica held when the fault began is still listed, under
// the same config id, on each member that had no fault of its own
// meanwhile. It returns the problems and how many replicas it checked.
func (w *world) closeWindow(ow *originWindow) (problems []string, checked int) {
	end := time.Now()
	w.mu.Lock()
	live := map[string]bool{}
	for n := range ow.names {
		if s := w.sources[n]; s != nil && s.on && !s.ended {
			live[n] = true
		}
	}
	w.mu.Unlock()
	for _, r := range w.removed.between(ow.start, end.Add(time.Nanosecond)) {
		if live[r.stream] {
			problems = append(problems, fmt.Sprintf("%s: during %s on %s (%s–%s), balancer %s removed the replica of its live source %s on %s (%s)",
				r.at.Format(tsFormat), ow.kind, w.members[ow.origin].name, ow.start.Format(tsFormat), end.Format(tsFormat), r.balancer, r.stream, r.member, r.reason))
		}
	}
	for j, held := range ow.held {
		w.mu.Lock()
		faulted := overlaps(w.faults[j], ow.start, end)
		w.mu.Unlock()
		if faulted {
			continue // killed, down or slow itself meanwhile
		}
		l, err := w.members[j].listWithin(2 * time.Second)
		if err != nil {
			problems = append(problems, fmt.Sprintf("during %s on %s: member %s does not answer: %v", ow.kind, w.members[ow.origin].name, w.members[j].name, err))
			continue
		}
		now := map[string]uint64{}
		for _, c := range l.configs {
			now[c.LocalStreamName] = c.ConfigID
		}
		for n, id := range held {
			if !live[n] {
				continue
			}
			checked++
			if got, ok := now[n]; !ok || got != id {
				problems = append(problems, fmt.Sprintf("during %s on %s (%s–%s): the replica of live source %s on %s (config %d) is gone (now: config %d)",
					ow.kind, w.members[ow.origin].name, ow.start.Format(tsFormat), end.Format(tsFormat), n, w.members[j].name, id, got))
			}
		}
	}
	return problems, checked
}

// checkAlways returns what must never be seen on a member, whatever the
// faults: two configs of one name, a config of this group pulling a name
// from anywhere but its source's origin (a replica of a replica, or of a
// forged stream), a replica on the source's own origin or on a member
// that does not replicate, a foreign config changed. Members that do not
// answer within a second are skipped.
func (w *world) checkAlways() []string {
	listings := make([]*listing, len(w.members))
	for i, m := range w.members {
		if !m.running() {
			continue
		}
		if l, err := m.listWithin(time.Second); err == nil {
			listings[i] = &l
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var problems []string
	for i, l := range listings {
		if l == nil {
			continue
		}
		m := w.members[i]
		seen := map[string]int{}
		foreign := map[string]foreignConfig{}
		for _, f := range w.foreign[i] {
			foreign[f.name] = f
		}
		// A member restarted empty is being restored (its foreign configs
		// created again, or found taken by a replica) until its fault
		// closes: the model of them is settled only then.
		restoring := len(w.faults[i]) > 0 && w.faults[i][len(w.faults[i])-1].end.IsZero()
		for _, c := range l.configs {
			name := c.LocalStreamName
			seen[name]++
			if f, ok := foreign[name]; ok && !restoring {
				if c.URI != f.uri || !maps.Equal(c.Vars, f.vars) {
					problems = append(problems, fmt.Sprintf("%s: foreign config %s changed: %s %v, want %s %v", m.name, name, c.URI, c.Vars, f.uri, f.vars))
				}
				continue
			}
			if c.Vars["_streamlb_group"] != groupName {
				continue
			}
			s := w.sources[name]
			switch {
			case s == nil && w.gone[name]:
			case s == nil:
				problems = append(problems, fmt.Sprintf("%s holds a replica of %s, which no member ever had as a source (%s)", m.name, name, c.URI))
			case s.origin == i:
				problems = append(problems, fmt.Sprintf("%s holds a replica of its own source %s", m.name, name))
			case !m.replicate:
				problems = append(problems, fmt.Sprintf("%s (replicate false) holds a replica of %s", m.name, name))
			case c.URI != w.uri(s.origin, name) || c.Vars["_streamlb_origin"] != w.members[s.origin].ip:
				problems = append(problems, fmt.Sprintf("%s pulls %s from %s (tag origin %s), want %s", m.name, name, c.URI, c.Vars["_streamlb_origin"], w.uri(s.origin, name)))
			}
		}
		for name, n := range seen {
			if n > 1 {
				problems = append(problems, fmt.Sprintf("%s holds %d configs named %s", m.name, n, name))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

const tsFormat = "15:04:05.000"

func (w *world) memberIndex(name string) int {
	return slices.IndexFunc(w.members, func(m *member) bool { return m.name == name })
}

// justified reports whether, for some decision time up to lag before t,
// spans hold both the decision time and the time a grace before it.
func justified(spans []interval, t time.Time, lag time.Duration) bool {
	const tol = 100 * time.Millisecond
	for d := time.Duration(0); d <= lag; d += 25 * time.Millisecond {
		decided := t.Add(-d)
		if within(spans, decided) && within(spans, decided.Add(-teardownGrace+tol)) {
			return true
		}
	}
	return false
}

// within reports whether some span holds t.
func within(spans []interval, t time.Time) bool {
	for _, s := range spans {
		if !t.Before(s.start) && (s.end.IsZero() || t.Before(s.end)) {
			return true
		}
	}
	return false
}

// overlaps reports whether some span meets [from, to].
func overlaps(spans []interval, from, to time.Time) bool {
	for _, s := range spans {
		if !s.start.After(to) && (s.end.IsZero() || !s.end.Before(from)) {
			return true
		}
	}
	return false
}

// recent returns the spans that meet the half minute before t.
func recent(spans []interval, t time.Time) []interval {
	var out []interval
	for _, s := range spans {
		if s.end.IsZero() || s.end.After(t.Add(-30*time.Second)) {
			out = append(out, s)
		}
	}
	return out
}

func spansString(spans []interval) string {
	var parts []string
	for _, s := range spans {
		end := "…"
		if !s.end.IsZero() {
			end = s.end.Format(tsFormat)
		}
		parts = append(parts, s.start.Format(tsFormat)+"–"+end)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
