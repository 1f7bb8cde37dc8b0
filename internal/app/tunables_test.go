package app

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/emsim"
)

// TestReloadAppliesTheScopeAtOnce runs the balancer with two emulated
// members and include ["news*"]: a news stream is replicated, a camera
// stream is not. A reload that adds "cam*" makes the camera stream
// replicated without a restart.
func TestReloadAppliesTheScopeAtOnce(t *testing.T) {
	ips := emsim.RandomLoopbackIPs(2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: len(ips), EventsURL: "http://" + ln.Addr().String() + "/evowebservices/"})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	defer cl.Close()
	parse := func(include string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("scope.json", fmt.Appendf(nil, `{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
			"listen": %q, "resync_interval": "1s", "include": %s,
			"destination_ems_apiproxies": [
				{"enable": false, "address": %q, "name": "m1"},
				{"enable": false, "address": %q, "name": "m2"}]}}}`, ln.Addr().String(), include, ips[0], ips[1]))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	a, err := New(Options{Config: parse(`["news*"]`), SinkListener: ln, RetryBase: 100 * time.Millisecond, RetryMax: time.Second})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	origin := cl.Members()[0]
	for _, name := range []string{"cam1", "news1"} {
		if err := origin.Publish(name); err != nil {
			t.Fatal(err)
		}
	}
	holders := func(name string) int { return len(a.Controller().Holders(name)) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 15s: %s (holders: news1 %v, cam1 %v)", what,
					a.Controller().Holders("news1"), a.Controller().Holders("cam1"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// news1 on both members: the balancer has seen both streams and
	// acted on what is in scope.
	waitFor("news1 held by both members", func() bool { return holders("news1") == 2 })
	if n := holders("cam1"); n > 1 {
		t.Fatalf("cam1, outside include, held by %d members before the reload, want its origin alone", n)
	}
	if err := a.Reload(parse(`["news*", "cam*"]`)); err != nil {
		t.Fatal(err)
	}
	waitFor("cam1 held by both members after the reload", func() bool { return holders("cam1") == 2 })
}
