package cli

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"streamlb/internal/controller"
	"streamlb/internal/emsim"
	"streamlb/internal/testkit"
)

func TestDemoReplicatesAndStopsCleanly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	ip := emsim.RandomLoopbackIPs(3)[0]

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "-listen", listen, "-ip", ip}, Env{Stdout: &out, Stderr: &errOut})
	}()

	deadline := time.Now().Add(10 * time.Second)
	var st controller.Status
	for {
		if time.Now().After(deadline) {
			t.Fatalf("within 10s no stream replicated on all three members: %+v\n%s%s", st, out.String(), errOut.String())
		}
		if replicatedEverywhere(listen, &st) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("dashboard: %s", resp.Status)
	}
	if !strings.Contains(out.String(), "dashboard at http://"+listen+"/") {
		t.Errorf("the demo does not print its dashboard URL:\n%s", out.String())
	}
	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("demo exited %d on interrupt, want 0\n%s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop")
	}
}

// replicatedEverywhere reports whether the status lists three members and
// a stream present on every member other than its origin.
func replicatedEverywhere(listen string, st *controller.Status) bool {
	resp, err := http.Get("http://" + listen + "/api/v1/status")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(st); err != nil || len(st.Members) != 3 {
		return false
	}
	for _, s := range st.Streams {
		n := 0
		for _, r := range s.Replicas {
			if r.State == controller.StatePresent {
				n++
			}
		}
		if n == 2 {
			return true
		}
	}
	return false
}
