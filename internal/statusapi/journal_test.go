package statusapi

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"streamlb/internal/controller"
)

// edit returns a copy of st changed by fn.
func edit(st controller.Status, fn func(*controller.Status)) controller.Status {
	st = cloneStatus(st)
	fn(&st)
	return st
}

func streamIndex(st *controller.Status, name string) int {
	return slices.IndexFunc(st.Streams, func(s controller.StreamStatus) bool { return s.Name == name })
}

func setReplica(st *controller.Status, stream, member string, r controller.ReplicaStatus) {
	st.Streams[streamIndex(st, stream)].Replicas[member] = r
}

// texts renders events as "level: text" lines.
func texts(evs []pending) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Level+": "+e.Text)
	}
	return out
}

func TestDiffStatus(t *testing.T) {
	base := fixedStatus()
	tests := []struct {
		name string
		b    controller.Status
		want []string
	}{
		{"nothing changed", base, nil},
		{"a member goes down", edit(base, func(st *controller.Status) {
			st.Members[1].State, st.Members[1].LastError = controller.MemberDown, "connection refused"
		}), []string{"error: ems-2 is down: connection refused"}},
		{"a member comes back", edit(base, func(st *controller.Status) { st.Members[2].State = controller.MemberUp }),
			[]string{"info: ems-3 is up"}},
		{"a member refuses the credentials", edit(base, func(st *controller.Status) {
			st.Members[0].State, st.Members[0].LastError = controller.MemberUnauthorized, "API proxy answered 401"
		}), []string{"error: ems-1 refuses streamlb's credentials: API proxy answered 401"}},
		{"a member is paused", edit(base, func(st *controller.Status) { st.Members[0].Paused = true }),
			[]string{"warn: ems-1 is paused: it gets no new work"}},
		{"a member joins", edit(base, func(st *controller.Status) {
			st.Members = append(st.Members, member("ems-4", "10.0.0.14", "direct", controller.MemberUp))
		}), []string{"info: member ems-4 joined the group (10.0.0.14, direct API)"}},
		{"a member leaves", edit(base, func(st *controller.Status) { st.Members = st.Members[:2] }),
			[]string{"info: member ems-3 left the group; its replicas stay until pruned"}},
		{"a source appears", edit(base, func(st *controller.Status) {
			st.Streams = append(st.Streams, controller.StreamStatus{Name: "stage", Origin: "ems-2",
				Replicas: map[string]controller.ReplicaStatus{"ems-1": {State: controller.StateMissing}}})
		}), []string{"info: source stage appeared on ems-2"}},
		{"a source appears already replicated", edit(base, func(st *controller.Status) {
			st.Streams = append(st.Streams, controller.StreamStatus{Name: "stage", Origin: "ems-2",
				Replicas: map[string]controller.ReplicaStatus{"ems-1": present(t0), "ems-3": {State: controller.StateMissing}}})
		}), []string{"action: source stage appeared on ems-2 and is replicated to ems-1"}},
		{"a source ends", edit(base, func(st *controller.Status) { st.Streams = slices.Delete(st.Streams, 1, 2) }),
			[]string{"info: source lobby ended on ems-1; its replicas go after the teardown grace"}},
		{"a source moves", edit(base, func(st *controller.Status) { st.Streams[1].Origin = "ems-2" }),
			[]string{"warn: source lobby moved from ems-1 to ems-2"}},
		{"a replica is pulled", edit(base, func(st *controller.Status) {
			setReplica(st, "news", "ems-3", present(t0))
		}), []string{"action: news replicated to ems-3"}},
		{"a retry fails differently", edit(base, func(st *controller.Status) {
			setReplica(st, "news", "ems-2", controller.ReplicaStatus{State: controller.StatePending, Attempts: 3, LastError: "timeout"})
		}), []string{"error: news on ems-2: timeout (attempt 3)"}},
		{"a retry fails the same way", edit(base, func(st *controller.Status) {
			r := st.Streams[streamIndex(st, "news")].Replicas["ems-2"]
			r.Attempts++
			setReplica(st, "news", "ems-2", r)
		}), nil},
		{"a replica starts failing", edit(base, func(st *controller.Status) {
			setReplica(st, "lobby", "ems-2", controller.ReplicaStatus{State: controller.StateFailing})
		}), []string{"error: lobby on ems-2 is failing (EMS cannot pull it from its origin)"}},
		{"a present replica is lost", edit(base, func(st *controller.Status) {
			setReplica(st, "lobby", "ems-2", controller.ReplicaStatus{State: controller.StateMissing})
		}), []string{"warn: lobby is gone from ems-2; it is pulled again"}},
		{"a conflict appears", edit(base, func(st *controller.Status) {
			setReplica(st, "lobby", "ems-2", controller.ReplicaStatus{State: controller.StateConflict})
			st.Conflicts = append(st.Conflicts, controller.Conflict{Stream: "lobby", Member: "ems-2", Origin: "ems-1", Reason: "someone else's"})
		}), []string{"warn: conflict: lobby on ems-2 is left alone: someone else's"}},
		{"a conflict is resolved", edit(base, func(st *controller.Status) {
			st.Conflicts = nil
			setReplica(st, "backup", "ems-1", present(t0))
		}), []string{"action: backup replicated to ems-1", "info: conflict over backup on ems-1 is resolved"}},
		{"the group converges", edit(base, func(st *controller.Status) { st.Converged = true }),
			[]string{"info: the group is converged: every replica on every up member is present"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := texts(diffStatus(base, tt.b))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("diffStatus events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFirstEvents(t *testing.T) {
	got := texts(firstEvents(fixedStatus()))
	want := []string{
		"info: watching 3 members (2 up) and 4 sources",
		`error: ems-3 is down: ems member "ems-3": listConfig: dial tcp 10.0.0.13:7777: connect: connection refused`,
		`warn: conflict: backup on ems-1 is left alone: a pull config named "backup" that streamlb did not create (rtmp://10.0.0.99/live/backup)`,
		"error: yard on ems-1 is failing (EMS cannot pull it from its origin)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("firstEvents (-want +got):\n%s", diff)
	}
}

func TestSummarize(t *testing.T) {
	var evs []pending
	for i := range 20 {
		name := fmt.Sprintf("s%02d", i)
		evs = append(evs, ev("source-new", LevelInfo, "a", name, "source %s appeared on a", name))
	}
	evs = append(evs, ev("member-down", LevelError, "b", "", "b is down"))
	got := texts(summarize(evs))
	if len(got) != maxPerKind+1 {
		t.Fatalf("summarize kept %d events, want %d:\n%s", len(got), maxPerKind+1, strings.Join(got, "\n"))
	}
	if want := "info: … and 13 more like these: s07, s08, s09, …"; got[maxPerKind-1] != want {
		t.Errorf("summary = %q, want %q", got[maxPerKind-1], want)
	}
	if want := "error: b is down"; got[maxPerKind] != want {
		t.Errorf("last event = %q, want %q (other kinds are kept)", got[maxPerKind], want)
	}
}

func TestJournal(t *testing.T) {
	fake := newFake(fixedStatus())
	now := t0
	j := &journal{ctl: fake, now: func() time.Time { return now }}

	j.poll()
	evs, last := j.since(0)
	if len(evs) != 4 || last != 4 {
		t.Fatalf("after the first poll: %d events, last %d; want 4 and 4", len(evs), last)
	}
	if !evs[0].At.Equal(t0) || evs[0].Seq != 1 {
		t.Errorf("first event = %+v, want seq 1 at %v", evs[0], t0)
	}

	now = now.Add(time.Second)
	fake.set(edit(fixedStatus(), func(st *controller.Status) { st.Members[2].State = controller.MemberUp }))
	j.poll()
	evs, last = j.since(4)
	if len(evs) != 1 || last != 5 || evs[0].Text != "ems-3 is up" || evs[0].Member != "ems-3" || !evs[0].At.Equal(now) {
		t.Errorf("since(4) = %+v, last %d; want one event: ems-3 is up, at %v", evs, last, now)
	}
	if evs, _ := j.since(5); len(evs) != 0 {
		t.Errorf("since(5) = %+v, want nothing", evs)
	}
	if evs, _ := j.since(99); len(evs) != 5 {
		t.Errorf("since(99) (a restarted daemon) = %d events, want all 5", len(evs))
	}

	// The ring keeps the newest journalSize events.
	for i := range journalSize {
		fake.set(edit(fixedStatus(), func(st *controller.Status) { st.Members[0].Paused = i%2 == 0 }))
		j.poll()
	}
	evs, last = j.since(0)
	if len(evs) != journalSize || evs[len(evs)-1].Seq != last || evs[0].Seq != last-journalSize+1 {
		t.Errorf("after many polls: %d events from seq %d to %d (last %d), want the newest %d",
			len(evs), evs[0].Seq, evs[len(evs)-1].Seq, last, journalSize)
	}
}
