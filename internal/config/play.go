package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tailscale/hujson"
)

// Defaults of the play block (viewer placement) and of a destination's
// placement keys.
const (
	DefaultPlayListen           = "0.0.0.0:8090"
	DefaultPlayPollInterval     = 5 * time.Second
	DefaultPlayStaleAfter       = 15 * time.Second
	DefaultPlayHighWater        = 0.8
	DefaultPlayStickyTTL        = 2 * time.Minute
	DefaultPlayStreamBitrate    = 2e6 // bits per second
	DefaultRTMPPort             = 1935
	DefaultRTSPPort             = 5544
	DefaultPlacementWeight      = 1.0
	playKey                     = "play"
	placementKeyPlayHost        = "playHost"
	placementKeyMaxViewers      = "maxViewers"
	placementKeyCapacityOutMbps = "capacityOutMbps"
)

// Play is the play block: viewer placement, served on its own public
// listener. Config.Play is nil when the block is absent.
type Play struct {
	// Listen is the address of the public GET /play/{stream} listener.
	Listen string
	// PollInterval is how often each member's load is read.
	PollInterval time.Duration
	// StaleAfter is the age past which a member's load sample makes it
	// ineligible; at least PollInterval.
	StaleAfter time.Duration
	// HighWater is the utilization (0 to 1] above which a member is chosen
	// only when no holder is below it.
	HighWater float64
	// StickyTTL is how long a client keeps the member it was given for a
	// stream.
	StickyTTL time.Duration
	// DefaultStreamBitrate is the bitrate, in bits per second, assumed for
	// a stream whose own is unknown.
	DefaultStreamBitrate float64
}

// Placement is how players reach one member and how much it may serve.
// It is filled (every default applied) only when Config.Play is set, and
// is the zero value otherwise.
type Placement struct {
	// PlayHost is the host name or address in player URLs; default the
	// member's address.
	PlayHost string
	// RTMPPort, RTSPPort and HTTPPort are the ports of player URLs; HTTP
	// (HLS, DASH) defaults to the member's ewsPort.
	RTMPPort, RTSPPort, HTTPPort int
	// MaxViewers caps the member's viewers; 0: none configured (EMS's
	// connection limit is used when set).
	MaxViewers int
	// CapacityOutMbps is the member's outbound capacity in megabits per
	// second; 0: none configured (EMS's bandwidth limit is used when set).
	CapacityOutMbps float64
	// Weight weighs the member in the random draw; above 0.
	Weight float64
	// Playable reports whether players may be sent to the member.
	Playable bool
}

// placementKeys are a destination's keys for viewer placement.
func placementKeys() []string {
	return []string{placementKeyPlayHost, "rtmpPort", "rtspPort", "httpPort", placementKeyMaxViewers, placementKeyCapacityOutMbps, "weight", "playable"}
}

// placement decodes a destination's placement keys; ewsPort is its
// ewsPort, the default HTTP port.
func placement(o *object, address string, ewsPort int) Placement {
	pl := Placement{
		PlayHost: address,
		RTMPPort: o.port("rtmpPort", DefaultRTMPPort),
		RTSPPort: o.port("rtspPort", DefaultRTSPPort),
		HTTPPort: o.port("httpPort", ewsPort),
		Weight:   DefaultPlacementWeight,
		Playable: true,
	}
	if s, ok := o.str(placementKeyPlayHost); ok {
		if problem := checkAddress(s); problem != "" {
			o.errorf(placementKeyPlayHost, "%s", problem)
		} else {
			pl.PlayHost = s
		}
	}
	if n, ok := o.integer(placementKeyMaxViewers, 1, math.MaxInt32); ok {
		pl.MaxViewers = n
	}
	if f, ok := o.number(placementKeyCapacityOutMbps); ok {
		if f <= 0 {
			o.errorf(placementKeyCapacityOutMbps, "want a number of megabits per second above 0, got %s", o.vals[placementKeyCapacityOutMbps].Value)
		} else {
			pl.CapacityOutMbps = f
		}
	}
	if f, ok := o.number("weight"); ok {
		if f <= 0 {
			o.errorf("weight", "want a number above 0, got %s", o.vals["weight"].Value)
		} else {
			pl.Weight = f
		}
	}
	if b, ok := o.boolean("playable"); ok {
		pl.Playable = b
	}
	return pl
}

// play decodes the play block of p into cfg, once the members are
// decoded; without one, the members' placements are cleared.
func (d *decoder) play(p *object, cfg *Config) {
	v, ok := p.vals[playKey]
	if !ok {
		for i := range cfg.Members {
			cfg.Members[i].Placement = Placement{}
		}
		return
	}
	for i := range cfg.Members {
		m := &cfg.Members[i]
		if m.Placement.PlayHost == "" {
			// A destination_uri entry: every default.
			m.Placement = Placement{PlayHost: m.Address, RTMPPort: DefaultRTMPPort, RTSPPort: DefaultRTSPPort,
				HTTPPort: DefaultEWSPort, Weight: DefaultPlacementWeight, Playable: true}
		}
	}
	o := d.object(child(p.path, playKey), v, []string{"listen", "poll_interval", "stale_after", "high_water", "sticky_ttl", "default_stream_bitrate"})
	pl := &Play{
		Listen:               DefaultPlayListen,
		PollInterval:         DefaultPlayPollInterval,
		StaleAfter:           DefaultPlayStaleAfter,
		HighWater:            DefaultPlayHighWater,
		StickyTTL:            DefaultPlayStickyTTL,
		DefaultStreamBitrate: DefaultPlayStreamBitrate,
	}
	cfg.Play = pl
	if o == nil {
		return
	}
	if s, ok := o.str("listen"); ok {
		switch problem := checkListen(s); {
		case problem != "":
			o.errorf("listen", "%s", problem)
		case !strings.HasSuffix(s, ":0") && (s == cfg.Listen || s == cfg.AdminListen):
			o.errorf("listen", "%s is also listen or admin_listen: the play listener is public and serves nothing else, give it its own address", s)
		default:
			pl.Listen = s
		}
	}
	if dur, ok := o.duration("poll_interval"); ok {
		pl.PollInterval = dur
	}
	if dur, ok := o.duration("stale_after"); ok {
		if dur < pl.PollInterval {
			o.errorf("stale_after", "want at least poll_interval (%s), got %q: every sample would be stale before the next", pl.PollInterval, dur)
		} else {
			pl.StaleAfter = dur
		}
	} else if !o.has("stale_after") && pl.StaleAfter < 2*pl.PollInterval {
		pl.StaleAfter = 3 * pl.PollInterval
	}
	if f, ok := o.number("high_water"); ok {
		if f <= 0 || f > 1 {
			o.errorf("high_water", "want a utilization above 0 and at most 1, got %s", o.vals["high_water"].Value)
		} else {
			pl.HighWater = f
		}
	}
	if dur, ok := o.duration("sticky_ttl"); ok {
		pl.StickyTTL = dur
	}
	if v, ok := o.vals["default_stream_bitrate"]; ok {
		if bps, problem := parseBitrate(v); problem != "" {
			o.errorf("default_stream_bitrate", "%s", problem)
		} else {
			pl.DefaultStreamBitrate = bps
		}
	}
}

// parseBitrate reads a bitrate: a number of bits per second, or a string
// such as "2Mbps", "800kbps", "1.5 Gbps".
func parseBitrate(v *hujson.Value) (float64, string) {
	const want = `want a bitrate above 0 such as "2Mbps", "800kbps" or a number of bits per second`
	lit, ok := v.Value.(hujson.Literal)
	if !ok {
		return 0, want
	}
	var f float64
	var err error
	switch lit.Kind() {
	case '0':
		f, err = strconv.ParseFloat(string(lit), 64)
	case '"':
		s := strings.TrimSpace(lit.String())
		mult := 1.0
		lower := strings.ToLower(s)
		for _, u := range []struct {
			suffix string
			mult   float64
		}{{"gbps", 1e9}, {"mbps", 1e6}, {"kbps", 1e3}, {"bps", 1}} {
			if strings.HasSuffix(lower, u.suffix) {
				s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
				break
			}
		}
		f, err = strconv.ParseFloat(s, 64)
		f *= mult
	default:
		return 0, want
	}
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Sprintf("%s, got %s", want, string(lit))
	}
	return f, ""
}
