package emsim

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// postControl posts a control route and fails the test unless it answers
// wantStatus.
func postControl(t *testing.T, m *Member, route string, wantStatus int) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, m.APIURL()+route, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", route, err)
	}
	resp.Body.Close()
	if resp.StatusCode != wantStatus {
		t.Fatalf("POST %s: HTTP %d, want %d", route, resp.StatusCode, wantStatus)
	}
}

// awaitCount waits until get returns at least want.
func awaitCount(ctx context.Context, t *testing.T, what string, get func() int64, want int64) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for get() < want {
		select {
		case <-ctx.Done():
			t.Fatalf("%s stayed at %d, want %d: %v", what, get(), want, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// apiFailure describes how a faulted EMS call fails: "" when it answers
// SUCCESS.
func apiFailure(m *Member) string {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(m.APIURL() + "/version")
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.Status
	}
	return ""
}

// TestAPIFaultsKeepMediaStreaming checks that API faults on an origin leave
// a replica pulling from it streaming, in the same Cluster and from another
// one (another process), while down stops it.
func TestAPIFaultsKeepMediaStreaming(t *testing.T) {
	t.Parallel()
	faults := []string{"api_down=1", "error_rate=1", "latency=3s"}
	for _, remote := range []bool{false, true} {
		for _, fault := range faults {
			t.Run(fmt.Sprintf("%s remote=%t", fault, remote), func(t *testing.T) {
				t.Parallel()
				var origin, replica *Member
				if remote {
					origin = newCluster(t, 1, Config{}).Members()[0]
					replica = newCluster(t, 1, Config{}).Members()[0]
				} else {
					ms := newCluster(t, 2, Config{}).Members()
					origin, replica = ms[0], ms[1]
				}
				ctx := testCtx(t, 20*time.Second)
				if err := origin.Publish("cam"); err != nil {
					t.Fatal(err)
				}
				mustSucceed(t, replica, "pullStream", "uri=rtmp://"+origin.IP()+"/live/cam localStreamName=cam keepAlive=1 emulateUserAgent=streamlb")
				if err := replica.AwaitPullStatus(ctx, "cam", StatusStreaming); err != nil {
					t.Fatal(err)
				}
				postControl(t, origin, "/_emsim/faults?"+fault, http.StatusOK)
				if fault != "latency=3s" {
					if f := apiFailure(origin); f == "" {
						t.Fatalf("origin's API answers SUCCESS with %s", fault)
					}
				}
				// Wait for two checks of the origin made after the fault
				// (and, across processes, for two of its media answers).
				if remote {
					n := origin.Stats().MediaChecks
					awaitCount(ctx, t, "origin media checks", func() int64 { return origin.Stats().MediaChecks }, n+2)
				}
				if remote {
					n := replica.fullChecks.Load()
					awaitCount(ctx, t, "replica upstream checks", replica.fullChecks.Load, n+2)
				} else {
					// A source in the same process is checked when it
					// changes, not periodically: ask for a check of every
					// pull, as the origin going down or up would.
					n := replica.allChecks.Load()
					replica.requestCheck()
					awaitCount(ctx, t, "replica upstream checks", replica.allChecks.Load, n+1)
				}
				if got := replica.PullConfigs(); len(got) != 1 || got[0].StatusCode != StatusStreaming {
					t.Fatalf("replica pull with %s on its origin: %+v, want streaming", fault, got)
				}
				names := call(t, replica, "listInboundStreamNames", "")
				if !slices.ContainsFunc(names.data().([]any), func(v any) bool { return path(v, "name") == "cam" }) {
					t.Errorf("replica's inbound streams with %s on its origin: %s, want cam", fault, names.Raw)
				}

				postControl(t, origin, "/_emsim/faults?down=1", http.StatusOK)
				if err := replica.AwaitPullStatus(ctx, "cam", StatusConnectionFailed); err != nil {
					t.Fatal(err)
				}
				if err := replica.AwaitNoInbound(ctx, "cam"); err != nil {
					t.Fatal(err)
				}
				postControl(t, origin, "/_emsim/faults", http.StatusOK)
				if err := replica.AwaitPullStatus(ctx, "cam", StatusStreaming); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
