package ems

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"
)

func TestParamsEncode(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		want string
	}{
		{"empty", nil, ""},
		{"one", Params{{"id", "5"}}, "id=5"},
		{"order kept", Params{{"uri", "rtmp://h/live/x"}, {"localStreamName", "x"}, {"keepAlive", "0"}},
			"uri=rtmp://h/live/x localStreamName=x keepAlive=0"},
		{"space", Params{{"emulateUserAgent", "FMLE/3.0 (compatible; FMSc/1.0)"}},
			`emulateUserAgent=FMLE/3.0\ (compatible;\ FMSc/1.0)`},
		{"comma", Params{{"localStreamName", "a,b"}}, `localStreamName=a\,b`},
		{"equals in value", Params{{"uri", "rtmp://h/live/x?a=b"}}, `uri=rtmp://h/live/x?a\=b`},
		{"backslash", Params{{"k", `a\b`}}, `k=a\\b`},
		{"escapes in key", Params{{`_a b,c=d\`, "v"}}, `_a\ b\,c\=d\\=v`},
		{"empty value", Params{{"k", ""}}, "k="},
		{"unicode", Params{{"_note", "café ü"}}, `_note=café\ ü`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Encode(); got != tt.want {
				t.Errorf("Encode() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParamsWire(t *testing.T) {
	// The example the EvoStream web UI logged for a pullStream.
	p := Params{{"uri", "rtmp://webcasting.thefloridachannel.org/live/tvweb1"}, {"localStreamName", "5"}}
	const want = "dXJpPXJ0bXA6Ly93ZWJjYXN0aW5nLnRoZWZsb3JpZGFjaGFubmVsLm9yZy9saXZlL3R2d2ViMSBsb2NhbFN0cmVhbU5hbWU9NQ=="
	if got := p.Wire(); got != want {
		t.Errorf("Wire() = %q, want %q", got, want)
	}
}

func TestDecodeParams(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Params
		wantErr bool
	}{
		{"empty", "", nil, false},
		{"trailing space as the web services send", "uri=rtmp://h/live/x localStreamName=5 ", Params{{"uri", "rtmp://h/live/x"}, {"localStreamName", "5"}}, false},
		{"several spaces", "a=1   b=2", Params{{"a", "1"}, {"b", "2"}}, false},
		{"value keeps later equals", "uri=rtmp://h/x?a=b", Params{{"uri", "rtmp://h/x?a=b"}}, false},
		{"no equals is a key with empty value", "flag", Params{{"flag", ""}}, false},
		{"escapes", `ua=FMLE/3.0\ (compatible;\ FMSc/1.0) n=a\,b\=c\\d`, Params{{"ua", "FMLE/3.0 (compatible; FMSc/1.0)"}, {"n", `a,b=c\d`}}, false},
		{"unknown escape keeps the backslash", `k=a\tb\`, Params{{"k", `a\tb\`}}, false},
		{"unescaped comma kept", "k=a,b", Params{{"k", "a,b"}}, false},
		{"tabs trimmed at the ends only", "k=\ta\tb\t", Params{{"k", "a\tb"}}, false},
		{"escaped space at an end survives", `k=\ a\ `, Params{{"k", " a "}}, false},
		{"duplicates kept in order", "a=1 a=2", Params{{"a", "1"}, {"a", "2"}}, false},
		{"line break", "a=1\nremoveConfig id=1", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeParams(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeParams(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("DecodeParams(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       Params
		wantErr string
	}{
		{"ok", Params{{"uri", "rtmp://h/live/a b,c"}, {"_x", ""}}, ""},
		{"empty key", Params{{"", "v"}}, "empty key"},
		{"cmd key would replace the command", Params{{"CMD", "removeConfig"}}, "reserved key"},
		{"newline in value", Params{{"localStreamName", "a\nremoveConfig id=1"}}, "control character in value"},
		{"tab in key", Params{{"a\t", "v"}}, "control character in key"},
		{"DEL", Params{{"k", "a\x7f"}}, "control character in value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParamsGet(t *testing.T) {
	p := Params{{"id", "1"}, {"ID", "2"}, {"x", "3"}}
	if v, ok := p.Get("Id"); !ok || v != "2" {
		t.Errorf(`Get("Id") = %q, %v, want "2", true (last wins, case ignored)`, v, ok)
	}
	if _, ok := p.Get("y"); ok {
		t.Errorf(`Get("y") found a value, want none`)
	}
}

// sendable reports whether every key and value is free of control
// characters, the Params a Client sends.
func sendable(p Params) bool {
	for _, kv := range p {
		if hasControl(kv.Key) || hasControl(kv.Value) {
			return false
		}
	}
	return true
}

// paramText generates strings rich in the characters Encode escapes.
func paramText() *rapid.Generator[string] {
	special := rapid.StringOf(rapid.SampledFrom([]rune{' ', ',', '=', '\\', 'a', '_', 'é', '/', ':', '+', '?', '#', '%'}))
	free := rapid.String().Filter(func(s string) bool { return !hasControl(s) })
	return rapid.OneOf(special, free)
}

func TestParamsRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := rapid.Custom(func(t *rapid.T) Params {
			n := rapid.IntRange(0, 6).Draw(t, "n")
			p := make(Params, n)
			for i := range p {
				p[i] = Param{Key: paramText().Draw(t, "key"), Value: paramText().Draw(t, "value")}
			}
			return p
		}).Draw(t, "params")
		enc := p.Encode()
		got, err := DecodeParams(enc)
		if err != nil {
			t.Fatalf("DecodeParams(%q): %v", enc, err)
		}
		if diff := cmp.Diff(p, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip of %q mismatch (-want +got):\n%s", enc, diff)
		}
		if _, err := base64.StdEncoding.DecodeString(p.Wire()); err != nil {
			t.Fatalf("Wire() is not standard base64: %v", err)
		}
	})
}

func FuzzParams(f *testing.F) {
	f.Add("uri", "rtmp://webcasting.thefloridachannel.org/live/tvweb1", "localStreamName", "5")
	f.Add("emulateUserAgent", "FMLE/3.0 (compatible; FMSc/1.0)", "_streamlb_origin", "10.0.0.5")
	f.Add("localStreamName", `F:\EVOSTREAMMS\evostreamms17\media\bunny.mp4`, "keepAlive", "0")
	f.Add("uri", "rtmp://h/live/x?a=b,c", `_a b`, `\`)
	f.Add("", "", "=", " ")
	f.Add("k", "\ta\t", "x", "é\\ ,=")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		// Any text decodes without panicking, and what it decodes to
		// survives a second round.
		if q, err := DecodeParams(k1 + " " + v1); err == nil {
			again, err := DecodeParams(q.Encode())
			if err != nil {
				t.Fatalf("DecodeParams(%q): %v", q.Encode(), err)
			}
			if sendable(q) && !cmp.Equal(q, again, cmpopts.EquateEmpty()) {
				t.Fatalf("decode(encode(%q)) = %q", q, again)
			}
		}
		p := Params{{k1, v1}, {k2, v2}}
		if !sendable(p) {
			return
		}
		got, err := DecodeParams(p.Encode())
		if err != nil {
			t.Fatalf("DecodeParams(%q): %v", p.Encode(), err)
		}
		if !cmp.Equal(p, got, cmpopts.EquateEmpty()) {
			t.Fatalf("DecodeParams(%q) = %q, want %q", p.Encode(), got, p)
		}
	})
}

func TestPullRequestParams(t *testing.T) {
	yes, no := true, false
	n := func(i int) *int { return &i }
	tests := []struct {
		name    string
		req     PullRequest
		want    Params
		wantErr string
	}{
		{
			name: "minimal",
			req:  PullRequest{URI: "rtmp://10.0.0.5/live/a"},
			want: Params{{"uri", "rtmp://10.0.0.5/live/a"}},
		},
		{
			name: "replica",
			req: PullRequest{URI: "rtmp://10.0.0.5/live/a", LocalStreamName: "a", KeepAlive: &no,
				Vars: map[string]string{"_streamlb_origin": "b", "_streamlb_group": "g"}},
			want: Params{{"uri", "rtmp://10.0.0.5/live/a"}, {"localStreamName", "a"}, {"keepAlive", "0"},
				{"_streamlb_group", "g"}, {"_streamlb_origin", "b"}},
		},
		{
			name: "every field in order",
			req: PullRequest{URI: "u", LocalStreamName: "l", KeepAlive: &yes, ForceTCP: &yes,
				TcURL: "tc", PageURL: "pg", SwfURL: "sw", EmulateUserAgent: "ua", SSMIP: "ss", HTTPProxy: "hp",
				AudioCodecBytes: "ac", SPSBytes: "sp", PPSBytes: "pp",
				TTL: n(1), TOS: n(2), RTCPDetectionInterval: n(3), RangeStart: n(-2), RangeEnd: n(-1),
				IsAudio: &no, SendRenewStream: &yes},
			want: Params{{"uri", "u"}, {"localStreamName", "l"}, {"keepAlive", "1"}, {"forceTcp", "1"},
				{"tcUrl", "tc"}, {"pageUrl", "pg"}, {"swfUrl", "sw"}, {"emulateUserAgent", "ua"}, {"ssmIp", "ss"},
				{"httpProxy", "hp"}, {"audioCodecBytes", "ac"}, {"spsBytes", "sp"}, {"ppsBytes", "pp"},
				{"ttl", "1"}, {"tos", "2"}, {"rtcpDetectionInterval", "3"}, {"rangeStart", "-2"}, {"rangeEnd", "-1"},
				{"isAudio", "0"}, {"sendRenewStream", "1"}},
		},
		{name: "no uri", req: PullRequest{LocalStreamName: "a"}, wantErr: "without uri"},
		{name: "var without underscore", req: PullRequest{URI: "u", Vars: map[string]string{"origin": "b"}}, wantErr: `"origin"`},
		{name: "bare underscore", req: PullRequest{URI: "u", Vars: map[string]string{"_": "b"}}, wantErr: `"_"`},
		{name: "vars differing in case", req: PullRequest{URI: "u", Vars: map[string]string{"_a": "1", "_A": "2"}}, wantErr: "differ only in case"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.req.Params()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Params() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Params() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Params() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
