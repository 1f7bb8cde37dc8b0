package emsim

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFlow follows one stream through a group: an external pull on A, its
// event, a replica on B, the source failing and returning.
func TestFlow(t *testing.T) {
	t.Parallel()
	sink := newSink(t)
	c := newCluster(t, 2, Config{EventsURL: sink.URL()})
	a, b := c.Members()[0], c.Members()[1]
	ctx := testCtx(t, 15*time.Second)
	const cam = "rtmp://camera.example.net/live/cam7"

	// External pull on A, with user-defined variables.
	mustSucceed(t, a, "pullStream", `uri=`+cam+` localStreamName=X keepAlive=1 _group=g1 _origin=site\ a `)
	created := sink.await(ctx, t, "inStreamCreated X on A", isEvent("inStreamCreated", "X", a.IP()))
	if created.RemoteIP != a.IP() {
		t.Errorf("inStreamCreated posted from %s, want A's address %s", created.RemoteIP, a.IP())
	}
	if created.ContentType != "application/json" {
		t.Errorf("event Content-Type = %q, want application/json", created.ContentType)
	}
	if !created.Listed {
		t.Errorf("X was not listed by A when its inStreamCreated arrived")
	}
	for k, want := range map[string]any{"_group": "g1", "_origin": "site a", "uri": cam, "keepAlive": true} {
		if got := path(created.Env, "payload", "pullSettings", k); got != want {
			t.Errorf("inStreamCreated payload.pullSettings.%s = %v, want %v", k, got, want)
		}
	}
	if got := path(created.Env, "payload", "connectionType"); fmt.Sprint(got) != "1" {
		t.Errorf("payload.connectionType = %v, want 1", got)
	}
	if got := path(created.Env, "id"); fmt.Sprint(got) != "1" {
		t.Errorf("first event id = %v, want 1", got)
	}

	// B replicates X from A; a keepAlive=0 replica rides along.
	mustSucceed(t, b, "pullStream", "uri=rtmp://"+a.IP()+"/live/X localStreamName=X keepAlive=1 _group=g1")
	mustSucceed(t, b, "pullStream", "uri=rtmp://"+a.IP()+"/live/X localStreamName=X0 keepAlive=0")
	if err := b.AwaitPullStatus(ctx, "X", StatusStreaming); err != nil {
		t.Fatal(err)
	}
	if err := b.AwaitInbound(ctx, "X0"); err != nil {
		t.Fatal(err)
	}
	replica := sink.await(ctx, t, "inStreamCreated X on B", isEvent("inStreamCreated", "X", b.IP()))
	if replica.RemoteIP != b.IP() || path(replica.Env, "payload", "farIp") != a.IP() {
		t.Errorf("replica event from %s with farIp %v, want from %s with farIp %s",
			replica.RemoteIP, path(replica.Env, "payload", "farIp"), b.IP(), a.IP())
	}

	// A loses X: B's keepAlive replica fails and retries, the keepAlive=0
	// one disappears.
	a.SetExternalAvailable(cam, false)
	if err := a.AwaitNoInbound(ctx, "X"); err != nil {
		t.Fatal(err)
	}
	if err := b.AwaitNoInbound(ctx, "X"); err != nil {
		t.Fatal(err)
	}
	if err := b.AwaitNoPullConfig(ctx, "X0"); err != nil {
		t.Fatal(err)
	}
	failing := func() bool {
		for _, pc := range b.PullConfigs() {
			if pc.LocalStreamName == "X" {
				return pc.StatusCode == StatusDisconnected || pc.StatusCode == StatusConnectionFailed
			}
		}
		return false
	}
	if err := b.Await(ctx, failing); err != nil {
		t.Fatalf("B's pull of X never failed: %v", err)
	}
	closed := sink.await(ctx, t, "inStreamClosed X on B", isEvent("inStreamClosed", "X", b.IP()))
	if closed.RemoteIP != b.IP() {
		t.Errorf("inStreamClosed posted from %s, want %s", closed.RemoteIP, b.IP())
	}
	r := mustSucceed(t, b, "listConfig", "")
	entry := path(r.Env, "data", "pull", 0)
	if path(entry, "localStreamName") != "X" || path(entry, "status", "previous") == nil {
		t.Errorf("listConfig on B = %s, want X with a previous status", r.Raw)
	}

	// X returns: A reconnects, then B's retry succeeds.
	a.SetExternalAvailable(cam, true)
	if err := b.AwaitPullStatus(ctx, "X", StatusStreaming); err != nil {
		t.Fatal(err)
	}
	if got := len(b.PullConfigs()); got != 1 {
		t.Errorf("B has %d pull configs, want 1", got)
	}

	// Event ids of one member increase by one. Each event has its own
	// connection and nobody waits for the answers, so they may arrive out
	// of order, as EMS's do.
	var ids []int
	for _, e := range sink.all() {
		if path(e.Env, "payload", "ip") != a.IP() {
			continue
		}
		var id int
		fmt.Sscan(fmt.Sprint(e.Env["id"]), &id)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if id != i+1 {
			t.Errorf("A's event ids are %v, want 1 to %d", ids, len(ids))
			break
		}
	}
}

// TestStateSurvivesRestart restarts a member with a state file.
func TestStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "state.json")
	ip := RandomLoopbackIPs(1)[0]
	ctx := testCtx(t, 10*time.Second)
	cfg := Config{IP: ip, Members: 1, APIPort: testPort, StatePath: state}

	c1, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := c1.Members()[0]
	mustSucceed(t, m, "pullStream", `uri=rtmp://cam.example.org/live/k localStreamName=K keepAlive=1 _tag=v\ w _list=a,b ttl=9`)
	mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/t localStreamName=T keepAlive=0")
	mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/n localStreamName=N keepAlive=1 saveToConfig=0")
	mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/k2 localStreamName=K2 keepAlive=1")
	mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/gone localStreamName=G keepAlive=1")
	mustSucceed(t, m, "removeConfig", "id=5")
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}

	c2, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c2.Close(); err != nil {
			t.Error(err)
		}
	}()
	m = c2.Members()[0]
	got := m.PullConfigs()
	var names []string
	for _, pc := range got {
		names = append(names, fmt.Sprintf("%d:%s", pc.ConfigID, pc.LocalStreamName))
	}
	if strings.Join(names, " ") != "1:K 4:K2" {
		t.Fatalf("restored configs = %v, want [1:K 4:K2]", names)
	}
	if v := got[0].Vars; v["_tag"] != "v w" || v["_list"] != "a,b" {
		t.Errorf("restored vars = %v", v)
	}
	r := mustSucceed(t, m, "getConfigInfo", "id=1")
	if path(r.Env, "data", "ttl") != json.Number("9") {
		t.Errorf("restored ttl = %v, want 9", path(r.Env, "data", "ttl"))
	}
	if l, _ := path(r.Env, "data", "_list").([]any); len(l) != 2 {
		t.Errorf("restored _list = %v, want an array of 2", path(r.Env, "data", "_list"))
	}
	// Restored configs connect again.
	if err := m.AwaitPullStatus(ctx, "K", StatusStreaming); err != nil {
		t.Fatal(err)
	}
	// New configIds continue above every restored one.
	r = mustSucceed(t, m, "pullStream", "uri=rtmp://cam.example.org/live/new localStreamName=NEW")
	if id := r.dataObj()["configId"]; id != json.Number("5") {
		t.Errorf("configId after restart = %v, want 5", id)
	}
}

// TestPullFromOtherProcess pulls from a member of another Cluster, checked
// over HTTP with batched media-plane checks.
func TestPullFromOtherProcess(t *testing.T) {
	t.Parallel()
	ca := newCluster(t, 1, Config{})
	cb := newCluster(t, 1, Config{})
	a, b := ca.Members()[0], cb.Members()[0]
	ctx := testCtx(t, 15*time.Second)
	const n = 20
	for i := range n {
		if err := a.Publish(fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	start := a.Stats().MediaChecks
	began := time.Now()
	for i := range n {
		mustSucceed(t, b, "pullStream", fmt.Sprintf("uri=rtmp://%s/live/s%d localStreamName=s%d keepAlive=1", a.IP(), i, i))
	}
	for i := range n {
		if err := b.AwaitPullStatus(ctx, fmt.Sprintf("s%d", i), StatusStreaming); err != nil {
			t.Fatal(err)
		}
	}
	// With the watcher running, a stream published just before a
	// keepAlive=0 pull is not missed because of an older answer.
	if err := a.Publish("late"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, b, "pullStream", "uri=rtmp://"+a.IP()+"/live/late localStreamName=late keepAlive=0")
	if err := b.AwaitInbound(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unpublish("s3"); err != nil {
		t.Fatal(err)
	}
	if err := b.AwaitNoInbound(ctx, "s3"); err != nil {
		t.Fatal(err)
	}
	if err := b.AwaitPullStatus(ctx, "s3", StatusDisconnected); err != nil {
		t.Fatal(err)
	}
	calls := a.Stats().MediaChecks - start
	// One check per second (plus the first), never one per stream.
	if limit := int64(time.Since(began).Seconds()) + 2; calls > limit {
		t.Errorf("A answered %d media checks for %d pulls in %v, want at most %d",
			calls, n, time.Since(began), limit)
	}
	if calls == 0 {
		t.Errorf("A answered no media checks")
	}
	if api := a.CallCount("listInboundStreamNames"); api != 0 {
		t.Errorf("A answered %d listInboundStreamNames calls, want none: upstream checks use the media plane", api)
	}
}

// A pull from a member of the same process stops when its source ends,
// through the announcement of that end alone: no check of every pull runs.
func TestPullStopsWhenLocalSourceEnds(t *testing.T) {
	t.Parallel()
	a, b, ctx := localPull(t)
	checked := b.allChecks.Load()
	if err := a.Unpublish("cam"); err != nil {
		t.Fatal(err)
	}
	if err := b.AwaitNoInbound(ctx, "cam"); err != nil {
		t.Fatal(err)
	}
	if got := b.allChecks.Load(); got != checked {
		t.Errorf("B checked every pull %d times to see its source end, want none: the source's end is announced", got-checked)
	}
}

// The periodic check leaves out pulls from members of the same process;
// a check asked for (a member going down or up asks for one) includes
// them.
func TestPeriodicCheckLeavesLocalPullsOut(t *testing.T) {
	t.Parallel()
	a, b, ctx := localPull(t)
	endSilently(a, "cam")
	n := b.fullChecks.Load()
	awaitCount(ctx, t, "B's checks", b.fullChecks.Load, n+2)
	if err := b.AwaitPullStatus(ctx, "cam", StatusStreaming); err != nil {
		t.Fatalf("B's pull of a local source, after two periodic checks: %v", err)
	}
	b.requestCheck()
	if err := b.AwaitNoInbound(ctx, "cam"); err != nil {
		t.Fatal(err)
	}
}

// A source's end announced when the periodic check is due is checked
// too, though the periodic check leaves its pulls out.
func TestAnnouncedEndCheckedWithPeriodicCheck(t *testing.T) {
	t.Parallel()
	a, b, _ := localPull(t)
	endSilently(a, "cam")
	b.checkPending(time.Now(), false, []srcRef{{host: a.IP(), name: "cam"}}, true)
	if got := b.PullConfigs(); len(got) != 1 || got[0].StatusCode == StatusStreaming {
		t.Fatalf("B's pull after its source's announced end and a periodic check: %+v, want not streaming", got)
	}
}

// localPull starts two members of one process, A publishing cam and B
// streaming it through a pull.
func localPull(t *testing.T) (a, b *Member, ctx context.Context) {
	t.Helper()
	c := newCluster(t, 2, Config{})
	a, b = c.Members()[0], c.Members()[1]
	ctx = testCtx(t, 15*time.Second)
	if err := a.Publish("cam"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, b, "pullStream", "uri=rtmp://"+a.IP()+"/live/cam localStreamName=cam keepAlive=1")
	if err := b.AwaitPullStatus(ctx, "cam", StatusStreaming); err != nil {
		t.Fatal(err)
	}
	return a, b, ctx
}

// endSilently removes m's inbound stream name without announcing its end
// to the pulls of it, as no path of the emulator does.
func endSilently(m *Member, name string) {
	m.mu.Lock()
	delete(m.streams, name)
	m.mu.Unlock()
}
