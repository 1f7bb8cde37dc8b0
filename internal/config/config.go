package config

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"streamlb/internal/ems"
)

// Defaults of the keys inside "parameters" and of a destination's keys.
const (
	DefaultListen            = "127.0.0.1:4000"
	DefaultGroup             = "default"
	DefaultResyncInterval    = 30 * time.Second
	DefaultTeardownGrace     = 10 * time.Second
	DefaultKeepAlive         = true
	DefaultAppName           = "live"
	DefaultMaxInflight       = 8
	DefaultMaxPullsPerSecond = 5000.0
	DefaultJournalSize       = 10000

	// DefaultPseudoDomain is the API proxy's first path segment.
	DefaultPseudoDomain = "apiproxy"
	// DefaultEWSPort is the port of the EvoStream Web Server, where the
	// API proxy listens.
	DefaultEWSPort = 8888
	// DefaultAPIPort is the port of the EMS HTTP API itself.
	DefaultAPIPort = 7777
	// DefaultHostAddress is where the host member's API is reached when its
	// "api" is not given: the EMS beside this streamlb.
	DefaultHostAddress = "127.0.0.1"
)

// Config is streamlb's configuration, read from the "parameters" of a
// StreamLoadBalancer block. Load and Parse return it with every default
// applied and every rule checked. It holds no state: a reload builds a new
// one.
type Config struct {
	// Path is the file name as given to Load or Parse.
	Path string
	// Listen is the address of the event sink, status API, metrics and
	// dashboard.
	Listen string
	// AdminListen, when not empty, is a second address serving the status
	// API, dashboard and metrics on their own.
	AdminListen string
	// AdminPassword, when not empty, protects the admin routes with HTTP
	// Basic auth (user "admin").
	AdminPassword ems.Secret
	// Group is this group's name, carried in the provenance tag of every
	// replica.
	Group string
	// ResyncInterval is the full resync period, and the longest wait before
	// a down member is probed.
	ResyncInterval time.Duration
	// TeardownGrace is how long a source may be absent before its replicas
	// are removed.
	TeardownGrace time.Duration
	// KeepAlive is the keepAlive of replica pulls.
	KeepAlive bool
	// AppName is the RTMP application in replica URIs.
	AppName string
	// Host is the local EMS in a sidecar deployment, or nil. It is the
	// last element of Members.
	Host *Member
	// Include and Exclude are glob patterns (path.Match syntax) on stream
	// names: a source is replicated when it matches an Include pattern (or
	// Include is empty) and no Exclude pattern.
	Include, Exclude []string
	// MaxInflight caps API calls in flight per member; at least 1.
	MaxInflight int
	// MaxPullsPerSecond caps new replica pulls per second per origin; 0
	// means no cap.
	MaxPullsPerSecond float64
	// EventsToken, when not empty, makes the event sink answer only under
	// /evowebservices/TOKEN/.
	EventsToken ems.Secret
	// AllowedSources, when not empty, lists the peers the event sink
	// accepts.
	AllowedSources []netip.Prefix
	// Members are the destinations in file order, then Host (if any) last.
	// No two share an address or a name.
	Members []Member
	// Play is the viewer placement block, or nil when it is absent.
	Play *Play
	// Replication says how many members hold each source.
	Replication Replication
	// JournalSize is how many transitions the journal keeps.
	JournalSize int
}

// Member is one EMS of the group.
type Member struct {
	// Name identifies the member in status, metrics and routes; it
	// defaults to Address.
	Name string
	// Address is the host name or IP address other members pull RTMP
	// from.
	Address string
	// Proxy reports whether the member's API is reached through its
	// EvoStream Web Server API proxy ("enable": true).
	Proxy bool
	// Endpoint is how to reach the member's API, fully built: BaseURL,
	// credentials (for the API proxy only), proxy style and member name.
	Endpoint ems.Endpoint
	// Replicate reports whether the member is given replicas of other
	// members' sources; its own sources are replicated either way.
	Replicate bool
	// CAFile, when not empty, is a PEM file of the certificate authorities
	// trusted for the member's https API, resolved against the config
	// file's directory.
	CAFile string
	// InsecureSkipVerify disables TLS certificate verification of the
	// member's API; true only when the config says so explicitly.
	InsecureSkipVerify bool
	// IsHost reports whether the member is the config's host (the local EMS
	// of a sidecar deployment).
	IsHost bool
	// Placement is how players reach the member; filled only when Play is
	// set (see play.go).
	Placement Placement
}

// Load reads and parses the config file at path. Relative paths in it
// (caFile, passwordFile) are resolved against the file's directory. The
// error is either a read error or, for problems in the file, all of them
// joined (see Parse).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a config file's content; name is the file's
// name as it should appear in messages, and relative paths in the file
// (caFile, passwordFile) are resolved against its directory. Password
// sources (passwordEnv, passwordFile) are read now.
//
// The error, when not nil, joins (errors.Join) one [*Error] per problem
// found, ordered by position; each line of its message reads
// FILE:LINE:COL: KEY.PATH: message.
func Parse(name string, data []byte) (*Config, error) {
	src, serr := newSource(name, data)
	if serr != nil {
		return nil, serr
	}
	d := newDecoder(src)
	cfg := d.decode()
	if err := d.err(); err != nil {
		return nil, err
	}
	cfg.Path = name
	return cfg, nil
}

// Member returns the member named name, pointing into c.Members, and
// whether there is one.
func (c *Config) Member(name string) (*Member, bool) {
	for i := range c.Members {
		if c.Members[i].Name == name {
			return &c.Members[i], true
		}
	}
	return nil, false
}
