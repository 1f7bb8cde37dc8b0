package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPlayGood(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "good", "play.json"))
	if err != nil {
		t.Fatal(err)
	}
	wantPlay := &Play{
		Listen: "0.0.0.0:8090", PollInterval: 2 * time.Second, StaleAfter: 7 * time.Second,
		HighWater: 0.75, StickyTTL: 5 * time.Minute, DefaultStreamBitrate: 1.5e6,
	}
	if diff := cmp.Diff(wantPlay, cfg.Play); diff != "" {
		t.Errorf("Play mismatch (-want +got):\n%s", diff)
	}
	want := []Placement{
		{PlayHost: "ems-a.example.net", RTMPPort: 1935, RTSPPort: 5544, HTTPPort: 9888, MaxViewers: 500, CapacityOutMbps: 1000, Weight: 2, Playable: true},
		{PlayHost: "10.0.0.6", RTMPPort: 1936, RTSPPort: 554, HTTPPort: 8080, Weight: 1},
		{PlayHost: "10.0.0.7", RTMPPort: 1935, RTSPPort: 5544, HTTPPort: 8888, Weight: 1, Playable: true},
	}
	var got []Placement
	for _, m := range cfg.Members {
		got = append(got, m.Placement)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("placements mismatch (-want +got):\n%s", diff)
	}
}

func TestPlayDefaults(t *testing.T) {
	for _, tt := range []struct {
		name, play string
		want       *Play
	}{
		{"absent", "", nil},
		{"empty", `"play": {},`, &Play{Listen: DefaultPlayListen, PollInterval: 5 * time.Second, StaleAfter: 15 * time.Second, HighWater: 0.8, StickyTTL: 2 * time.Minute, DefaultStreamBitrate: 2e6}},
		{"slow poll stretches stale_after", `"play": {"poll_interval": "10s", "default_stream_bitrate": 800000},`, &Play{Listen: DefaultPlayListen, PollInterval: 10 * time.Second, StaleAfter: 30 * time.Second, HighWater: 0.8, StickyTTL: 2 * time.Minute, DefaultStreamBitrate: 8e5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := `{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {` + tt.play + `"destination_uri": ["10.0.0.9"]}}}`
			cfg, err := Parse("p.json", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Play); diff != "" {
				t.Errorf("Play mismatch (-want +got):\n%s", diff)
			}
			wantPl := Placement{}
			if tt.want != nil {
				wantPl = Placement{PlayHost: "10.0.0.9", RTMPPort: 1935, RTSPPort: 5544, HTTPPort: 8888, Weight: 1, Playable: true}
			}
			if got := cfg.Members[0].Placement; got != wantPl {
				t.Errorf("Placement = %+v, want %+v", got, wantPl)
			}
		})
	}
}

func TestPlayBad(t *testing.T) {
	path := filepath.Join("testdata", "bad", "play.json")
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded, want errors")
	}
	want := []string{
		`6:26: parameters.play.listen: 127.0.0.1:4000 is also listen or admin_listen: the play listener is public and serves nothing else, give it its own address`,
		`6:83: parameters.play.stale_after: want at least poll_interval (10s), got "5s": every sample would be stale before the next`,
		`6:103: parameters.play.high_water: want a utilization above 0 and at most 1, got 1.5`,
		`7:30: parameters.play.sticky_ttl: want a duration above 0, got "0s"`,
		`7:62: parameters.play.default_stream_bitrate: want a bitrate above 0 such as "2Mbps", "800kbps" or a number of bits per second, got "fast"`,
		`7:70: parameters.play: unknown key "redirect"`,
		`9:62: parameters.destination_ems_apiproxies[0].rtmpPort: want 1 to 65535, got 0`,
		`9:79: parameters.destination_ems_apiproxies[0].maxViewers: want 1 or more, got 0`,
		`9:101: parameters.destination_ems_apiproxies[0].capacityOutMbps: want a number of megabits per second above 0, got -1`,
		`10:20: parameters.destination_ems_apiproxies[0].weight: want a number above 0, got 0`,
		`10:35: parameters.destination_ems_apiproxies[0].playable: want a boolean, got string`,
		`10:54: parameters.destination_ems_apiproxies[0].playHost: want a host name or IP address, without scheme, port or path, got "http://x/"`,
	}
	for i := range want {
		want[i] = path + ":" + want[i]
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s", diff)
	}
}
