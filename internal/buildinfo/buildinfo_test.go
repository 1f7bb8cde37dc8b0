package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func vcs(rev, at, modified string) []debug.BuildSetting {
	return []debug.BuildSetting{
		{Key: "-compiler", Value: "gc"},
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: rev},
		{Key: "vcs.time", Value: at},
		{Key: "vcs.modified", Value: modified},
	}
}

const rev = "1a7f57d5cbb1e2f3a4b5c6d7e8f9a0b1c2d3e4f5"

func TestFromBuild(t *testing.T) {
	tests := []struct {
		name     string
		bi       *debug.BuildInfo
		override string
		want     Info
		line     string
	}{
		{
			name: "tagged release",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "streamlb", Version: "v1.2.3"}, Settings: vcs(rev, "2026-11-30T12:00:00Z", "false")},
			want: Info{Version: "v1.2.3", Revision: rev, Time: "2026-11-30T12:00:00Z", GoVersion: "go1.26.8"},
			line: "streamlb v1.2.3 (rev 1a7f57d5cbb1, 2026-11-30T12:00:00Z) go1.26.8",
		},
		{
			name: "devel build from a dirty work tree",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "streamlb", Version: "(devel)"}, Settings: vcs(rev, "2026-11-30T12:00:00Z", "true")},
			want: Info{Version: Devel, Revision: rev, Time: "2026-11-30T12:00:00Z", Modified: true, GoVersion: "go1.26.8"},
			line: "streamlb devel (rev 1a7f57d5cbb1, 2026-11-30T12:00:00Z, modified) go1.26.8",
		},
		{
			name:     "link-time override wins",
			bi:       &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "streamlb", Version: "v0.0.0-20261130120000-1a7f57d5cbb1"}, Settings: vcs(rev, "2026-11-30T12:00:00Z", "false")},
			override: "2.0.0-1ubuntu1",
			want:     Info{Version: "2.0.0-1ubuntu1", Revision: rev, Time: "2026-11-30T12:00:00Z", GoVersion: "go1.26.8"},
			line:     "streamlb 2.0.0-1ubuntu1 (rev 1a7f57d5cbb1, 2026-11-30T12:00:00Z) go1.26.8",
		},
		{
			name:     "tarball build with an override",
			bi:       &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "streamlb", Version: "(devel)"}},
			override: "v1.2.3",
			want:     Info{Version: "v1.2.3", GoVersion: "go1.26.8"},
			line:     "streamlb v1.2.3 go1.26.8",
		},
		{
			name: "no VCS information at all",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "streamlb", Version: "(devel)"}},
			want: Info{Version: Devel, GoVersion: "go1.26.8"},
			line: "streamlb devel (no VCS information) go1.26.8",
		},
		{
			name: "no build information",
			want: Info{Version: Devel, GoVersion: "unknown"},
			line: "streamlb devel (no VCS information) unknown",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromBuild(tt.bi, tt.override)
			if got != tt.want {
				t.Errorf("fromBuild = %+v, want %+v", got, tt.want)
			}
			if s := got.String(); s != tt.line {
				t.Errorf("String() = %q, want %q", s, tt.line)
			}
		})
	}
}

func TestGetKnowsTheGoRelease(t *testing.T) {
	info := Get()
	if !strings.HasPrefix(info.GoVersion, "go") || info.Version == "" {
		t.Errorf("Get() = %+v, want a version and a Go release", info)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(Info{Version: "v1.2.3", Revision: rev, GoVersion: "go1.26.8", Modified: true}))
	want := `# HELP streamlb_build_info The running streamlb's version, VCS revision and Go release as labels; always 1.
# TYPE streamlb_build_info gauge
streamlb_build_info{goversion="go1.26.8",revision="` + rev + `",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "streamlb_build_info"); err != nil {
		t.Error(err)
	}

	// The exported constructor describes the running binary.
	reg = prometheus.NewRegistry()
	reg.MustRegister(NewCollector())
	info := Get()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, want one streamlb_build_info series", mfs)
	}
	labels := map[string]string{}
	for _, l := range mfs[0].GetMetric()[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != info.Version || labels["goversion"] != info.GoVersion || labels["revision"] != info.Revision {
		t.Errorf("labels %v, want those of %+v", labels, info)
	}
}
