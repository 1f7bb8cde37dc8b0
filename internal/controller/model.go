package controller

import (
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"streamlb/internal/ems"
)

// Provenance tag: user variables (EMS echoes "_"-prefixed parameters) that
// every replica pull carries.
const (
	tagGroup  = "_streamlb_group"
	tagOrigin = "_streamlb_origin"
	// tagMade is when the pull was made (Unix seconds): it tells a config
	// from another under the same configId, as after an EMS restart.
	tagMade = "_streamlb_made"
)

// UserAgent is the emulateUserAgent of every replica pull: the origin
// lists the pull as an outbound stream with this userAgent, which tells it
// apart from a player. Anything beginning with "streamlb" is a replica.
const UserAgent = "streamlb"

// Replica states, as reported in status.
const (
	StatePresent  = "present"
	StateMissing  = "missing"
	StatePending  = "pending"
	StateFailing  = "failing"
	StateConflict = "conflict"
	// StateUnknown: the member or the origin cannot be listed; nothing is
	// guessed and nothing is done.
	StateUnknown = "unknown"
	// StateUnreplicable: the name cannot stand in an RTMP URI unchanged;
	// never pulled, and it does not keep the group from converged.
	StateUnreplicable = "unreplicable"
)

// Member states, as reported in status.
const (
	MemberUp           = "up"
	MemberDown         = "down"
	MemberUnauthorized = "unauthorized"
)

// observed is what one member last listed, plus the changes this controller
// made since (so a listing that started before a change does not undo it).
type observed struct {
	listed  bool
	at      uint64               // the generation at which the listing started
	configs map[string][]pullCfg // pull configs by localStreamName
	inbound map[string]struct{}  // inbound stream names, but for streamlb's tagged replicas
	// inboundAt is when the listing that gave inbound started, fullAt
	// when the last full one (configs too) did.
	inboundAt, fullAt time.Time
	ownChanges        map[string]uint64    // names this controller changed, and at which generation
	stalled           map[uint64]time.Time // configIds first seen not streaming (any status but 0)
	// failing holds the configs journaled as failing (not streaming past
	// the grace), by configId, with their stream's name.
	failing map[uint64]string
	// checked holds when names were last confirmed one by one
	// (confirmByName), since the last listing of the inbound streams.
	checked map[string]time.Time
}

func newObserved() observed {
	return observed{
		configs:    make(map[string][]pullCfg),
		inbound:    make(map[string]struct{}),
		ownChanges: make(map[string]uint64),
		stalled:    make(map[uint64]time.Time),
		failing:    make(map[uint64]string),
		checked:    make(map[string]time.Time),
	}
}

// configListing is a member's listConfig in the form the controller keeps:
// its pull configs by name, compacted as they are decoded.
type configListing struct {
	byName  map[string][]pullCfg
	stalled []stalledCfg // configs not streaming
	// intern maps strings many configs share (the members' addresses) to
	// one copy.
	intern map[string]string
	// shared gives names and URIs one copy across the members.
	shared *strtab
	group  string // this controller's group
	// skipped counts the entries that did not decode; skipErr is the
	// last one's error.
	skipped int
	skipErr error
}

// newConfigListing returns an empty listing with room for about size
// names: the member's last listing is the best guess of the next one's
// size, and a map grown from empty leaves each table it outgrew to the
// collector (a third of the bytes a resync allocated in
// BenchmarkResync).
func newConfigListing(intern map[string]string, shared *strtab, group string, size int) *configListing {
	return &configListing{byName: make(map[string][]pullCfg, size), intern: intern, shared: shared, group: group}
}

// add keeps what the controller needs of c.
func (l *configListing) add(c *ems.PullConfig) {
	pc := compact(c, l.group)
	if s, ok := l.intern[pc.tagOrigin]; ok {
		pc.tagOrigin = s
	}
	// Every destination has a config of the same name and URI: one copy
	// of each serves them all.
	pc.uri = l.shared.get(pc.uri)
	name := l.shared.get(c.LocalStreamName)
	l.byName[name] = append(l.byName[name], pc)
	if c.Status.Code != ems.PullStatusStreaming {
		l.stalled = append(l.stalled, stalledCfg{c.ConfigID, name})
	}
}

// replace installs a listing that started at generation start, keeping
// what this controller changed since (generations, not clock readings, so
// that a change and a listing at the same instant are still ordered).
// back says the member came back up since its last full listing.
func (o *observed) replace(start uint64, now time.Time, listed *configListing, inbound []string, back bool) {
	byName := listed.byName
	var removed map[string]bool
	for name, at := range o.ownChanges {
		if at <= start {
			continue // the listing shows it
		}
		// Changed by this controller since the listing started: its own
		// view is newer. A config it removed took its stream along.
		if cs, ok := o.configs[name]; ok {
			byName[name] = cs
		} else {
			delete(byName, name)
			if removed == nil {
				removed = make(map[string]bool)
			}
			removed[name] = true
		}
	}
	// Every later listing starts after these changes: they are in it.
	clear(o.ownChanges)
	if back {
		// The member was down since: it may have restarted, and an EMS
		// numbers its configs anew.
		carrySeen(byName, nil, ceilSecond(now))
	} else {
		carrySeen(byName, o.configs, ceilSecond(now))
	}
	in := inboundSet(inbound, byName, removed)
	stalled := make(map[uint64]time.Time, len(listed.stalled))
	for _, sc := range listed.stalled {
		since, ok := o.stalled[sc.id]
		if !ok {
			since = now
		}
		stalled[sc.id] = since
	}
	o.listed, o.at, o.configs, o.inbound, o.stalled = true, start, byName, in, stalled
}

// carrySeen sets seen on every config of byName: the value the same
// config (by configId, URI and the time it was made, when tagged) had in
// old, or now for a config new to the controller.
func carrySeen(byName, old map[string][]pullCfg, now uint32) {
	for name, cfgs := range byName {
		prev := old[name]
	next:
		for i := range cfgs {
			if cfgs[i].seen != 0 {
				continue // kept from old: the controller's own change
			}
			for _, p := range prev {
				if p.id == cfgs[i].id && p.uri == cfgs[i].uri && p.made == cfgs[i].made {
					cfgs[i].seen = p.seen
					continue next
				}
			}
			cfgs[i].seen = now
		}
	}
}

// ceilSecond returns t in Unix seconds, rounded up: a pull's age read
// back from its tag is never more than it is (a demand copy lives at least
// scale_down_after), and a config's seen is never before it was known.
func ceilSecond(t time.Time) uint32 { return uint32((t.UnixNano() + 1e9 - 1) / 1e9) }

// seenAt returns when the controller first knew of c.
func (c pullCfg) seenAt() time.Time { return time.Unix(int64(c.seen), 0) }

// replaceInbound installs an inbound-only listing taken at start, and
// returns the names the listing before showed and this one does not, and
// those this one shows and the one before did not.
func (o *observed) replaceInbound(inbound []string) (gone, appeared []string) {
	in := inboundSet(inbound, o.configs, nil)
	kept := 0
	for n := range in {
		if _, ok := o.inbound[n]; ok {
			kept++
		} else {
			appeared = append(appeared, n)
		}
	}
	if kept < len(o.inbound) {
		for n := range o.inbound {
			if _, ok := in[n]; !ok {
				gone = append(gone, n)
			}
		}
	}
	o.inbound = in
	return gone, appeared
}

// inboundSet returns the inbound names worth keeping: all but those
// removed, and those whose config is tagged by streamlb. Such a stream is a
// replica whatever the listing says (isSourceLocked looks at its configs
// first), and every destination holds thousands of them.
func inboundSet(inbound []string, configs map[string][]pullCfg, removed map[string]bool) map[string]struct{} {
	n := 0
	for _, name := range inbound {
		if !removed[name] && !anyTagged(configs[name]) {
			n++
		}
	}
	in := make(map[string]struct{}, n)
	for _, name := range inbound {
		if !removed[name] && !anyTagged(configs[name]) {
			in[name] = struct{}{}
		}
	}
	return in
}

func anyTagged(cfgs []pullCfg) bool {
	for _, c := range cfgs {
		if c.tagged {
			return true
		}
	}
	return false
}

// stalledCfg is a config a listing shows not streaming.
type stalledCfg struct {
	id   uint64
	name string
}

// pullCfg is the part of a member's pull config the controller keeps: a
// group holds streams × members of them, so it stays small.
type pullCfg struct {
	id        uint64
	uri       string
	tagOrigin string
	tagged    bool // carries streamlb's provenance tag
	ours      bool // tagged with this controller's group
	// hinted is set when the replica's own inStreamCreated, not a
	// listing, said this pull streams: shown as present, but it lets no
	// other copy go.
	hinted bool
	// seen (Unix seconds, rounded up) is when this controller first knew
	// of the config: when the listing that first showed it was answered,
	// or its pullStream was. The config existed by then.
	seen uint32
	// pulledAt (Unix nanoseconds) is set on a config this controller
	// pulled and has not seen streaming yet; 0 for a listed one.
	pulledAt int64
	// demand marks a demand copy (tagged _streamlb_demand).
	demand bool
	// made (Unix seconds) is when the pull was made, from its tag (for a
	// demand copy, _streamlb_demand's; 1 if that says nothing); 0 when
	// untagged.
	made uint32
}

// compact returns what the controller keeps of c, for the controller of
// group.
func compact(c *ems.PullConfig, group string) pullCfg {
	g, ok := c.Vars[tagGroup]
	pc := pullCfg{id: c.ConfigID, uri: c.URI, tagOrigin: c.Vars[tagOrigin], tagged: ok, ours: ok && g == group}
	if d, ok := c.Vars[tagDemand]; ok {
		pc.demand = true
		pc.made = parseSecond(d)
		if pc.made == 0 {
			pc.made = 1 // a demand copy of unknown age
		}
	} else if d, ok := c.Vars[tagMade]; ok {
		pc.made = parseSecond(d)
	}
	return pc
}

// parseSecond returns the Unix second a tag holds, or 0 if it holds none.
func parseSecond(s string) uint32 {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// madeAt returns when the pull was made, by its tag.
func (c pullCfg) madeAt() time.Time { return time.Unix(int64(c.made), 0) }

// pullURI is the URI a replica of name from origin pulls.
func pullURI(originAddr, app, name string) string {
	return "rtmp://" + originAddr + "/" + app + "/" + name
}

// isPullURI reports whether uri is pullURI(originAddr, app, name), without
// building that string.
func isPullURI(uri, originAddr, app, name string) bool {
	const scheme = "rtmp://"
	return len(uri) == len(scheme)+len(originAddr)+1+len(app)+1+len(name) &&
		uri[:len(scheme)] == scheme &&
		uri[len(scheme):len(scheme)+len(originAddr)] == originAddr &&
		uri[len(scheme)+len(originAddr)] == '/' &&
		uri[len(scheme)+len(originAddr)+1:len(uri)-len(name)-1] == app &&
		uri[len(uri)-len(name)-1] == '/' &&
		uri[len(uri)-len(name):] == name
}

// uriHost returns the host of an rtmp URI (without port), or "". Plain
// URIs such as rtmp://10.0.0.5:1935/live/x are read in place; any other is
// left to url.Parse.
func uriHost(raw string) string {
	if h, ok := plainURIHost(raw); ok {
		return h
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// plainURIHost returns the host of raw when raw is a plain URI: a scheme of
// letters, "://", a host of letters, digits, '.', '-' and '_' with an
// optional numeric port, and a rest of unreserved URI characters only (no
// '%', no space, no control character), so that url.Parse would give the
// same host. ok is false for any other.
func plainURIHost(raw string) (host string, ok bool) {
	i := 0
	for i < len(raw) && (raw[i] >= 'a' && raw[i] <= 'z' || raw[i] >= 'A' && raw[i] <= 'Z') {
		i++
	}
	if i == 0 || len(raw)-i < 3 || raw[i:i+3] != "://" {
		return "", false
	}
	i += 3
	start, colon := i, -1
	for ; i < len(raw) && raw[i] != '/'; i++ {
		switch c := raw[i]; {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-' || c == '_':
			if colon >= 0 {
				return "", false
			}
		case c >= '0' && c <= '9':
		case c == ':' && colon < 0:
			colon = i
		default:
			return "", false
		}
	}
	for j := i; j < len(raw); j++ {
		if c := raw[j]; c <= ' ' || c >= 0x7f || c == '%' || c == '#' || c == '?' || c == '[' || c == ']' {
			return "", false
		}
	}
	end := i
	if colon >= 0 {
		end = colon
	}
	if end == start {
		return "", false
	}
	return raw[start:end], true
}

// matches reports whether name passes the include and exclude patterns.
func matches(name string, include, exclude []string) bool {
	if len(include) > 0 {
		ok := false
		for _, p := range include {
			if m, _ := path.Match(p, name); m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, p := range exclude {
		if m, _ := path.Match(p, name); m {
			return false
		}
	}
	return true
}

// isAdoptable reports whether an untagged config is a pull of exactly
// rtmp://ORIGIN/APP/NAME named NAME, as the original plugin leaves them.
func isAdoptable(c pullCfg, name, originAddr, app string) bool {
	return !c.tagged && (isPullURI(c.uri, originAddr, app, name) ||
		isPullURI(c.uri, originAddr+":1935", app, name))
}

// trimErr keeps error strings in status short.
func trimErr(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// namesByID returns the stream name of each of the member's configs, by
// configId.
func (o *observed) namesByID() map[uint64]string {
	out := make(map[uint64]string)
	for name, cfgs := range o.configs {
		for _, c := range cfgs {
			out[c.id] = name
		}
	}
	return out
}
