package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"streamlb/internal/ems"
)

// hostPasswordEnv is the variable all-keys.json reads its host's password
// from.
const hostPasswordEnv = "STREAMLB_TEST_HOST_PASSWORD"

// defaults returns a Config holding every default, with the given path and
// members.
func defaults(path string, members ...Member) *Config {
	c := &Config{
		Path:              path,
		Listen:            "127.0.0.1:4000",
		Group:             "default",
		ResyncInterval:    30 * time.Second,
		TeardownGrace:     10 * time.Second,
		KeepAlive:         true,
		AppName:           "live",
		MaxInflight:       8,
		MaxPullsPerSecond: DefaultMaxPullsPerSecond,
		JournalSize:       DefaultJournalSize,
		Members:           members,
		Replication: Replication{Mode: ReplicationAll, MinCopies: DefaultMinCopies,
			ScaleUpUtilization: DefaultScaleUpUtilization, ScaleDownAfter: DefaultScaleDownAfter},
	}
	if n := len(members); n > 0 && members[n-1].IsHost {
		c.Host = &c.Members[n-1]
	}
	return c
}

// direct returns a member reached on its API directly, with defaults.
func direct(addr, name string, port int) Member {
	if name == "" {
		name = addr
	}
	return Member{
		Name: name, Address: addr, Replicate: true,
		Endpoint: ems.Endpoint{Member: name, BaseURL: fmt.Sprintf("http://%s:%d", addr, port)},
	}
}

// proxied returns a member reached through its API proxy, with defaults.
func proxied(addr, user, password string) Member {
	return Member{
		Name: addr, Address: addr, Proxy: true, Replicate: true,
		Endpoint: ems.Endpoint{
			Member: addr, BaseURL: "http://" + addr + ":8888/apiproxy", Proxy: true,
			User: user, Password: ems.Secret(password),
		},
	}
}

func TestLoadGood(t *testing.T) {
	t.Setenv(hostPasswordEnv, "host-secret")
	host := func(m Member) Member { m.IsHost = true; return m }
	tests := []struct {
		file string
		want *Config
	}{
		{"seed-fragment.json", defaults("",
			proxied("192.168.2.3", "username", "password"),
			direct("192.168.2.4", "", 7777),
			proxied("192.168.2.6", "username", "password"),
		)},
		{"plugins.json", defaults("",
			proxied("10.0.0.2", "username", "password"),
			direct("10.0.0.3", "", 7777),
		)},
		{"bare-block.json", func() *Config {
			c := defaults("", direct("10.0.1.1", "edge-1", 7777), direct("10.0.1.2", "edge-2", 7778))
			c.Group = "edge"
			return c
		}()},
		{"fragment.json", defaults("",
			direct("ems-a.example.net", "", 7777),
			direct("ems-b.example.net", "", 7777),
		)},
		{"sidecar.json", defaults("",
			proxied("10.0.0.6", "username", "password"),
			direct("10.0.0.7", "", 7777),
			host(Member{
				Name: "10.0.0.5", Address: "10.0.0.5", Replicate: true,
				Endpoint: ems.Endpoint{Member: "10.0.0.5", BaseURL: "http://127.0.0.1:7777"},
			}),
		)},
		{"destination-uri.json", defaults("",
			direct("127.0.0.1", "", 7777),
			direct("192.168.1.20", "", 7777),
		)},
		{"all-keys.json", &Config{
			Listen:            "0.0.0.0:4000",
			AdminListen:       "127.0.0.1:4001",
			AdminPassword:     "admin-secret",
			Group:             "eu-west",
			ResyncInterval:    90 * time.Second,
			TeardownGrace:     45 * time.Second,
			KeepAlive:         false,
			AppName:           "live2",
			Include:           []string{"cam-*", "studio/?"},
			Exclude:           []string{"*-test"},
			MaxInflight:       4,
			MaxPullsPerSecond: 12.5,
			JournalSize:       DefaultJournalSize,
			Replication: Replication{Mode: ReplicationAll, MinCopies: DefaultMinCopies,
				ScaleUpUtilization: DefaultScaleUpUtilization, ScaleDownAfter: DefaultScaleDownAfter},
			EventsToken: "tok-123_abc",
			AllowedSources: []netip.Prefix{
				netip.MustParsePrefix("10.0.0.0/8"),
				netip.MustParsePrefix("192.168.1.7/32"),
				netip.MustParsePrefix("fd00::/8"),
			},
			Members: []Member{
				{
					Name: "ems-b", Address: "10.0.0.6", Proxy: true, Replicate: true, InsecureSkipVerify: true,
					Endpoint: ems.Endpoint{
						Member: "ems-b", BaseURL: "https://10.0.0.6:9888/proxy2", Proxy: true,
						User: "user-b", Password: "pw-b", EncodedQuery: true,
					},
				},
				{
					Name: "ems-c.example.net", Address: "ems-c.example.net", Proxy: true, Replicate: true,
					CAFile: filepath.Join("testdata", "good", "ca.pem"),
					Endpoint: ems.Endpoint{
						Member: "ems-c.example.net", BaseURL: "https://ems-c.example.net:8888/apiproxy", Proxy: true,
						User: "user-c", Password: "s3cr3t-from-file",
					},
				},
				direct("10.0.0.8", "ems-d", 7000),
				{
					Name: "local", Address: "10.0.0.5", Proxy: true, IsHost: true,
					CAFile: filepath.Join("testdata", "good", "ca.pem"),
					Endpoint: ems.Endpoint{
						Member: "local", BaseURL: "https://127.0.0.1:8443/apiproxy", Proxy: true,
						User: "local-user", Password: "host-secret", EncodedQuery: true,
					},
				},
			},
		}},
	}
	tests[len(tests)-1].want.Members[2].Replicate = false
	tests[len(tests)-1].want.Host = &tests[len(tests)-1].want.Members[3]

	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "good", tt.file)
			tt.want.Path = path
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load(%q) = %v", path, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("Load(%q) mismatch (-want +got):\n%s", path, diff)
			}
			if got.Host != nil && got.Host != &got.Members[len(got.Members)-1] {
				t.Errorf("Load(%q): Host does not point at the last member", path)
			}
		})
	}
}

func TestLoadBad(t *testing.T) {
	t.Setenv("STREAMLB_TEST_UNSET_PASSWORD", "")
	tests := []struct {
		file string
		want []string
	}{
		{"syntax.json", []string{
			`3:31: syntax error: missing ',' after this value (the next one starts at 4:5)`,
		}},
		{"syntax-fragment.json", []string{
			`1:93: syntax error: missing ',' after this value (the next one starts at 1:94)`,
		}},
		{"bad-string.json", []string{
			`5:76: syntax error: invalid string (a bad escape, a control character or invalid UTF-8)`,
		}},
		{"empty.json", []string{
			`1:1: no configuration: want a JSON object holding a "StreamLoadBalancer" block, or the "StreamLoadBalancer": {...} fragment`,
		}},
		{"not-object.json", []string{
			`1:1: want a JSON object holding a "StreamLoadBalancer" block, or the "StreamLoadBalancer": {...} fragment; got invalid character '['`,
		}},
		{"no-block.json", []string{
			`1:1: no "StreamLoadBalancer" block`,
		}},
		{"block-content.json", []string{
			`1:1: no "StreamLoadBalancer" block: this looks like the block's content; write it as {"StreamLoadBalancer": {...}}`,
		}},
		{"two-blocks.json", []string{
			`3:3: a second "StreamLoadBalancer" block (the first is at 2:3)`,
		}},
		{"disabled-fragment.json", []string{
			`1:41: plugin_switch: the StreamLoadBalancer plugin is disabled ("disabled"): set "plugin_switch": "enabled" to run it`,
		}},
		{"no-switch.json", []string{
			`2:25: plugin_switch: missing, so the StreamLoadBalancer plugin is disabled: set "plugin_switch": "enabled"`,
		}},
		{"no-parameters.json", []string{
			`2:25: parameters: required: it lists the members in destination_ems_apiproxies`,
		}},
		{"no-members.json", []string{
			`4:64: parameters.destination_ems_apiproxies: no members: list the EMS of the group`,
		}},
		{"types.json", []string{
			`3:22: plugin_switch: want a string, got boolean`,
			`5:17: parameters.listen: want a string, got number`,
			`6:21: parameters.keep_alive: want a boolean, got string`,
			`7:18: parameters.include: want an array of strings, got string`,
			`8:25: parameters.exclude[1]: want a string, got number`,
			`9:23: parameters.max_inflight: want a number, got string`,
			`10:26: parameters.resync_interval: want a duration such as "30s", got number`,
			`11:15: parameters.host: want an object, got array`,
			`13:20: parameters.destination_ems_apiproxies[0].enable: want a boolean, got string`,
			`14:60: parameters.destination_ems_apiproxies[1].ewsPort: want a number, got string`,
			`14:97: parameters.destination_ems_apiproxies[1].password: want a string, got number`,
			`15:9: parameters.destination_ems_apiproxies[2]: want an object, got string`,
			`16:38: parameters.destination_ems_apiproxies[3].address: want a string, got number`,
			`16:58: parameters.destination_ems_apiproxies[3].replicate: want a boolean, got null`,
		}},
		{"unknown-keys.json", []string{
			`4:5: unknown key "description"`,
			`6:7: parameters: unknown key "resync"`,
			`7:7: parameters: unknown key "Listen" (did you mean "listen"?)`,
			`8:39: parameters.host: unknown key "apiUrl"`,
			`10:83: parameters.destination_ems_apiproxies[0]: unknown key "pasword" (did you mean "password"?)`,
			`11:50: parameters.destination_ems_apiproxies[1]: unknown key "api"`,
		}},
		{"required.json", []string{
			`6:9: parameters.destination_ems_apiproxies[0].address: required`,
			`7:9: parameters.destination_ems_apiproxies[1].userName: required when enable is true`,
			`7:9: parameters.destination_ems_apiproxies[1].password: required when enable is true (or passwordEnv, or passwordFile)`,
			`8:61: parameters.destination_ems_apiproxies[2].userName: must not be empty`,
			`8:77: parameters.destination_ems_apiproxies[2].password: must not be empty`,
		}},
		{"duplicates.json", []string{
			`6:7: parameters: duplicate key "group" (also at 5:7)`,
			`7:27: parameters.host.address: two members share address 10.0.0.5 (also at 9:38); the host is a member already: list only the other members as destinations`,
			`11:58: parameters.destination_ems_apiproxies[2].name: two members share name "edge" (also at 10:58)`,
			`12:38: parameters.destination_ems_apiproxies[3].address: two members share address 10.0.0.6 (also at 10:38)`,
			`14:38: parameters.destination_ems_apiproxies[5].address: two members share name "10.0.0.9" (also at 13:58); a member's name defaults to its address: give it another name`,
		}},
		{"values.json", []string{
			`5:17: parameters.listen: want HOST:PORT such as "127.0.0.1:4000", got "localhost"`,
			`6:23: parameters.admin_listen: want a port number from 0 to 65535, got "99999"`,
			`7:16: parameters.group: use only letters, digits and . _ ~ -, got "my group"`,
			`8:26: parameters.resync_interval: invalid duration "30": missing unit`,
			`9:25: parameters.teardown_grace: want a duration above 0, got "0s"`,
			`10:19: parameters.app_name: use only letters, digits and . _ ~ -, got "live/x"`,
			`11:19: parameters.include[0]: invalid glob pattern "cam-[a": syntax error in pattern`,
			`12:19: parameters.exclude[0]: empty pattern: it matches no stream name`,
			`13:23: parameters.max_inflight: want 1 or more, got 0`,
			`14:31: parameters.max_pulls_per_second: want 0 (no cap) or more, got -1`,
			`15:23: parameters.events_token: want a non-empty token of letters, digits and . _ ~ - only`,
			`16:27: parameters.allowed_sources[0]: invalid CIDR "10.0.0.0/33": want an address and a prefix length, such as "10.0.0.0/8"`,
			`16:42: parameters.allowed_sources[1]: invalid CIDR "not-an-ip": want an address and a prefix length, such as "10.0.0.0/8"`,
			`18:44: parameters.destination_ems_apiproxies[0].authentication: want "basic", got "none"`,
			`18:63: parameters.destination_ems_apiproxies[0].address: want a host name or IP address, without scheme, port or path, got "http://10.0.0.2:7777"`,
			`18:98: parameters.destination_ems_apiproxies[0].ewsPort: want 1 to 65535, got 70000`,
			`19:22: parameters.destination_ems_apiproxies[0].userName: must not contain ':', which HTTP Basic auth cannot carry`,
			`19:60: parameters.destination_ems_apiproxies[0].proxyStyle: want "query" or "encoded", got "percent"`,
			`19:81: parameters.destination_ems_apiproxies[0].scheme: want "http" or "https", got "ftp"`,
			`20:61: parameters.destination_ems_apiproxies[1].apiPort: want a whole number, got 7777.5`,
			`20:77: parameters.destination_ems_apiproxies[1].name: must not contain '/', got "a/b"`,
			`20:100: parameters.destination_ems_apiproxies[1].pseudoDomain: use only letters, digits and . _ ~ -, got "api proxy"`,
			`21:60: parameters.destination_ems_apiproxies[2].caFile: only used with https, and the scheme is http`,
			`21:92: parameters.destination_ems_apiproxies[2].insecureSkipVerify: only used with https, and the scheme is http`,
			`22:80: parameters.destination_ems_apiproxies[3].caFile: stat ` + filepath.Join("testdata", "bad", "missing.pem") + `: no such file or directory`,
		}},
		{"passwords.json", []string{
			`6:98: parameters.destination_ems_apiproxies[0].passwordEnv: give only one of password, passwordEnv and passwordFile (password is given too)`,
			`7:81: parameters.destination_ems_apiproxies[1].passwordEnv: environment variable STREAMLB_TEST_UNSET_PASSWORD is unset or empty`,
			`8:82: parameters.destination_ems_apiproxies[2].passwordFile: open ` + filepath.Join("testdata", "bad", "missing.password") + `: no such file or directory`,
			`9:82: parameters.destination_ems_apiproxies[3].passwordFile: ` + filepath.Join("testdata", "bad", "empty.password") + ` is empty`,
		}},
		{"host.json", []string{
			`4:44: parameters.host.api: must not hold credentials: give them in userName and password (or passwordEnv, passwordFile)`,
			`4:94: parameters.host.apiPort: not used when api is given: write it in api`,
		}},
		{"host-api.json", []string{
			`4:44: parameters.host.api: want an http or https URL such as "http://127.0.0.1:7777"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			cfg, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, want errors", path, cfg)
			}
			if cfg != nil {
				t.Errorf("Load(%q) returned a config with its error", path)
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, path+":"+w)
			}
			got := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load(%q) errors mismatch (-want +got):\n%s", path, diff)
			}
			var cerr *Error
			if !errors.As(err, &cerr) || cerr.File != path {
				t.Errorf("Load(%q): error %v does not hold an *Error of that file", path, err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugins.json")
	_, err := Load(path)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(%q) = %v, want an error wrapping os.ErrNotExist", path, err)
	}
}

// fragment returns a one-line fragment whose parameters hold params.
func fragment(params string) string {
	return `"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {` + params + `}},`
}

// oneMember is a parameter list holding one direct member.
const oneMember = `"destination_ems_apiproxies": [{"enable": false, "address": "10.0.0.2"}]`

// problems returns the "PATH: MSG" of every *Error err joins.
func problems(err error) []string {
	var out []string
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	var cerr *Error
	if errors.As(err, &cerr) {
		if cerr.Path == "" {
			return []string{cerr.Msg}
		}
		return []string{cerr.Path + ": " + cerr.Msg}
	}
	if err != nil {
		return []string{"not an *Error: " + err.Error()}
	}
	return nil
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name   string
		params string
		want   []string
	}{
		{"unknown duration unit", `"resync_interval": "30x", ` + oneMember,
			[]string{`parameters.resync_interval: invalid duration "30x": unknown unit "x" (want ns, us, ms, s, m or h)`}},
		{"no duration", `"teardown_grace": "soon", ` + oneMember,
			[]string{`parameters.teardown_grace: invalid duration "soon": want a number and a unit, such as "30s" or "1m30s"`}},
		{"negative duration", `"teardown_grace": "-5s", ` + oneMember,
			[]string{`parameters.teardown_grace: want a duration above 0, got "-5s"`}},
		{"huge number", `"max_pulls_per_second": 1e999, ` + oneMember,
			[]string{`parameters.max_pulls_per_second: number 1e999 is out of range`}},
		{"max_inflight fraction", `"max_inflight": 2.5, ` + oneMember,
			[]string{`parameters.max_inflight: want a whole number, got 2.5`}},
		{"admin_listen is listen", `"listen": "127.0.0.1:4000", "admin_listen": "127.0.0.1:4000", ` + oneMember,
			[]string{`parameters.admin_listen: 127.0.0.1:4000 is also listen: leave admin_listen out to serve everything there`}},
		{"empty admin_password", `"admin_password": "", ` + oneMember,
			[]string{`parameters.admin_password: must not be empty: leave the key out for no password`}},
		{"no destinations", `"group": "g"`,
			[]string{`parameters.destination_ems_apiproxies: required: list the EMS of the group`}},
		{"destination_uri duplicate", `"destination_uri": ["10.0.0.2", "10.0.0.2"]`,
			[]string{`parameters.destination_uri[1]: two members share address 10.0.0.2 (also at 1:87)`}},
		{"destination_uri bad address", `"destination_uri": ["10.0.0.2:7777"]`,
			[]string{`parameters.destination_uri[0]: want a host name or IP address, without scheme, port or path, got "10.0.0.2:7777"`}},
		{"address with credentials is not quoted", `"destination_ems_apiproxies": [{"address": "user:pw@10.0.0.2"}]`,
			[]string{`parameters.destination_ems_apiproxies[0].address: want a host name or IP address, without scheme, port or path`}},
		{"same address written two ways", `"destination_ems_apiproxies": [{"address": "ems-a.example"}, {"address": "EMS-A.example"}]`,
			[]string{`parameters.destination_ems_apiproxies[1].address: two members share address EMS-A.example (also at 1:110)`}},
		{"IPv6 address", `"destination_ems_apiproxies": [{"address": "fd00::1"}]`,
			[]string{`parameters.destination_ems_apiproxies[0].address: IPv6 addresses are not supported (replica pull URIs, rtmp://ADDRESS/APP/NAME, are built for IPv4 addresses and host names): give an IPv4 address or a host name, got "fd00::1"`}},
		{"IPv6 destination_uri", `"destination_uri": ["10.0.0.2", "2001:db8::7"]`,
			[]string{`parameters.destination_uri[1]: IPv6 addresses are not supported (replica pull URIs, rtmp://ADDRESS/APP/NAME, are built for IPv4 addresses and host names): give an IPv4 address or a host name, got "2001:db8::7"`}},
		{"IPv6 host address", `"host": {"address": "::1"}`,
			[]string{`parameters.host.address: IPv6 addresses are not supported (replica pull URIs, rtmp://ADDRESS/APP/NAME, are built for IPv4 addresses and host names): give an IPv4 address or a host name, got "::1"`}},
		{"IPv4-mapped address", `"destination_ems_apiproxies": [{"address": "::ffff:10.0.0.2"}]`,
			[]string{`parameters.destination_ems_apiproxies[0].address: want the IPv4 address 10.0.0.2 rather than its IPv6-mapped form "::ffff:10.0.0.2"`}},
		{"resync_interval below its floor", `"resync_interval": "1ns", ` + oneMember,
			[]string{`parameters.resync_interval: want at least 1s, got "1ns"`}},
		{"resync_interval at its floor", `"resync_interval": "1s", ` + oneMember, nil},
		{"teardown_grace below its floor", `"teardown_grace": "999ms", ` + oneMember,
			[]string{`parameters.teardown_grace: want at least 1s, got "999ms"`}},
		{"host api with other keys", `"host": {"address": "10.0.0.5", "api": "http://127.0.0.1:7777", "scheme": "http", "ewsPort": 1, "pseudoDomain": "p"}`,
			[]string{
				`parameters.host.scheme: not used when api is given: write it in api`,
				`parameters.host.ewsPort: not used when api is given: write it in api`,
				`parameters.host.pseudoDomain: not used when api is given: write it in api`,
			}},
		{"host api with query", `"host": {"address": "10.0.0.5", "api": "http://127.0.0.1:7777/?x=1"}`,
			[]string{`parameters.host.api: must not hold a query or fragment`}},
		{"host api bad port", `"host": {"address": "10.0.0.5", "api": "http://127.0.0.1:0"}`,
			[]string{`parameters.host.api: want a port number from 1 to 65535, got "0"`}},
		{"userName with enable false is not needed", `"destination_ems_apiproxies": [{"enable": false, "address": "10.0.0.2", "passwordFile": "/nonexistent/file"}]`,
			nil},
		{"three password sources", `"destination_ems_apiproxies": [{"enable": true, "address": "10.0.0.2", "userName": "u", "passwordFile": "f", "password": "p", "passwordEnv": "E"}]`,
			[]string{
				`parameters.destination_ems_apiproxies[0].password: give only one of password, passwordEnv and passwordFile (passwordFile is given too)`,
				`parameters.destination_ems_apiproxies[0].passwordEnv: give only one of password, passwordEnv and passwordFile (passwordFile is given too)`,
			}},
		{"name with control character", `"destination_ems_apiproxies": [{"address": "10.0.0.2", "name": "a\u0001"}]`,
			[]string{`parameters.destination_ems_apiproxies[0].name: must not contain control characters, got "a\x01"`}},
		{"name with spaces around", `"destination_ems_apiproxies": [{"address": "10.0.0.2", "name": " a"}]`,
			[]string{`parameters.destination_ems_apiproxies[0].name: must not start or end with white space, got " a"`}},
		{"suggest close key", `"destination_ems_apiproxies": [{"adress": "10.0.0.2"}]`,
			[]string{
				`parameters.destination_ems_apiproxies[0].address: required`,
				`parameters.destination_ems_apiproxies[0]: unknown key "adress" (did you mean "address"?)`,
			}},
		{"address with a zone", `"destination_ems_apiproxies": [{"address": "fe80::1%eth0"}]`,
			[]string{`parameters.destination_ems_apiproxies[0].address: want an IP address without a zone, got "fe80::1%eth0"`}},
		{"allowed source with a zone", `"allowed_sources": ["fe80::1%eth0"], ` + oneMember,
			[]string{`parameters.allowed_sources[0]: invalid CIDR "fe80::1%eth0": want an address and a prefix length, such as "10.0.0.0/8"`}},
		{"caFile is a directory", `"destination_ems_apiproxies": [{"address": "10.0.0.2", "scheme": "https", "caFile": "/"}]`,
			[]string{`parameters.destination_ems_apiproxies[0].caFile: / is a directory`}},
		{"line break in a file name stays on one line", `"destination_ems_apiproxies": [{"enable": true, "address": "10.0.0.2", "userName": "u", "passwordFile": "/nonexistent/a\nb"}]`,
			[]string{`parameters.destination_ems_apiproxies[0].passwordFile: open /nonexistent/a\nb: no such file or directory`}},
		{"no suggestion for a distant key", `"xyz": 1, ` + oneMember,
			[]string{`parameters: unknown key "xyz"`}},
		{"entry not an object does not also say no members", `"destination_ems_apiproxies": [null]`,
			[]string{`parameters.destination_ems_apiproxies[0]: want an object, got null`}},
		{"destinations not an array", `"destination_ems_apiproxies": {}`,
			[]string{`parameters.destination_ems_apiproxies: want an array, got object`}},
		{"empty destination_uri", `"destination_uri": []`,
			[]string{`parameters.destination_uri: no members: list the EMS of the group`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fragment(tt.params)
			_, err := Parse("p.json", []byte(src))
			if diff := cmp.Diff(tt.want, problems(err)); diff != "" {
				t.Errorf("Parse(%s) problems mismatch (-want +got):\n%s", src, diff)
			}
		})
	}
}

func TestParseForms(t *testing.T) {
	const block = `{"plugin_switch": "enabled", "parameters": {` + oneMember + `}}`
	tests := []struct {
		name string
		src  string
	}{
		{"whole file", `{"Other": {"plugin_switch": "enabled", "x": [1,]}, "StreamLoadBalancer": ` + block + `}`},
		{"bare block", `{"StreamLoadBalancer": ` + block + `}`},
		{"fragment", `"StreamLoadBalancer": ` + block},
		{"fragment with trailing comma", `"StreamLoadBalancer": ` + block + ",\n"},
		{"fragment ending in a line comment without newline", `"StreamLoadBalancer": ` + block + `, // end`},
		{"object ending in a line comment without newline", `{"StreamLoadBalancer": ` + block + `} // end`},
		{"fragment after comments", "/* a */\n// b\n\"StreamLoadBalancer\": " + block},
		{"fragment beside another plugin", `"Other": {}, "StreamLoadBalancer": ` + block + `,`},
		{"byte order mark", "\xef\xbb\xbf" + `{"StreamLoadBalancer": ` + block + `}`},
		{"CRLF line ends", strings.ReplaceAll("{\n\"StreamLoadBalancer\":\n"+block+"\n}\n", "\n", "\r\n")},
		{"key in another case", `{"streamloadbalancer": ` + block + `}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("f.json", []byte(tt.src))
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tt.src, err)
			}
			if len(cfg.Members) != 1 || cfg.Members[0].Address != "10.0.0.2" || cfg.Path != "f.json" {
				t.Errorf("Parse(%q) = %+v, want member 10.0.0.2 and path f.json", tt.src, cfg)
			}
		})
	}
}

func TestParsePositions(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		// The fragment is parsed wrapped in braces: columns on line 1 must
		// not count the added one.
		{"fragment line 1", `"StreamLoadBalancer": {"plugin_switch": "off", "parameters": {` + oneMember + `}}`,
			`f.json:1:41: plugin_switch: the StreamLoadBalancer plugin is disabled ("off"): set "plugin_switch": "enabled" to run it`},
		{"fragment syntax error line 1", `"StreamLoadBalancer": {"plugin_switch" "enabled"}`,
			`f.json:1:40: syntax error: invalid character '"' after object name`},
		// A missing comma is reported where it belongs: after the value
		// before it, not at the next line's key.
		{"missing comma at the end of a line", "{\"StreamLoadBalancer\": {\n  \"plugin_switch\": \"enabled\"\n  \"parameters\": {}}}",
			`f.json:2:29: syntax error: missing ',' after this value (the next one starts at 3:3)`},
		{"missing comma before a comment", "{\"StreamLoadBalancer\": {\n  \"plugin_switch\": \"enabled\" // \"on\", \"off\"\n  /* next */\n  \"parameters\": {}}}",
			`f.json:2:29: syntax error: missing ',' after this value (the next one starts at 4:3)`},
		{"missing comma after an object", "{\"StreamLoadBalancer\": {\n  \"parameters\": {\"x\": \"a\\\"}\"}\n  \"plugin_switch\": \"enabled\"}}",
			`f.json:2:30: syntax error: missing ',' after this value (the next one starts at 3:3)`},
		{"missing comma in an array", "{\"StreamLoadBalancer\": {\"parameters\": {\"include\": [\"a\"\n\t\t\"b\"]}}}",
			`f.json:1:55: syntax error: missing ',' after this value (the next one starts at 2:3)`},
		{"fragment unexpected end", `"StreamLoadBalancer": {"plugin_switch": `,
			`f.json:1:41: syntax error: invalid character '}' at start of value`},
		{"object unexpected end", "{\"StreamLoadBalancer\": {",
			`f.json:1:25: syntax error: parsing value: unexpected EOF`},
		{"unterminated comment", "{\"StreamLoadBalancer\": /* x",
			`f.json:1:24: syntax error: parsing comment: unexpected EOF`},
		{"tab counts one", "{\n\t\"StreamLoadBalancer\": {\"plugin_switch\": 1, \"parameters\": {" + oneMember + "}}}",
			`f.json:2:42: plugin_switch: want a string, got number`},
		{"unknown character", "  @",
			`f.json:1:3: want a JSON object holding a "StreamLoadBalancer" block, or the "StreamLoadBalancer": {...} fragment; got invalid character '@'`},
		{"parameters not an object", `"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": []}`,
			`f.json:1:66: parameters: want an object, got array`},
		{"empty file", "",
			`f.json:1:1: no configuration: want a JSON object holding a "StreamLoadBalancer" block, or the "StreamLoadBalancer": {...} fragment`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.json", []byte(tt.src))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse(%q) = %v, want %s", tt.src, err, tt.want)
			}
		})
	}
}

func TestParsePasswordSources(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("from-file\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STREAMLB_TEST_PW", "from-env")
	name := filepath.Join(dir, "plugins.json")
	tests := []struct {
		source string
		want   ems.Secret
	}{
		{`"password": "inline"`, "inline"},
		{`"passwordEnv": "STREAMLB_TEST_PW"`, "from-env"},
		{`"passwordFile": "pw"`, "from-file"},
		{`"passwordFile": ` + strconvQuote(filepath.Join(dir, "pw")), "from-file"},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			src := fragment(`"destination_ems_apiproxies": [{"enable": true, "address": "10.0.0.2", "userName": "u", ` + tt.source + `}]`)
			cfg, err := Parse(name, []byte(src))
			if err != nil {
				t.Fatalf("Parse(%s) = %v", src, err)
			}
			if got := cfg.Members[0].Endpoint.Password; got.Reveal() != tt.want.Reveal() {
				t.Errorf("Parse(%s): password %q, want %q", src, got.Reveal(), tt.want.Reveal())
			}
		})
	}
}

// strconvQuote quotes s as a JSON string.
func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestHostEndpoint(t *testing.T) {
	tests := []struct {
		host string
		want ems.Endpoint
	}{
		{`{"address": "10.0.0.5"}`,
			ems.Endpoint{Member: "10.0.0.5", BaseURL: "http://127.0.0.1:7777"}},
		{`{"address": "10.0.0.5", "apiPort": 7000, "name": "me"}`,
			ems.Endpoint{Member: "me", BaseURL: "http://127.0.0.1:7000"}},
		{`{"address": "10.0.0.5", "enable": true, "userName": "u", "password": "p"}`,
			ems.Endpoint{Member: "10.0.0.5", BaseURL: "http://127.0.0.1:8888/apiproxy", Proxy: true, User: "u", Password: "p"}},
		{`{"address": "10.0.0.5", "api": "http://[::1]:7777/"}`,
			ems.Endpoint{Member: "10.0.0.5", BaseURL: "http://[::1]:7777"}},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			src := fragment(`"host": ` + tt.host)
			cfg, err := Parse("h.json", []byte(src))
			if err != nil {
				t.Fatalf("Parse(%s) = %v", src, err)
			}
			if cfg.Host == nil || !cfg.Host.IsHost || len(cfg.Members) != 1 {
				t.Fatalf("Parse(%s): host %+v, members %d; want the host as the only member", src, cfg.Host, len(cfg.Members))
			}
			if diff := cmp.Diff(tt.want, cfg.Host.Endpoint); diff != "" {
				t.Errorf("Parse(%s) host endpoint mismatch (-want +got):\n%s", src, diff)
			}
		})
	}
}

func TestConfigMember(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "good", "bare-block.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := cfg.Member("edge-2")
	if !ok || m != &cfg.Members[1] {
		t.Errorf("Member(%q) = %v, %t; want a pointer to Members[1]", "edge-2", m, ok)
	}
	if m, ok := cfg.Member("10.0.1.2"); ok {
		t.Errorf("Member(%q) = %v, true; want none: members are found by name", "10.0.1.2", m)
	}
}

// TestSecretsNeverShown checks that passwords and tokens appear neither in
// errors, however the file is broken, nor in a printed or encoded config.
func TestSecretsNeverShown(t *testing.T) {
	const secret = "Sup3r-Secret-Value"
	t.Setenv("STREAMLB_TEST_SECRET", secret)
	broken := []string{
		fragment(`"destination_ems_apiproxies": [{"enable": true, "address": "10.0.0.2", "userName": "u", "password": "` + secret + `\q"}]`),
		fragment(`"destination_ems_apiproxies": [{"enable": true, "address": "10.0.0.2", "userName": "u", "password": "` + secret + `", "passwordEnv": "X"}]`),
		fragment(`"destination_ems_apiproxies": [{"enable": true, "address": "10.0.0.2", "userName": "u", "pasword": "` + secret + `"}]`),
		fragment(`"destination_ems_apiproxies": [{"enable": true, "address": "u:` + secret + `@10.0.0.2", "userName": "u", "password": "p"}]`),
		fragment(`"host": {"address": "10.0.0.5", "api": "http://u:` + secret + `@127.0.0.1:7777"}`),
		fragment(`"host": {"address": "10.0.0.5", "api": "http://u:` + secret + `@127.0.0.1:7777/%zz"}`),
		fragment(`"events_token": "` + secret + ` with spaces", ` + oneMember),
		fragment(`"admin_password": "` + secret + `", "admin_password": "` + secret + `", ` + oneMember),
		`"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {"admin_password": "` + secret + `"`,
		`{"StreamLoadBalancer": "` + secret + `"}`,
	}
	for _, src := range broken {
		_, err := Parse("s.json", []byte(src))
		if err == nil {
			t.Errorf("Parse(%s) = nil error, want one", src)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Parse(%s) error shows the secret: %v", src, err)
		}
	}

	src := fragment(`"admin_password": "` + secret + `", "events_token": "` + secret + `", ` +
		`"host": {"address": "10.0.0.5", "enable": true, "userName": "u", "passwordEnv": "STREAMLB_TEST_SECRET"}, ` +
		`"destination_ems_apiproxies": [{"enable": true, "address": "10.0.0.2", "userName": "u", "password": "` + secret + `"}]`)
	cfg, err := Parse("s.json", []byte(src))
	if err != nil {
		t.Fatalf("Parse(%s) = %v", src, err)
	}
	if cfg.Members[0].Endpoint.Password.Reveal() != secret || cfg.Host.Endpoint.Password.Reveal() != secret {
		t.Fatalf("Parse(%s): passwords not read", src)
	}
	enc, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("json.Marshal(config) = %v", err)
	}
	for _, out := range []string{
		fmt.Sprintf("%v", *cfg), fmt.Sprintf("%+v", *cfg), fmt.Sprintf("%#v", *cfg),
		fmt.Sprintf("%+v", cfg.Members), fmt.Sprintf("%#v", *cfg.Host), string(enc),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("a printed config shows the secret: %s", out)
		}
	}
}

// docExample matches the JSON examples of docs/configuration.md.
var docExample = regexp.MustCompile("(?s)```jsonc\n(.*?)```")

// TestDocsExamples loads every example of the configuration guide, so the
// guide cannot drift from what the loader accepts.
func TestDocsExamples(t *testing.T) {
	t.Setenv("EMS_PROXY_PASSWORD", "from-env")
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	examples := docExample.FindAllSubmatch(doc, -1)
	if len(examples) < 4 {
		t.Fatalf("docs/configuration.md holds %d jsonc examples, want at least 4", len(examples))
	}
	for i, ex := range examples {
		name := fmt.Sprintf("configuration.md example %d", i+1)
		if _, err := Parse(name, ex[1]); err != nil {
			t.Errorf("%s does not load:\n%v\n%s", name, err, ex[1])
		}
	}
}
