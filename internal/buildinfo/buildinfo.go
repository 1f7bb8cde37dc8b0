// Package buildinfo says which build of streamlb is running: the version,
// the source revision and the Go release it was built from, as read from the
// binary's embedded build information, for `streamlb version` and the
// streamlb_build_info metric.
//
// Packagers who build from a source tarball (no VCS stamp) set the version
// at link time:
//
//	go build -ldflags "-X streamlb/internal/buildinfo.version=v1.2.3" ./cmd/streamlb
package buildinfo

import (
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// version overrides the main module's version when set at link time with
// -ldflags "-X streamlb/internal/buildinfo.version=...". It is the package's
// only variable, written by the linker and never at run time.
var version string

// Devel is the version of a build that carries neither a module version nor
// a link-time override: `go run`, `go test`, or a build outside a module
// cache and without VCS information.
const Devel = "devel"

// Info describes one build.
type Info struct {
	// Version is the link-time override, else the main module's version
	// (a tag, or a pseudo-version that the go command derives from the
	// VCS), else Devel.
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from (vcs.revision),
	// empty when unknown.
	Revision string `json:"revision,omitempty"`
	// Time is the commit's time (vcs.time, RFC 3339), empty when unknown.
	Time string `json:"time,omitempty"`
	// Modified reports whether the work tree had uncommitted changes
	// (vcs.modified).
	Modified bool `json:"modified"`
	// GoVersion is the Go release that built the binary.
	GoVersion string `json:"go_version"`
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo() // nil when the binary carries none
	return fromBuild(bi, version)
}

// fromBuild reads bi (nil: no build information) with override as the
// link-time version.
func fromBuild(bi *debug.BuildInfo, override string) Info {
	info := Info{Version: Devel, GoVersion: "unknown"}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.time":
				info.Time = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if override = strings.TrimSpace(override); override != "" {
		info.Version = override
	}
	return info
}

// shortRevision is the length of a revision in String, as in Go's
// pseudo-versions.
const shortRevision = 12

// String is the one line `streamlb version` prints, such as
// "streamlb v1.2.3 (rev 1a7f57d5cbb1, 2026-11-30T12:00:00Z, modified) go1.26.8".
// Whatever of the revision, its time and the modified mark is known is shown
// in the parentheses; a build that knows none of them says so, so that no
// built binary reads as a bare "devel".
func (i Info) String() string {
	var b strings.Builder
	b.WriteString("streamlb ")
	b.WriteString(i.Version)
	var details []string
	if i.Revision != "" {
		details = append(details, "rev "+i.shortRevision())
	}
	if i.Time != "" {
		details = append(details, i.Time)
	}
	if i.Modified {
		details = append(details, "modified")
	}
	if len(details) == 0 && i.Version == Devel {
		details = append(details, "no VCS information")
	}
	if len(details) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(details, ", "))
		b.WriteString(")")
	}
	b.WriteString(" ")
	b.WriteString(i.GoVersion)
	return b.String()
}

func (i Info) shortRevision() string {
	if len(i.Revision) > shortRevision {
		return i.Revision[:shortRevision]
	}
	return i.Revision
}

// NewCollector returns a collector of the gauge
// streamlb_build_info{version,revision,goversion}, always 1, describing the
// running binary (Get). Register it once per registry.
func NewCollector() prometheus.Collector {
	return newCollector(Get())
}

func newCollector(info Info) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamlb_build_info",
		Help: "The running streamlb's version, VCS revision and Go release as labels; always 1.",
		ConstLabels: prometheus.Labels{
			"version":   info.Version,
			"revision":  info.Revision,
			"goversion": info.GoVersion,
		},
	}, func() float64 { return 1 })
}
