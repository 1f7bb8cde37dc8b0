package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
	"streamlb/internal/testkit"
)

func TestStreamOnAnyMemberIsPulledByEveryOtherWithinOneSecond(t *testing.T) {
	g := newGroup(t, groupOpts{})
	g.converged(5 * time.Second)

	// An external camera pulled on the member behind the API proxy.
	start := time.Now()
	g.external(0, "cam1")
	g.replicated(0, "cam1", time.Second)
	t.Logf("external pull replicated in %v", time.Since(start))

	// An encoder publishing on a direct member.
	start = time.Now()
	if err := g.member(2).Publish("studio"); err != nil {
		t.Fatal(err)
	}
	g.replicated(2, "studio", time.Second)
	t.Logf("encoder publish replicated in %v", time.Since(start))

	st := g.converged(2 * time.Second)
	if len(st.Streams) != 2 {
		t.Errorf("status lists %d streams, want 2: %+v", len(st.Streams), st.Streams)
	}
	g.checkNoReplicaOfReplica(map[string]int{"cam1": 0, "studio": 2})
}

func TestNoReplicaOfAReplicaInGroupMode(t *testing.T) {
	g := newGroup(t, groupOpts{members: []memberConf{{}, {}, {}, {}}})
	g.converged(5 * time.Second)
	for i := range 4 {
		if err := g.member(i).Publish("s" + string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		g.replicated(i, "s"+string(rune('a'+i)), 2*time.Second)
	}
	// Wait for the replicas' own events to come back through the sink and
	// be handled, and for a resync after them, then check nothing more was
	// pulled: 4 streams × 3 replicas, each pulled once.
	g.converged(2 * time.Second)
	eventually(t, 3*time.Second, "the replicas' 12 inStreamCreated events handled", func() bool {
		return counterSum(t, g.app.Registry(), "streamlb_stream_events_total", map[string]string{"outcome": "replica"}) >= 12
	})
	resyncedSince(t, g.app, time.Now(), 5*time.Second)
	total := 0
	for i := range 4 {
		total += int(g.member(i).CallCount("pullstream"))
	}
	if total != 12 {
		t.Errorf("%d pullStream calls in all, want 12 (one per replica)", total)
	}
	g.checkNoReplicaOfReplica(map[string]int{"sa": 0, "sb": 1, "sc": 2, "sd": 3})
}

func TestTeardownAfterGraceAndBlipsRemoveNothing(t *testing.T) {
	g := newGroup(t, groupOpts{grace: 2 * time.Second})
	g.converged(5 * time.Second)
	m0 := g.member(0)
	if err := m0.Publish("live1"); err != nil {
		t.Fatal(err)
	}
	g.replicated(0, "live1", 2*time.Second)

	// A blip shorter than the grace.
	if err := m0.Unpublish("live1"); err != nil {
		t.Fatal(err)
	}
	ended := journalEntry(t, g.app, "source_ended", "live1", 2*time.Second)
	time.Sleep(500 * time.Millisecond) // paces the blip: the source stays gone for about half the grace
	if err := m0.Publish("live1"); err != nil {
		t.Fatal(err)
	}
	g.replicated(0, "live1", 3*time.Second)
	journalEntry(t, g.app, "source_appeared", "live1", 2*time.Second)
	// The teardown queued when the source ended comes due a grace after
	// it; a resync begun past that point has seen it through.
	resyncedSince(t, g.app, ended.At.Add(2*time.Second), 6*time.Second)
	if es := journal(g.app, "replica_removed", "live1"); len(es) != 0 {
		t.Errorf("the journal shows removals after a blip: %v", kinds(es))
	}
	for i := 1; i < 3; i++ {
		if n := g.member(i).CallCount("removeconfig"); n != 0 {
			t.Errorf("member %d: %d removeConfig calls after a blip, want 0", i, n)
		}
		if p := pullsOf(g.member(i), "live1"); len(p) != 1 {
			t.Errorf("member %d holds %v after a blip", i, p)
		}
	}

	// The source ends for good.
	ended = controller.Entry{At: time.Now()}
	if err := m0.Unpublish("live1"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		eventually(t, 5*time.Second, "replica removed", func() bool { return len(pullsOf(g.member(i), "live1")) == 0 })
	}
	if d := time.Since(ended.At); d < 2*time.Second {
		t.Errorf("replicas removed %v after the source ended, before the 2s grace", d)
	}
}

func TestEventsLostResyncConverges(t *testing.T) {
	g := newGroup(t, groupOpts{noEvents: true, resync: time.Second})
	g.converged(5 * time.Second)
	for i := range 3 {
		g.external(i, "lost"+string(rune('0'+i)))
	}
	for i := range 3 {
		g.replicated(i, "lost"+string(rune('0'+i)), 3*time.Second)
	}
	g.converged(3 * time.Second)
}

func TestForgedEventPullsNothing(t *testing.T) {
	g := newGroup(t, groupOpts{})
	g.converged(5 * time.Second)
	body := `{"id":1,"payload":{"PID":1,"customData":null,"name":"forged","ip":"` + g.ips[0] +
		`","connectionType":0},"processId":1,"timestamp":1,"type":"inStreamCreated"}`
	for range 50 {
		postEvent(t, g.sinkURL, body, 200)
	}
	// A real stream announced after them on the same origin: the
	// confirmation that answers it answers every name announced before,
	// so once it is replicated and the work is done, any pull the forged
	// events caused would have been made.
	if err := g.member(0).Publish("after-forged"); err != nil {
		t.Fatal(err)
	}
	g.replicated(0, "after-forged", 3*time.Second)
	workIdle(t, g.app, 3*time.Second)
	if n := counterSum(t, g.app.Registry(), "streamlb_stream_events_total", map[string]string{"outcome": "confirm"}); n < 51 {
		t.Errorf("%v events went to confirmation, want the 50 forged and the real one", n)
	}
	for i := range 3 {
		if p := pullsOf(g.member(i), "forged"); len(p) != 0 {
			t.Errorf("member %d pulls forged: %v", i, p)
		}
		want := int64(1) // after-forged
		if i == 0 {
			want = 0
		}
		if n := g.member(i).CallCount("pullstream"); n != want {
			t.Errorf("member %d got %d pullStream calls, want %d (the real stream's replica)", i, n, want)
		}
	}
	if n := g.member(0).CallCount("listinboundstreamnames"); n > 10 {
		t.Errorf("50 forged events cost %d listings of the origin; want them batched", n)
	}
}

func TestMigrationFromTheOriginalPluginConvergesAtOnce(t *testing.T) {
	// The group as the original plugin leaves it: untagged keepAlive=0
	// pulls of the origin's URIs on every other member.
	g := newGroup(t, groupOpts{})
	g.stopApp()
	ctx := context.Background()
	if err := g.member(0).Publish("legacy"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		_, err := g.clients[i].PullStream(ctx, ems.PullRequest{URI: g.uri(0, "legacy"), LocalStreamName: "legacy", KeepAlive: ptr(false)})
		if err != nil {
			t.Fatal(err)
		}
	}
	g.replicated(0, "legacy", 2*time.Second)
	before := g.member(1).CallCount("pullstream") + g.member(2).CallCount("pullstream")

	ln := listenLoopback(t)
	g.startApp(groupOpts{members: []memberConf{{proxy: true}, {}, {}}, resync: 5 * time.Second, grace: 2 * time.Second}, ln)
	eventually(t, 2*time.Second, "ready", func() bool {
		select {
		case <-g.app.Controller().Ready():
			return true
		default:
			return false
		}
	})
	st := g.app.Controller().Snapshot()
	if !st.Converged {
		t.Fatalf("not converged right after the first resync: %+v", st.Streams)
	}
	// A second resync, and the work both queued, done: any needless pull
	// would have been made.
	resyncedSince(t, g.app, st.LastResync.At, 5*time.Second)
	if after := g.member(1).CallCount("pullstream") + g.member(2).CallCount("pullstream"); after != before {
		t.Errorf("%d new pulls, want none", after-before)
	}
	// Adopted replicas go on teardown like streamlb's own.
	if err := g.member(0).Unpublish("legacy"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		eventually(t, 6*time.Second, "adopted replica removed", func() bool { return len(pullsOf(g.member(i), "legacy")) == 0 })
	}
}

func TestEncodedProxyStyleIsDrivenCorrectly(t *testing.T) {
	g := newGroup(t, groupOpts{members: []memberConf{{proxy: true, encoded: true}, {proxy: true, encoded: true}, {}}})
	g.converged(5 * time.Second)
	if err := g.member(2).Publish("enc"); err != nil {
		t.Fatal(err)
	}
	g.replicated(2, "enc", 2*time.Second)
	st := g.converged(2 * time.Second)
	for _, m := range st.Members[:2] {
		if m.API != "proxy" || m.State != "up" {
			t.Errorf("member %s: api %s state %s", m.Name, m.API, m.State)
		}
	}
}

func TestConflictsAreReportedAndLeftAlone(t *testing.T) {
	g := newGroup(t, groupOpts{})
	g.converged(5 * time.Second)
	ctx := context.Background()
	// Someone else's config holds the name on member 1.
	if _, err := g.clients[1].PullStream(ctx, ems.PullRequest{URI: "rtsp://other.example.invalid/x", LocalStreamName: "shared"}); err != nil {
		t.Fatal(err)
	}
	if err := g.member(0).Publish("shared"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "conflict on m2 reported", func() bool {
		st := g.app.Controller().Snapshot()
		return slices.ContainsFunc(st.Conflicts, func(c controllerConflict) bool { return c.Stream == "shared" && c.Member == "m2" })
	})
	if p := pullsOf(g.member(1), "shared"); len(p) != 1 || p[0] != "rtsp://other.example.invalid/x" {
		t.Errorf("member 1's own config was touched: %v", p)
	}
	eventually(t, 3*time.Second, "m3 holds the replica", func() bool { return hasReplica(g.member(2), "shared", g.uri(0, "shared")) })
	if n := g.member(1).CallCount("removeconfig"); n != 0 {
		t.Errorf("%d removeConfig calls on the member with the foreign config", n)
	}
}

func TestTwoGroupsSharingAMemberKeepTheirReplicas(t *testing.T) {
	// Group one: members 0,1,2 with streamlb "one". A second balancer of
	// group "two" shares member 2 with a member of its own.
	g := newGroup(t, groupOpts{group: "one"})
	g.converged(5 * time.Second)
	if err := g.member(0).Publish("a1"); err != nil {
		t.Fatal(err)
	}
	g.replicated(0, "a1", 2*time.Second)

	h := newGroup(t, groupOpts{group: "two", members: []memberConf{{}, {}}})
	h.converged(5 * time.Second)
	if err := h.member(0).Publish("b1"); err != nil {
		t.Fatal(err)
	}
	h.replicated(0, "b1", 2*time.Second)
	// Group two's replica of b1 on group one's member 2, tagged "two".
	_, err := g.clients[2].PullStream(context.Background(), ems.PullRequest{URI: h.uri(0, "b1"), LocalStreamName: "b1",
		Vars: map[string]string{"_streamlb_group": "two", "_streamlb_origin": h.ips[0]}})
	if err != nil {
		t.Fatal(err)
	}
	// Group one's source ends: its replicas go; group two's config stays.
	if err := g.member(0).Unpublish("a1"); err != nil {
		t.Fatal(err)
	}
	pulledB1 := time.Now()
	eventually(t, 6*time.Second, "a1 replicas removed", func() bool { return len(pullsOf(g.member(2), "a1")) == 0 })
	// A resync of group one begun a full grace after b1's config appeared
	// on the shared member has listed it and done its work: group one
	// would have removed b1 by then if it were going to.
	resyncedSince(t, g.app, pulledB1.Add(2*time.Second), 8*time.Second)
	if es := journal(g.app, "", "b1"); len(es) != 0 {
		t.Errorf("group one's journal mentions group two's stream: %v", kinds(es))
	}
	if p := pullsOf(g.member(2), "b1"); len(p) != 1 {
		t.Errorf("group two's replica on the shared member: %v, want it untouched", p)
	}
	for _, c := range g.app.Controller().Snapshot().Streams {
		if c.Name == "b1" {
			t.Errorf("group one lists group two's replica as a source: %+v", c)
		}
	}
}

func TestWrongCredentialsForOneMember(t *testing.T) {
	logs := &testkit.Buffer{}
	g := newGroup(t, groupOpts{members: []memberConf{{proxy: true, password: "wrong-password-xyz"}, {}, {}}, logs: logs, resync: 2 * time.Second})
	if err := g.member(1).Publish("cam"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "m3 holds cam", func() bool { return hasReplica(g.member(2), "cam", g.uri(1, "cam")) })
	var state, lastErr string
	eventually(t, 3*time.Second, "m1 unauthorized", func() bool {
		st := g.app.Controller().Snapshot()
		state, lastErr = st.Members[0].State, st.Members[0].LastError
		return state == "unauthorized"
	})
	if !strings.Contains(lastErr, "m1") {
		t.Errorf("last_error %q does not name the member", lastErr)
	}
	unauthorized := func() float64 {
		return counterSum(t, g.app.Registry(), "streamlb_ems_calls_total", map[string]string{"member": "m1", "result": "unauthorized"})
	}
	calls := unauthorized()
	time.Sleep(4 * time.Second) // a measuring window of two resync intervals: the refused calls are counted over it
	n := unauthorized() - calls
	if n == 0 {
		t.Errorf("no probe of the member with wrong credentials in two resync intervals; want about one per resync_interval")
	}
	if n > 3 {
		t.Errorf("%v refused calls to the member with wrong credentials in 4s; want it parked (about one per resync_interval)", n)
	}
	if g.member(0).CallCount("pullstream") != 0 {
		t.Errorf("a call got through with wrong credentials")
	}
	if n := strings.Count(logs.String(), "wrong credentials"); n == 0 {
		t.Errorf("no log line says wrong credentials:\n%s", logs.String())
	}
	for _, s := range []string{"wrong-password-xyz", proxyPassword} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs contain a password")
		}
	}
}

func TestReloadWithNewCredentialsClearsUnauthorized(t *testing.T) {
	o := groupOpts{members: []memberConf{{proxy: true, password: "stale-password"}, {}, {}}, resync: time.Minute}
	g := newGroup(t, o)
	if err := g.member(1).Publish("cam"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "m1 unauthorized", func() bool {
		return g.app.Controller().Snapshot().Members[0].State == "unauthorized"
	})
	defaults(&o)
	o.members[0].password = ""
	cfg, err := config.Parse("e2e.json", []byte(configText(o, g.ips, g.cfg.Listen)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.app.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	// Cleared at once, not at the next resync a minute away.
	eventually(t, 3*time.Second, "m1 filled after the reload", func() bool { return hasReplica(g.member(0), "cam", g.uri(1, "cam")) })
	if st := g.app.Controller().Snapshot().Members[0].State; st != "up" {
		t.Errorf("m1 is %s after the reload, want up", st)
	}
}

// TestRestartedMemberRefilledWithoutAResync checks that a member that
// restarts empty holds its replicas again within seconds, long before the
// next resync: its serverStarted event has it listed at once. Meanwhile
// the other members' replicas stay as they were, with the same configs,
// and nothing is removed anywhere.
func TestRestartedMemberRefilledWithoutAResync(t *testing.T) {
	g := newGroup(t, groupOpts{resync: 10 * time.Minute})
	g.converged(5 * time.Second)
	if err := g.member(0).Publish("live1"); err != nil {
		t.Fatal(err)
	}
	g.replicated(0, "live1", 2*time.Second)
	keptIDs := func() []uint64 {
		var ids []uint64
		for _, c := range g.member(1).PullConfigs() {
			ids = append(ids, c.ConfigID)
		}
		return ids
	}
	before := keptIDs()

	start := time.Now()
	g.member(2).Restart()
	eventually(t, 3*time.Second, "the restarted member pulls live1 again", func() bool {
		return hasReplica(g.member(2), "live1", g.uri(0, "live1"))
	})
	t.Logf("restarted member refilled in %v", time.Since(start))

	if after := keptIDs(); !slices.Equal(after, before) || !hasReplica(g.member(1), "live1", g.uri(0, "live1")) {
		t.Errorf("member 1's configs %v after the restart, want %v unchanged", after, before)
	}
	if n := counterSum(t, g.app.Registry(), "streamlb_replica_removals_total", nil); n != 0 {
		t.Errorf("%v replicas removed, want none", n)
	}
	if n := counterSum(t, g.app.Registry(), "streamlb_stream_events_total", map[string]string{"outcome": "restart"}); n != 1 {
		t.Errorf("restart events counted %v, want 1", n)
	}
}
