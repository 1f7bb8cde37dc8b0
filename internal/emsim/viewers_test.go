package emsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// outbound returns the outbound entries (type O*) of a listStreams answer.
func outbound(r reply) []map[string]any {
	var out []map[string]any
	list, _ := r.data().([]any)
	for _, v := range list {
		o, _ := v.(map[string]any)
		if typ, _ := o["type"].(string); strings.HasPrefix(typ, "O") {
			out = append(out, o)
		}
	}
	return out
}

// number returns a decoded JSON number as a float64.
func number(t *testing.T, v any) float64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestViewers(t *testing.T) {
	t.Parallel()
	sink := newSink(t)
	const bitrate = 1_000_000
	c := newCluster(t, 2, Config{EventsURL: sink.URL(), Bitrate: bitrate})
	a, b := c.Members()[0], c.Members()[1]
	ctx := testCtx(t, 15*time.Second)
	if err := a.Publish("cam"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, b, "pullStream", "uri=rtmp://"+a.IP()+"/live/cam localStreamName=cam keepAlive=1 emulateUserAgent=streamlb")
	if err := b.AwaitPullStatus(ctx, "cam", StatusStreaming); err != nil {
		t.Fatal(err)
	}

	postControl(t, a, "/_emsim/viewers?name=cam&protocol=rtmp&count=3", http.StatusOK)
	postControl(t, a, "/_emsim/viewers?name=cam&protocol=rtsp&count=2", http.StatusOK)
	postControl(t, a, "/_emsim/viewers?name=cam&protocol=hls&count=4", http.StatusOK)
	postControl(t, a, "/_emsim/viewers?name=nothing&protocol=rtmp&count=1", http.StatusNotFound)
	postControl(t, a, "/_emsim/viewers?name=cam&protocol=dash&count=1", http.StatusBadRequest)
	postControl(t, a, "/_emsim/viewers?name=cam&protocol=rtmp&count=-1", http.StatusBadRequest)
	if r1, r2, h := a.Viewers("cam"); r1 != 3 || r2 != 2 || h != 4 {
		t.Fatalf("Viewers(cam) = %d, %d, %d; want 3, 2, 4", r1, r2, h)
	}
	// The replica pull B makes is served by A as an outbound stream too.
	if err := a.Await(ctx, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.out.outs) == 6
	}); err != nil {
		t.Fatalf("A never listed 6 outbound streams: %v", err)
	}

	r := mustSucceed(t, a, "listStreams", "")
	outs := outbound(r)
	byType := map[string]int{}
	farIPs := map[any]bool{}
	var pull map[string]any
	for _, o := range outs {
		byType[o["type"].(string)]++
		farIPs[o["farIp"]] = true
		if o["name"] != "cam" {
			t.Errorf("outbound stream of %v, want cam", o["name"])
		}
		if o["farIp"] == b.IP() {
			pull = o
		}
	}
	var ids []any
	for _, o := range outs {
		ids = append(ids, o["uniqueId"])
	}
	in := mustSucceed(t, a, "getStreamInfo", "localStreamName=cam")
	if got := path(in.Env, "data", "outStreamsUniqueIds"); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("outStreamsUniqueIds of cam = %v, want %v", got, ids)
	}
	if byType["ONR"] != 4 || byType["ONP"] != 2 {
		t.Errorf("outbound streams by type = %v, want 4 ONR (3 players, 1 pull) and 2 ONP", byType)
	}
	if len(farIPs) != 6 {
		t.Errorf("outbound farIps = %v, want 6 distinct", farIPs)
	}
	if pull == nil || pull["userAgent"] != "streamlb" || pull["type"] != "ONR" {
		t.Errorf("the replica pull's outbound stream = %v, want ONR from %s with userAgent streamlb", pull, b.IP())
	}
	// An outbound entry has the keys and types of EMS's outbound stream
	// info (the recorded outStreamCreated payload, without the event's
	// fields, with listStreams' edgePid).
	ev := loadFixture(t, recordedDir, "ems-event-outStreamCreated-webuilogs-ONR.json")
	want := ev["payload"].(map[string]any)
	delete(want, "PID")
	delete(want, "customData")
	want["edgePid"] = json.Number("0")
	// The recording was made just as the player joined: its
	// inStreamUniqueId is still null.
	for _, o := range outs {
		checkShape(t, "listStreams outbound", o, want, allowed{"inStreamUniqueId"})
	}

	load := []struct {
		command, params, fixture string
		check                    func(r reply)
	}{
		{"clientsConnected", "", "ems-clientsConnected-docs20.json", func(r reply) {
			if n := number(t, path(r.Env, "data", "outboundCount")); n != 6 {
				t.Errorf("clientsConnected = %v, want 6", n)
			}
		}},
		{"clientsConnected", "localStreamName=cam", "ems-clientsConnected-apidef17-2.json", func(r reply) {
			if n := number(t, path(r.Env, "data", "outboundCount")); n != 6 {
				t.Errorf("clientsConnected of cam = %v, want 6", n)
			}
			if d := r.description(); d != "EMS outbound client connections count for the corresponding localstreamname: cam" {
				t.Errorf("description %q", d)
			}
		}},
		{"httpClientsConnected", "", "ems-httpClientsConnected-docs20.json", func(r reply) {
			if n := number(t, path(r.Env, "data", "httpStreamingSessionsCount")); n != 4 {
				t.Errorf("httpClientsConnected = %v, want 4", n)
			}
		}},
		{"httpClientsConnected", "groupName=cam", "ems-httpClientsConnected-apidef17-2.json", func(r reply) {
			if n := number(t, path(r.Env, "data", "httpStreamingSessionsCount")); n != 4 {
				t.Errorf("httpClientsConnected of cam = %v, want 4", n)
			}
		}},
		{"getBandwidth", "", "ems-getBandwidth-docs20.json", func(r reply) {
			// 6 outbound streams and 4 HLS sessions out, 1 stream in.
			if out := number(t, path(r.Env, "data", "current", "out")); out != 10*bitrate/8 {
				t.Errorf("getBandwidth current.out = %v, want %v", out, 10*bitrate/8)
			}
			if in := number(t, path(r.Env, "data", "current", "in")); in != bitrate/8 {
				t.Errorf("getBandwidth current.in = %v, want %v", in, bitrate/8)
			}
			if !strings.Contains(r.Raw, `"max":{"in":0.0000,"out":0.0000}`) || r.description() != "Bandwidth in B/s" {
				t.Errorf("getBandwidth = %s", r.Raw)
			}
		}},
		{"getConnectionsCount", "", "ems-getConnectionsCount-docs20.json", func(r reply) {
			if n := number(t, path(r.Env, "data", "count")); n != 7 {
				t.Errorf("getConnectionsCount = %v, want 7", n)
			}
		}},
		{"getConnectionsCountLimit", "", "ems-getConnectionsCountLimit-docs20.json", func(r reply) {
			if cur, lim := number(t, path(r.Env, "data", "current")), number(t, path(r.Env, "data", "limit")); cur != 7 || lim != 0 {
				t.Errorf("getConnectionsCountLimit = %v, %v; want 7, 0", cur, lim)
			}
		}},
		{"setConnectionsCountLimit", "count=8", "ems-setConnectionsCountLimit-docs20.json", func(r reply) {
			if cur, lim := number(t, path(r.Env, "data", "current")), number(t, path(r.Env, "data", "limit")); cur != 7 || lim != 8 {
				t.Errorf("setConnectionsCountLimit = %v, %v; want 7, 8", cur, lim)
			}
		}},
	}
	for _, tt := range load {
		got := mustSucceed(t, a, tt.command, tt.params)
		checkShape(t, tt.command+" "+tt.params, got.Env, loadDocExample(t, docDir, tt.fixture), nil)
		tt.check(got)
	}
	if r := call(t, a, "setConnectionsCountLimit", ""); r.status() != "FAIL" {
		t.Errorf("setConnectionsCountLimit without count = %s, want FAIL", r.Raw)
	}

	// The limit refuses new players beyond it.
	postControl(t, a, "/_emsim/viewers?name=cam&protocol=rtmp&count=5", http.StatusConflict)
	if r1, _, _ := a.Viewers("cam"); r1 != 4 {
		t.Errorf("RTMP players with a limit of 8 connections = %d, want 4", r1)
	}
	mustSucceed(t, a, "setConnectionsCountLimit", "count=0")

	// count 0 removes players; their outStreamClosed events follow.
	postControl(t, a, "/_emsim/viewers?name=cam&protocol=rtsp&count=0", http.StatusOK)
	if n := len(outbound(mustSucceed(t, a, "listStreams", ""))); n != 5 {
		t.Errorf("outbound streams after removing the RTSP players = %d, want 5", n)
	}
	closed := sink.await(ctx, t, "outStreamClosed ONP", func(e sinkEvent) bool {
		return e.Type == "outStreamClosed" && path(e.Env, "payload", "type") == "ONP"
	})
	checkShape(t, "outStreamClosed", closed.Env, loadFixture(t, recordedDir, "ems-event-outStreamClosed-webuilogs-ONR.json"), nil)
	created := sink.await(ctx, t, "outStreamCreated of the pull", func(e sinkEvent) bool {
		return e.Type == "outStreamCreated" && path(e.Env, "payload", "farIp") == b.IP()
	})
	checkShape(t, "outStreamCreated", created.Env, loadFixture(t, recordedDir, "ems-event-outStreamCreated-webuilogs-ONR.json"), nil)
	if ua := path(created.Env, "payload", "userAgent"); ua != "streamlb" || created.RemoteIP != a.IP() {
		t.Errorf("outStreamCreated of the pull from %s with userAgent %v, want from %s with streamlb", created.RemoteIP, ua, a.IP())
	}

	// When B's pull ends, A's outbound stream for it closes.
	mustSucceed(t, b, "removeConfig", "id=1")
	sink.await(ctx, t, "outStreamClosed of the pull", func(e sinkEvent) bool {
		return e.Type == "outStreamClosed" && path(e.Env, "payload", "farIp") == b.IP()
	})
	if n := number(t, path(mustSucceed(t, a, "clientsConnected", "").Env, "data", "outboundCount")); n != 4 {
		t.Errorf("clientsConnected after the pull ended = %v, want 4", n)
	}
	// When the stream closes, its players go.
	if err := a.Unpublish("cam"); err != nil {
		t.Fatal(err)
	}
	r = mustSucceed(t, a, "getBandwidth", "")
	if out := number(t, path(r.Env, "data", "current", "out")); out != 0 {
		t.Errorf("getBandwidth current.out with no streams = %v, want 0", out)
	}
	if r := mustSucceed(t, a, "httpClientsConnected", ""); number(t, path(r.Env, "data", "httpStreamingSessionsCount")) != 0 {
		t.Errorf("httpClientsConnected with no streams = %s, want 0", r.Raw)
	}
}

// servedPulls returns the farIp and userAgent of each outbound stream m
// serves to a pull.
func servedPulls(m *Member) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.out.served))
	for _, o := range m.out.served {
		out[o.farIP] = o.ua
	}
	return out
}

// TestServedPullAcrossProcesses: a member lists the pull a member of
// another Cluster makes of its stream as an outbound ONR stream, and drops
// it when the pull ends.
func TestServedPullAcrossProcesses(t *testing.T) {
	t.Parallel()
	a := newCluster(t, 1, Config{}).Members()[0]
	b := newCluster(t, 1, Config{}).Members()[0]
	ctx := testCtx(t, 15*time.Second)
	if err := a.Publish("cam"); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, b, "pullStream", "uri=rtmp://"+a.IP()+"/live/cam localStreamName=cam keepAlive=1 emulateUserAgent=streamlb")
	if err := a.Await(ctx, func() bool { return servedPulls(a)[b.IP()] == "streamlb" }); err != nil {
		t.Fatalf("A never listed B's pull: %v (served %v)", err, servedPulls(a))
	}
	outs := outbound(mustSucceed(t, a, "listStreams", ""))
	if len(outs) != 1 || outs[0]["farIp"] != b.IP() || outs[0]["userAgent"] != "streamlb" || outs[0]["type"] != "ONR" {
		t.Errorf("A's outbound streams = %v, want B's pull as ONR with userAgent streamlb", outs)
	}
	mustSucceed(t, b, "removeConfig", "id=1")
	if err := a.Await(ctx, func() bool { return len(servedPulls(a)) == 0 }); err != nil {
		t.Fatalf("A still lists B's ended pull: %v", err)
	}
}

// TestOutStreamsUniqueIdsFollowPlayers: each inbound entry of listStreams
// lists exactly the uniqueIds of its stream's outbound entries, in order,
// as players come and go and a stream closes; clientsConnected per stream
// agrees.
func TestOutStreamsUniqueIdsFollowPlayers(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, Config{})
	m := c.Members()[0]
	for _, name := range []string{"a", "b", "c"} {
		if err := m.Publish(name); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, want map[string]int) {
		t.Helper()
		r := mustSucceed(t, m, "listStreams", "")
		outs := map[string][]string{}
		ins := map[string]string{}
		list, _ := r.data().([]any)
		for _, v := range list {
			o := v.(map[string]any)
			name := o["name"].(string)
			if typ := o["type"].(string); strings.HasPrefix(typ, "O") {
				outs[name] = append(outs[name], fmt.Sprint(o["uniqueId"]))
			} else {
				ins[name] = fmt.Sprint(o["outStreamsUniqueIds"])
			}
		}
		for _, name := range []string{"a", "b", "c"} {
			if len(outs[name]) != want[name] {
				t.Errorf("%s: %d outbound entries of %s, want %d", step, len(outs[name]), name, want[name])
			}
			ids := "<nil>"
			if len(outs[name]) > 0 {
				ids = "[" + strings.Join(outs[name], " ") + "]"
			}
			if in, ok := ins[name]; ok && in != ids {
				t.Errorf("%s: outStreamsUniqueIds of %s = %s, want %s", step, name, in, ids)
			}
			n := number(t, path(mustSucceed(t, m, "clientsConnected", "localStreamName="+name).Env, "data", "outboundCount"))
			if int(n) != want[name] {
				t.Errorf("%s: clientsConnected of %s = %v, want %d", step, name, n, want[name])
			}
		}
	}
	set := func(name, protocol string, count int) {
		t.Helper()
		if err := m.SetViewers(name, protocol, count); err != nil {
			t.Fatal(err)
		}
	}
	set("a", "rtmp", 3)
	set("b", "rtsp", 2)
	set("a", "rtsp", 1)
	set("c", "rtmp", 1)
	check("players added", map[string]int{"a": 4, "b": 2, "c": 1})
	set("a", "rtmp", 1)
	set("c", "rtmp", 0)
	check("players gone", map[string]int{"a": 2, "b": 2})
	if err := m.Unpublish("b"); err != nil {
		t.Fatal(err)
	}
	check("b closed", map[string]int{"a": 2})
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.out.perName) != 1 || len(m.out.perName["a"]) != 2 || len(m.out.outs) != 2 {
		t.Errorf("outbound streams by name %v (%d in all), want a's 2 only", m.out.perName, len(m.out.outs))
	}
}
