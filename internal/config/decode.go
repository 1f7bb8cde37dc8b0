package config

import (
	"fmt"
	"math"
	"net/netip"
	"path"
	"path/filepath"
	"strings"

	"github.com/tailscale/hujson"

	"streamlb/internal/ems"
)

// blockKey is the top-level key of the plugin's block.
const blockKey = "StreamLoadBalancer"

// newDecoder returns a decoder of src; relative paths resolve against the
// directory of src's file name.
func newDecoder(src *source) *decoder {
	return &decoder{src: src, dir: filepath.Dir(src.name)}
}

// resolve returns p resolved against the config file's directory.
func (d *decoder) resolve(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.dir, p)
}

// decode finds the StreamLoadBalancer block and decodes it. The result is
// meaningful only when no error was recorded.
func (d *decoder) decode() *Config {
	root := &d.src.root
	top, ok := root.Value.(*hujson.Object)
	if !ok {
		d.typeError("", root, "an object")
		return nil
	}
	var block *hujson.Value
	blockAt := 0
	for i := range top.Members {
		m := &top.Members[i]
		if !strings.EqualFold(keyName(m), blockKey) {
			continue
		}
		if block != nil {
			d.errorf(m.Name.StartOffset, "", "a second %q block (the first is at %s)", blockKey, d.src.pos(blockAt))
			continue
		}
		block, blockAt = &m.Value, m.Name.StartOffset
	}
	if block == nil {
		msg := fmt.Sprintf("no %q block", blockKey)
		for i := range top.Members {
			if k := keyName(&top.Members[i]); k == "plugin_switch" || k == "parameters" {
				msg += fmt.Sprintf(`: this looks like the block's content; write it as {%q: {...}}`, blockKey)
				break
			}
		}
		d.errorf(root.StartOffset, "", "%s", msg)
		return nil
	}
	return d.block(block)
}

// block decodes the StreamLoadBalancer block.
func (d *decoder) block(v *hujson.Value) *Config {
	cfg := &Config{
		Listen:            DefaultListen,
		Group:             DefaultGroup,
		ResyncInterval:    DefaultResyncInterval,
		TeardownGrace:     DefaultTeardownGrace,
		KeepAlive:         DefaultKeepAlive,
		AppName:           DefaultAppName,
		MaxInflight:       DefaultMaxInflight,
		MaxPullsPerSecond: DefaultMaxPullsPerSecond,
		JournalSize:       DefaultJournalSize,
	}
	o := d.object("", v, []string{"plugin_switch", "parameters"})
	if o == nil {
		return cfg
	}
	if !o.has("plugin_switch") {
		o.errorf("plugin_switch", `missing, so the %s plugin is disabled: set "plugin_switch": "enabled"`, blockKey)
	} else if s, ok := o.str("plugin_switch"); ok && s != "enabled" {
		o.errorf("plugin_switch", `the %s plugin is disabled (%q): set "plugin_switch": "enabled" to run it`, blockKey, s)
	}
	pv, ok := o.vals["parameters"]
	if !ok {
		o.errorf("parameters", "required: it lists the members in destination_ems_apiproxies")
		return cfg
	}
	d.parameters(cfg, pv)
	return cfg
}

// parameterKeys returns the keys allowed inside "parameters".
func parameterKeys() []string {
	return []string{
		"destination_ems_apiproxies", "destination_uri", "host",
		"listen", "admin_listen", "admin_password",
		"group", "resync_interval", "teardown_grace", "keep_alive", "app_name",
		"include", "exclude", "max_inflight", "max_pulls_per_second",
		"events_token", "allowed_sources", playKey, replicationKey, "journal_size",
	}
}

// parameters decodes the block's "parameters" into cfg.
func (d *decoder) parameters(cfg *Config, v *hujson.Value) {
	p := d.object("parameters", v, parameterKeys())
	if p == nil {
		return
	}

	if s, ok := p.str("listen"); ok {
		if problem := checkListen(s); problem != "" {
			p.errorf("listen", "%s", problem)
		} else {
			cfg.Listen = s
		}
	}
	if s, ok := p.str("admin_listen"); ok {
		switch problem := checkListen(s); {
		case problem != "":
			p.errorf("admin_listen", "%s", problem)
		case s == cfg.Listen && !strings.HasSuffix(s, ":0"):
			p.errorf("admin_listen", "%s is also listen: leave admin_listen out to serve everything there", s)
		default:
			cfg.AdminListen = s
		}
	}
	if s, ok := p.str("admin_password"); ok {
		if s == "" {
			p.errorf("admin_password", "must not be empty: leave the key out for no password")
		} else {
			cfg.AdminPassword = ems.Secret(s)
		}
	}
	if s, ok := p.str("group"); ok {
		if problem := checkToken(s); problem != "" {
			p.errorf("group", "%s", problem)
		} else {
			cfg.Group = s
		}
	}
	if dur, ok := p.durationAtLeast("resync_interval", MinResyncInterval); ok {
		cfg.ResyncInterval = dur
	}
	if dur, ok := p.durationAtLeast("teardown_grace", MinTeardownGrace); ok {
		cfg.TeardownGrace = dur
	}
	if b, ok := p.boolean("keep_alive"); ok {
		cfg.KeepAlive = b
	}
	if s, ok := p.str("app_name"); ok {
		if problem := checkToken(s); problem != "" {
			p.errorf("app_name", "%s", problem)
		} else {
			cfg.AppName = s
		}
	}
	cfg.Include = d.patterns(p, "include")
	cfg.Exclude = d.patterns(p, "exclude")
	if n, ok := p.integer("max_inflight", 1, math.MaxInt32); ok {
		cfg.MaxInflight = n
	}
	if f, ok := p.number("max_pulls_per_second"); ok {
		if f < 0 {
			p.errorf("max_pulls_per_second", "want 0 (no cap) or more, got %s", p.vals["max_pulls_per_second"].Value)
		} else {
			cfg.MaxPullsPerSecond = f
		}
	}
	if n, ok := p.integer("journal_size", 100, 10_000_000); ok {
		cfg.JournalSize = n
	}
	if s, ok := p.str("events_token"); ok {
		// The token is a credential: never quoted.
		if !isToken(s) {
			p.errorf("events_token", "want a non-empty token of letters, digits and . _ ~ - only")
		} else {
			cfg.EventsToken = ems.Secret(s)
		}
	}
	cfg.AllowedSources = d.prefixes(p, "allowed_sources")

	decls := d.members(p)
	d.checkUnique(decls)
	for _, dc := range decls {
		cfg.Members = append(cfg.Members, dc.m)
	}
	if n := len(cfg.Members); n > 0 && cfg.Members[n-1].IsHost {
		cfg.Host = &cfg.Members[n-1]
	}
	d.play(p, cfg)
	d.replication(p, cfg)
}

// patterns decodes a list of glob patterns.
func (d *decoder) patterns(p *object, key string) []string {
	var out []string
	for _, it := range p.stringList(key) {
		if it.s == "" {
			d.errorf(it.off, index(child(p.path, key), it.i), "empty pattern: it matches no stream name")
			continue
		}
		if _, err := path.Match(it.s, ""); err != nil {
			d.errorf(it.off, index(child(p.path, key), it.i), "invalid glob pattern %q: %v", it.s, err)
			continue
		}
		out = append(out, it.s)
	}
	return out
}

// prefixes decodes a list of CIDR prefixes; a bare address stands for
// itself alone.
func (d *decoder) prefixes(p *object, key string) []netip.Prefix {
	var out []netip.Prefix
	for _, it := range p.stringList(key) {
		pfx, err := netip.ParsePrefix(it.s)
		if err != nil {
			addr, aerr := netip.ParseAddr(it.s)
			if aerr != nil || addr.Zone() != "" {
				d.errorf(it.off, index(child(p.path, key), it.i), `invalid CIDR %q: want an address and a prefix length, such as "10.0.0.0/8"`, it.s)
				continue
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, pfx.Masked())
	}
	return out
}

// decl is one member as declared, with where it was declared, for the
// checks across members.
type decl struct {
	m       Member
	path    string
	addrAt  int    // offset of the address value; -1 when missing or invalid
	nameAt  int    // offset of the name's value; -1 when invalid
	addrKey string // "address", or "" when the declaration is the address itself
	nameKey string // "name", or addrKey when the name defaults to the address
}

// members decodes the destinations, in file order, then the host.
func (d *decoder) members(p *object) []*decl {
	var decls []*decl
	entries := 0
	if arr, ok := p.array("destination_ems_apiproxies"); ok {
		for i := range arr.Elements {
			entries++
			if dc := d.member(index("parameters.destination_ems_apiproxies", i), &arr.Elements[i], false); dc != nil {
				decls = append(decls, dc)
			}
		}
	}
	for _, it := range p.stringList("destination_uri") {
		entries++
		dpath := index("parameters.destination_uri", it.i)
		if problem := checkAddress(it.s); problem != "" {
			d.errorf(it.off, dpath, "%s", problem)
			continue
		}
		m := Member{Name: it.s, Address: it.s, Replicate: true}
		m.Endpoint = ems.Endpoint{Member: m.Name, BaseURL: directURL("http", it.s, DefaultAPIPort)}
		decls = append(decls, &decl{m: m, path: dpath, addrAt: it.off, nameAt: it.off})
	}
	if v, ok := p.vals["host"]; ok {
		entries++
		if dc := d.member("parameters.host", v, true); dc != nil {
			decls = append(decls, dc)
		}
	}
	if entries > 0 {
		return decls
	}
	switch {
	case !p.has("destination_ems_apiproxies") && !p.has("destination_uri"):
		p.errorf("destination_ems_apiproxies", "required: list the EMS of the group")
	case p.isArray("destination_ems_apiproxies") || p.isArray("destination_uri"):
		// Both lists present and empty, or one of them present and empty
		// (and the other absent or wrong, which has been reported).
		key := "destination_ems_apiproxies"
		if !p.isArray(key) {
			key = "destination_uri"
		}
		p.errorf(key, "no members: list the EMS of the group")
	}
	return decls
}

// checkUnique reports members that share an address or a name.
func (d *decoder) checkUnique(decls []*decl) {
	addrs := map[string]*decl{}
	names := map[string]*decl{}
	for _, dc := range decls {
		if dc.addrAt >= 0 {
			key := addressKey(dc.m.Address)
			if first, dup := addrs[key]; dup {
				hint := ""
				if dc.m.IsHost {
					hint = "; the host is a member already: list only the other members as destinations"
				}
				d.errorf(dc.addrAt, dc.keyPath(dc.addrKey), "two members share address %s (also at %s)%s", dc.m.Address, d.src.pos(first.addrAt), hint)
				continue
			}
			addrs[key] = dc
		}
		if dc.nameAt >= 0 {
			if first, dup := names[dc.m.Name]; dup {
				hint := ""
				if dc.nameKey != "name" {
					hint = "; a member's name defaults to its address: give it another name"
				}
				d.errorf(dc.nameAt, dc.keyPath(dc.nameKey), "two members share name %q (also at %s)%s", dc.m.Name, d.src.pos(first.nameAt), hint)
				continue
			}
			names[dc.m.Name] = dc
		}
	}
}

// keyPath returns the path of key in the member's declaration; an empty
// key names the declaration itself.
func (dc *decl) keyPath(key string) string {
	if key == "" {
		return dc.path
	}
	return child(dc.path, key)
}
