package emsim

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseParams(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]pval // by lookup key
	}{
		{"empty", "", map[string]pval{}},
		{"only spaces", "   ", map[string]pval{}},
		{"trailing space", "uri=rtmp://h/live/x localStreamName=x ", map[string]pval{
			"uri": {s: "rtmp://h/live/x"}, "localStreamName": {s: "x"},
		}},
		{"repeated spaces", "a=1   b=2", map[string]pval{"a": {s: "1"}, "b": {s: "2"}}},
		{"escaped spaces", `emulateUserAgent=FMLE/3.0\ (compatible;\ FMSc/1.0)`, map[string]pval{
			"emulateUserAgent": {s: "FMLE/3.0 (compatible; FMSc/1.0)"},
		}},
		{"equals in value", "uri=rtmp://h/live/x?a=b&c=d=", map[string]pval{"uri": {s: "rtmp://h/live/x?a=b&c=d="}}},
		{"escaped equals in key", `a\=b=c`, map[string]pval{"a=b": {s: "c"}}},
		{"escaped comma", `name=a\,b`, map[string]pval{"name": {s: "a,b"}}},
		{"escaped backslash", `name=a\\b`, map[string]pval{"name": {s: `a\b`}}},
		{"escaped backslash then comma", `name=a\\,b`, map[string]pval{"name": {isArr: true, arr: []string{`a\`, "b"}}}},
		{"unknown escape kept", `name=a\xb`, map[string]pval{"name": {s: `a\xb`}}},
		{"array", "list=a,b,,c,", map[string]pval{"list": {isArr: true, arr: []string{"a", "b", "c"}}}},
		{"array of nothing", "list=,", map[string]pval{"list": {isArr: true, arr: []string{}}}},
		{"case-insensitive keys, last wins", "KeepAlive=0 keepalive=1", map[string]pval{"KEEPALIVE": {s: "1"}}},
		{"underscore keys verbatim", "_Foo=1 _foo=2", map[string]pval{"_Foo": {s: "1"}, "_foo": {s: "2"}}},
		{"key without value", "flag b=2", map[string]pval{"flag": {}, "b": {s: "2"}}},
		{"empty key skipped", "=x b=2", map[string]pval{"b": {s: "2"}}},
		{"trimmed value", "a=1\t", map[string]pval{"a": {s: "1"}}},
		{"escaped space kept at the edge", `a=\ x`, map[string]pval{"a": {s: " x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parseParams(tt.in)
			if p.len() != len(tt.want) {
				t.Errorf("parseParams(%q) has %d parameters, want %d", tt.in, p.len(), len(tt.want))
			}
			for k, want := range tt.want {
				got, ok := p.get(k)
				if !ok {
					t.Errorf("parseParams(%q): no parameter %q", tt.in, k)
					continue
				}
				if diff := cmp.Diff(want, got, cmp.AllowUnexported(pval{})); diff != "" {
					t.Errorf("parseParams(%q)[%q] mismatch (-want +got):\n%s", tt.in, k, diff)
				}
			}
		})
	}
}

func TestParamsVars(t *testing.T) {
	p := parseParams(`uri=x _b=2 _a=x,y _c=with\ space`)
	got := p.vars()
	want := []variable{
		{Key: "_a", IsArray: true, Values: []string{"x", "y"}},
		{Key: "_b", Value: "2"},
		{Key: "_c", Value: "with space"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("vars() mismatch (-want +got):\n%s", diff)
	}
}

func TestParamsFromRawQuery(t *testing.T) {
	// Encodes with '+', '/' and '=' in standard base64.
	tricky := "uri=rtmp://h/live/a>b?c localStreamName=~~~??? "
	if enc := b64(tricky); !strings.Contains(enc, "+") || !strings.Contains(enc, "/") || !strings.Contains(enc, "=") {
		t.Fatalf("b64(%q) = %q lacks '+', '/' or '='", tricky, enc)
	}
	tests := []struct {
		name string
		raw  string
		want string
	}{
		{"empty", "", ""},
		{"empty value", "params=", ""},
		{"standard", "params=" + b64("a=1"), "a=1"},
		{"plus and slash kept raw", "params=" + b64(tricky), tricky},
		{"name ignored", "x=" + b64("a=1"), "a=1"},
		{"first key in sorted order", "zz=" + b64("z=1") + "&aa=" + b64("a=1"), "a=1"},
		{"repeated key: last", "p=" + b64("a=1") + "&p=" + b64("a=2"), "a=2"},
		{"padding survives", "params=" + b64("ab"), "ab"},
		{"url-safe alphabet is not decoded", "params=" + "-_-_", ""},
		{"percent-encoding is not decoded", "params=YT0x%3D", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := paramsFromRawQuery(tt.raw); got != tt.want {
				t.Errorf("paramsFromRawQuery(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestCAtoi(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1", 1}, {"0", 0}, {"true", 0}, {"false", 0}, {" 12abc", 12}, {"-3", -3}, {"+7", 7}, {"", 0},
	}
	for _, tt := range tests {
		if got := cAtoi(tt.in); got != tt.want {
			t.Errorf("cAtoi(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestOptInt(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"ttl=256", 256, ""},
		{"ttl=0", 0, ""},
		{"ttl=010", 0, "Syntax error. Parameter ttl is invalid"},
		{"ttl=+1", 0, "Syntax error. Parameter ttl is invalid"},
		{"ttl=1.0", 0, "Syntax error. Parameter ttl is invalid"},
		{"ttl=1,2", 0, "Syntax error. Parameter ttl is invalid"},
		{"ttl=257", 0, "Syntax error. Parameter ttl is invalid. Range: 0 - 256"},
		{"other=1", 256, ""},
	}
	for _, tt := range tests {
		got, err := parseParams(tt.in).optInt("ttl", 256, 0, 256)
		gotErr := ""
		if err != nil {
			gotErr = err.msg
		}
		if got != tt.want || gotErr != tt.wantErr {
			t.Errorf("optInt(%q) = %d, %q; want %d, %q", tt.in, got, gotErr, tt.want, tt.wantErr)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"sorted bytewise", jobj{{"b", 1}, {"a", 2}, {"Running", true}, {"_x", nil}, {"PID", 3}},
			`{"PID":3,"Running":true,"_x":null,"a":2,"b":1}`},
		{"slash escaped", "rtmp://h/live/x", `"rtmp:\/\/h\/live\/x"`},
		{"control characters", "a\"b\\c\n\x01", `"a\"b\\c\n\u0001"`},
		{"utf-8 kept", "é", `"é"`},
		{"double with four decimals", 1460353344514.988, `1460353344514.9880`},
		{"double zero", 0.0, `0.0000`},
		{"uint64 exact", uint64(5282249572905648128), `5282249572905648128`},
		{"max uint64", uint64(math.MaxUint64), `18446744073709551615`},
		{"negative int", int64(-2), `-2`},
		{"null", nil, `null`},
		{"empty array", []string{}, `[]`},
		{"nested", jobj{{"parameters", map[string]string{}}, {"list", []any{jobj{{"name", "x"}}}}},
			`{"list":[{"name":"x"}],"parameters":{}}`},
		{"raw", jobj{{"z", jraw(`[1]`)}}, `{"z":[1]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendJSON(nil, tt.in)); got != tt.want {
				t.Errorf("appendJSON(%v) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestTag(t *testing.T) {
	// Exact values from recorded EMS answers.
	tests := map[string]uint64{
		"INR":   5282249572905648128,
		"AAAC":  4702111241970122752,
		"AUNK":  4707755069515235328,
		"VH264": 6217274493967007744,
		"VUNK":  6220964544311721984,
	}
	for in, want := range tests {
		if got := tag(in); got != want {
			t.Errorf("tag(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in       string
		ok       bool
		host     string
		port     int
		document string
		member   bool
	}{
		{"rtmp://127.1.2.3/live/x", true, "127.1.2.3", 1935, "x", true},
		{"rtmp://127.1.2.3:1936/live/x", true, "127.1.2.3", 1936, "x", true},
		{"rtmp://user:pw@cam.example.com/live/cam?t=1", true, "cam.example.com", 1935, "cam", false},
		{"rtsp://10.0.0.1/stream", true, "10.0.0.1", 554, "stream", false},
		{"rtmp://localhost/live/bunny.mp4", true, "localhost", 1935, "bunny.mp4", false},
		{"foo", false, "", 0, "", false},
		{"bogus://h/x", false, "", 0, "", false},
		{"rtmp:///live/x", false, "", 0, "", false},
		{"rtmp://h:99999/live/x", false, "", 0, "", false},
	}
	for _, tt := range tests {
		u, ok := parseURI(tt.in)
		if ok != tt.ok {
			t.Errorf("parseURI(%q) ok = %t, want %t", tt.in, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		_, member := u.memberHost()
		if u.host != tt.host || u.port != tt.port || u.document != tt.document || member != tt.member {
			t.Errorf("parseURI(%q) = host %q port %d document %q member %t; want %q %d %q %t",
				tt.in, u.host, u.port, u.document, member, tt.host, tt.port, tt.document, tt.member)
		}
	}
	if got := redactURI("rtmp://user:pw@cam.example.com/live/cam"); got != "rtmp://REDACTED@cam.example.com/live/cam" {
		t.Errorf("redactURI = %q", got)
	}
}
