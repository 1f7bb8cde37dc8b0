package config

import (
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"

	"streamlb/internal/ems"
)

// memberKeys returns the keys allowed in a destination; the host also
// allows "api".
func memberKeys(host bool) []string {
	keys := []string{
		"enable", "authentication", "pseudoDomain", "address", "ewsPort",
		"userName", "password", "passwordEnv", "passwordFile",
		"name", "apiPort", "proxyStyle", "scheme", "caFile", "insecureSkipVerify", "replicate",
	}
	if host {
		keys = append(keys, "api")
	}
	keys = append(keys, placementKeys()...)
	return keys
}

// directURL returns the base URL of an EMS API reached directly.
func directURL(scheme, addr string, port int) string {
	return scheme + "://" + net.JoinHostPort(addr, strconv.Itoa(port))
}

// member decodes one destination, or the host, at path.
func (d *decoder) member(path string, v *hujson.Value, host bool) *decl {
	o := d.object(path, v, memberKeys(host))
	if o == nil {
		return nil
	}
	dc := &decl{path: path, addrAt: -1, nameAt: -1, addrKey: "address", nameKey: "address"}
	m := &dc.m
	m.IsHost = host
	m.Replicate = true

	if a, ok := o.str("address"); ok {
		if problem := checkAddress(a); problem != "" {
			o.errorf("address", "%s", problem)
		} else {
			m.Address, dc.addrAt = a, o.at("address")
		}
	} else if !o.has("address") {
		o.errorf("address", "required")
	}
	m.Name, dc.nameAt = m.Address, dc.addrAt
	if n, ok := o.str("name"); ok {
		if problem := checkName(n); problem != "" {
			o.errorf("name", "%s", problem)
			dc.nameAt = -1
		} else {
			m.Name, dc.nameAt, dc.nameKey = n, o.at("name"), "name"
		}
	}

	if b, ok := o.boolean("enable"); ok {
		m.Proxy = b
	}
	if b, ok := o.boolean("replicate"); ok {
		m.Replicate = b
	}
	if b, ok := o.boolean("insecureSkipVerify"); ok {
		m.InsecureSkipVerify = b
	}
	o.oneOf("authentication", "basic", "basic")
	pseudoDomain := DefaultPseudoDomain
	if s, ok := o.str("pseudoDomain"); ok {
		if problem := checkToken(s); problem != "" {
			o.errorf("pseudoDomain", "%s", problem)
		} else {
			pseudoDomain = s
		}
	}
	ewsPort := o.port("ewsPort", DefaultEWSPort)
	apiPort := o.port("apiPort", DefaultAPIPort)
	style := o.oneOf("proxyStyle", "query", "query", "encoded")
	scheme := o.oneOf("scheme", "http", "http", "https")
	m.Placement = placement(o, m.Address, ewsPort)

	var base string
	if api, ok := o.str("api"); ok {
		var problem string
		base, scheme, problem = checkAPI(api)
		if problem != "" {
			o.errorf("api", "%s", problem)
		}
		for _, k := range []string{"scheme", "pseudoDomain", "ewsPort", "apiPort"} {
			if o.has(k) {
				o.errorf(k, "not used when api is given: write it in api")
			}
		}
	} else {
		addr := m.Address
		if host {
			addr = DefaultHostAddress
		}
		base = directURL(scheme, addr, apiPort)
		if m.Proxy {
			base = directURL(scheme, addr, ewsPort) + "/" + pseudoDomain
		}
	}

	if f, ok := o.str("caFile"); ok {
		switch {
		case f == "":
			o.errorf("caFile", "must not be empty")
		case scheme != "https":
			o.errorf("caFile", "only used with https, and the scheme is %s", scheme)
		default:
			p := d.resolve(f)
			if fi, err := os.Stat(p); err != nil {
				o.errorf("caFile", "%v", err)
			} else if fi.IsDir() {
				o.errorf("caFile", "%s is a directory", p)
			} else {
				m.CAFile = p
			}
		}
	}
	if m.InsecureSkipVerify && scheme != "https" {
		o.errorf("insecureSkipVerify", "only used with https, and the scheme is %s", scheme)
	}

	m.Endpoint = ems.Endpoint{Member: m.Name, BaseURL: base, Proxy: m.Proxy}
	user, userOK := o.str("userName")
	if m.Proxy {
		switch {
		case !o.has("userName"):
			o.errorf("userName", "required when enable is true")
		case !userOK:
		case user == "":
			o.errorf("userName", "must not be empty")
		case strings.ContainsRune(user, ':'):
			o.errorf("userName", "must not contain ':', which HTTP Basic auth cannot carry")
		}
	}
	password := d.password(o, m.Proxy)
	if m.Proxy {
		m.Endpoint.User = user
		m.Endpoint.Password = password
		m.Endpoint.EncodedQuery = style == "encoded"
	}
	return dc
}

// password returns the member's password, from whichever of password,
// passwordEnv and passwordFile is given. Only one may be given. The
// password is read, and its absence is an error, only when needed (the
// member is reached through its API proxy). No message shows it.
func (d *decoder) password(o *object, needed bool) ems.Secret {
	var given []string
	for _, k := range []string{"password", "passwordEnv", "passwordFile"} {
		if o.has(k) {
			given = append(given, k)
		}
	}
	slices.SortFunc(given, func(a, b string) int { return o.keyAt[a] - o.keyAt[b] })
	switch {
	case len(given) > 1:
		for _, k := range given[1:] {
			o.errorf(k, "give only one of password, passwordEnv and passwordFile (%s is given too)", given[0])
		}
		return ""
	case len(given) == 0:
		if needed {
			o.errorf("password", "required when enable is true (or passwordEnv, or passwordFile)")
		}
		return ""
	}
	key := given[0]
	s, ok := o.str(key)
	if !ok || !needed {
		return ""
	}
	switch key {
	case "password":
		if s == "" {
			o.errorf(key, "must not be empty")
			return ""
		}
		return ems.Secret(s)
	case "passwordEnv":
		if s == "" {
			o.errorf(key, "want the name of an environment variable")
			return ""
		}
		val, _ := os.LookupEnv(s)
		if val == "" {
			o.errorf(key, "environment variable %s is unset or empty", s)
			return ""
		}
		return ems.Secret(val)
	default: // passwordFile
		if s == "" {
			o.errorf(key, "want a file name")
			return ""
		}
		p := d.resolve(s)
		b, err := os.ReadFile(p)
		if err != nil {
			o.errorf(key, "%v", err)
			return ""
		}
		val := strings.TrimRight(string(b), "\r\n")
		if val == "" {
			o.errorf(key, "%s is empty", p)
			return ""
		}
		return ems.Secret(val)
	}
}
