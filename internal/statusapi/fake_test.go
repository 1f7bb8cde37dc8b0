package statusapi

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"streamlb/internal/controller"
)

// fakeController is a Controller whose snapshot the test sets. Status
// returns it whatever the query (the real controller's filtering is
// tested with it, in realgroup_test.go), and records the query.
type fakeController struct {
	mu      sync.Mutex
	st      controller.Status
	queries []controller.StatusQuery
	ready   chan struct{}
	journal []controller.Entry
	keep    int  // when positive, the journal keeps the last keep entries
	paged   bool // Status honours the query's Limit and Cursor
	newer   chan struct{}
}

var _ Controller = (*fakeController)(nil)

func newFake(st controller.Status) *fakeController {
	return &fakeController{st: st, ready: make(chan struct{}), newer: make(chan struct{})}
}

// record adds entries to the fake's journal, numbering them.
func (f *fakeController) record(es ...controller.Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range es {
		e.Seq = uint64(len(f.journal) + 1)
		f.journal = append(f.journal, e)
	}
	close(f.newer)
	f.newer = make(chan struct{})
}

func (f *fakeController) Journal(since uint64, limit int) (controller.JournalPage, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := controller.JournalPage{Events: []controller.Entry{}, Next: uint64(len(f.journal))}
	if len(f.journal) > 0 {
		p.Oldest = 1
	}
	if f.keep > 0 && len(f.journal) > f.keep {
		p.Oldest = uint64(len(f.journal) - f.keep + 1)
	}
	for s := max(since+1, p.Oldest); since < uint64(len(f.journal)) && s <= uint64(len(f.journal)); s++ {
		if limit > 0 && len(p.Events) == limit {
			p.Next = s - 1
			break
		}
		p.Events = append(p.Events, f.journal[s-1])
	}
	return p, f.newer
}

// lastQuery returns the query of the last Status call.
func (f *fakeController) lastQuery() controller.StatusQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) == 0 {
		return controller.StatusQuery{}
	}
	return f.queries[len(f.queries)-1]
}

// set replaces the snapshot.
func (f *fakeController) set(st controller.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
}

func (f *fakeController) Status(q controller.StatusQuery) controller.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	st := f.st
	if f.paged && q.Limit > 0 {
		// Paging alone (no filter), as the controller pages.
		from := 0
		if q.Cursor != "" {
			from = slices.IndexFunc(st.Streams, func(s controller.StreamStatus) bool { return s.Name == q.Cursor }) + 1
		}
		to := min(from+q.Limit, len(st.Streams))
		st.Streams = st.Streams[from:to]
		if to < len(f.st.Streams) {
			st.NextCursor = st.Streams[len(st.Streams)-1].Name
		}
	}
	return cloneStatus(st)
}

func (f *fakeController) Pause(name string) error  { return f.setPaused(name, true) }
func (f *fakeController) Resume(name string) error { return f.setPaused(name, false) }

func (f *fakeController) setPaused(name string, paused bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.st.Members {
		if f.st.Members[i].Name == name {
			f.st.Members[i].Paused = paused
			return nil
		}
	}
	return fmt.Errorf("%w %q", controller.ErrUnknownMember, name)
}

func (f *fakeController) Ready() <-chan struct{} { return f.ready }

// cloneStatus copies st deeply enough that a handler cannot share its
// slices and maps with the test.
func cloneStatus(st controller.Status) controller.Status {
	st.Members = slices.Clone(st.Members)
	st.Conflicts = slices.Clone(st.Conflicts)
	st.Streams = slices.Clone(st.Streams)
	for i := range st.Streams {
		st.Streams[i].Replicas = maps.Clone(st.Streams[i].Replicas)
	}
	if st.LastResync != nil {
		r := *st.LastResync
		st.LastResync = &r
	}
	return st
}

// newServer serves the status API and the dashboard of ctl on
// 127.0.0.1:0. The dashboard's clock is now (nil: time.Now) and its time
// zone UTC. Its requests' context ends when the test does, as internal/app
// ends them when it stops, so that open event streams end.
func newServer(t *testing.T, ctl Controller, now func() time.Time) (*httptest.Server, *Dashboard) {
	t.Helper()
	return newServerWith(t, &API{Controller: ctl, Logger: slog.New(slog.DiscardHandler)}, now)
}

func newServerWith(t *testing.T, api *API, now func() time.Time) (*httptest.Server, *Dashboard) {
	t.Helper()
	mux := http.NewServeMux()
	api.Register(mux)
	d := &Dashboard{Controller: api.Controller, Logger: slog.New(slog.DiscardHandler), now: now, loc: time.UTC}
	d.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	ctx, stop := context.WithCancel(context.Background())
	srv.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	srv.Start()
	t.Cleanup(func() { stop(); srv.Close() })
	return srv, d
}

// Snapshots used across the tests.

var t0 = time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)

func member(name, addr, api, state string) controller.MemberStatus {
	return controller.MemberStatus{Name: name, Address: addr, API: api, State: state, Replicate: true, LatencyMS: 1.5}
}

func present(since time.Time) controller.ReplicaStatus {
	return controller.ReplicaStatus{State: controller.StatePresent, Since: since}
}

// fixedStatus is the snapshot of the golden files: three members, one of
// them down, a replicated stream, a pending one, a failing one and a
// conflict.
func fixedStatus() controller.Status {
	down := member("ems-3", "10.0.0.13", "direct", controller.MemberDown)
	down.LastError = `ems member "ems-3": listConfig: dial tcp 10.0.0.13:7777: connect: connection refused`
	down.LatencyMS = 0
	return controller.Status{
		Converged: false,
		State:     "needs_attention",
		Summary: controller.Summary{Streams: 4, Attention: 2, Replicas: map[string]int{
			controller.StatePresent: 3, controller.StateConflict: 1, controller.StatePending: 1,
			controller.StateMissing: 1, controller.StateFailing: 1, controller.StateUnknown: 1,
		}},
		Members: []controller.MemberStatus{
			member("ems-1", "10.0.0.11", "proxy", controller.MemberUp),
			member("ems-2", "10.0.0.12", "direct", controller.MemberUp),
			down,
		},
		Streams: []controller.StreamStatus{
			{Name: "backup", Origin: "ems-2", Replicas: map[string]controller.ReplicaStatus{
				"ems-1": {State: controller.StateConflict, Since: t0.Add(-5 * time.Minute)},
				"ems-3": present(t0.Add(-20 * time.Minute)),
			}},
			{Name: "lobby", Origin: "ems-1", Replicas: map[string]controller.ReplicaStatus{
				"ems-2": present(t0.Add(-time.Hour)),
				"ems-3": present(t0.Add(-time.Hour)),
			}},
			{Name: "news", Origin: "ems-1", Replicas: map[string]controller.ReplicaStatus{
				"ems-2": {State: controller.StatePending, Since: t0.Add(-12 * time.Second), Attempts: 2,
					LastError: `ems member "ems-2": pullStream: HTTP 503 Service Unavailable`},
				"ems-3": {State: controller.StateMissing, Since: t0.Add(-12 * time.Second)},
			}},
			{Name: "yard", Origin: "ems-2", Replicas: map[string]controller.ReplicaStatus{
				"ems-1": {State: controller.StateFailing, Since: t0.Add(-40 * time.Second)},
				"ems-3": {State: controller.StateUnknown, Reason: "ems-3 cannot be listed"},
			}},
		},
		Conflicts: []controller.Conflict{{
			Stream: "backup", Member: "ems-1", Origin: "ems-2",
			Reason: `a pull config named "backup" that streamlb did not create (rtmp://10.0.0.99/live/backup)`,
		}},
		QueueDepth: 2,
		LastResync: &controller.ResyncStatus{At: t0.Add(-8 * time.Second), DurationMS: 35.2, Calls: 6},
	}
}
