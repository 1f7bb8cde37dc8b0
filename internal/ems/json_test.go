package ems

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// jsonCorpus holds valid and invalid JSON texts that exercise every rule
// of the grammar.
var jsonCorpus = []string{
	`null`, `true`, `false`, `0`, `-0`, `1`, `-12.5e+3`, `1E9`, `0.1`, `""`, `"a\"b\\c\/d\b\f\n\r\t\u00e9\uD83D"`,
	`{}`, `[]`, `{"a":1,"b":[1,2,{"c":null}]}`, ` [ 1 , 2 ] `, "\t{\r\n\"k\" : \"v\" }\n",
	"\"\xff\xfe invalid utf-8 passes\"", `[[[[[]]]]]`, `{"a":1,"a":2}`,
	// invalid
	``, ` `, `nul`, `nulll`, `tru`, `-`, `01`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `1.5.2`,
	`"`, `"abc`, `"a\q"`, `"\u12"`, `"\u12G4"`, "\"a\x01b\"", `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`,
	`{"a" 1}`, `{1:2}`, `[1,]`, `[,1]`, `[1 2]`, `]`, `}`, `[}`, `{]`, `1 2`, `{} {}`, `"a" x`,
	`[1,2`, `{"a":[`, `{"a":{"b":`, `'a'`, `NaN`, `Infinity`, `[true false]`,
}

// newBytesDecoder returns a decoder of b, parsing it in place.
func newBytesDecoder(b []byte) *jsontext.Decoder {
	return jsontext.NewDecoder(bytes.NewBuffer(b), decodeOptions...)
}

// The decoder's settings accept exactly what encoding/json accepts.
func TestDecoderAcceptsWhatEncodingJSONAccepts(t *testing.T) {
	valid := func(b []byte) bool {
		dec := newBytesDecoder(b)
		if err := dec.SkipValue(); err != nil {
			return false
		}
		_, err := dec.ReadToken()
		return err == io.EOF
	}
	check := func(t interface{ Fatalf(string, ...any) }, b []byte) {
		if got, want := valid(b), json.Valid(b); got != want {
			t.Fatalf("decoder accepts %q: %v, encoding/json: %v", b, got, want)
		}
	}
	for _, s := range jsonCorpus {
		check(t, []byte(s))
	}
	for _, r := range recordedResponses(t) {
		check(t, r.body)
	}
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	check(t, []byte(deep))
	rapid.Check(t, func(t *rapid.T) { check(t, []byte(jsonish().Draw(t, "text"))) })
}

// jsonish generates byte strings close to JSON: fragments of valid JSON
// glued together, so that both valid and subtly invalid texts come up.
func jsonish() *rapid.Generator[string] {
	atoms := []string{`{`, `}`, `[`, `]`, `,`, `:`, ` `, `"k"`, `"\u00e9"`, `"\x"`, `1`, `-`, `0`, `.5`, `e7`,
		`null`, `tru`, `true`, `"`, `\`, "\x01", `""`, `{"a":1}`, `[1,2]`, `"\ud800"`, "\"\xff\""}
	return rapid.Custom(func(t *rapid.T) string {
		n := rapid.IntRange(0, 12).Draw(t, "n")
		var b strings.Builder
		for range n {
			b.WriteString(rapid.SampledFrom(atoms).Draw(t, "atom"))
		}
		return b.String()
	})
}

// decodeWhole decodes an answer body as a command decoded whole does,
// returning its data (nil when null).
func decodeWhole(body []byte) (envelopeMeta, []byte, error) {
	return decodeWholeFrom(bytes.NewReader(body))
}

// decodeWholeFrom is decodeWhole of what r reads; a *bytes.Buffer is read
// in place, as the client reads a small answer.
func decodeWholeFrom(r io.Reader) (envelopeMeta, []byte, error) {
	var data []byte
	meta, err := walkEnvelope(r, func(dec *jsontext.Decoder) error {
		v, err := dec.ReadValue()
		data = nil
		if err == nil && v.Kind() != 'n' {
			data = bytes.Clone(v)
		}
		return err
	})
	return meta, data, err
}

// streamListConfig decodes a listConfig body read from r, failing on the
// first entry that does not decode.
func streamListConfig(r io.Reader) (envelopeMeta, []PullConfig, error) {
	out := []PullConfig{}
	meta, err := walkEnvelope(r, func(dec *jsontext.Decoder) error {
		return streamPullConfigs(dec, func(pc *PullConfig) error {
			cp := *pc
			if pc.Vars != nil {
				cp.Vars = make(map[string]string, len(pc.Vars))
				for k, v := range pc.Vars {
					cp.Vars[k] = v
				}
			}
			out = append(out, cp)
			return nil
		}, nil)
	})
	return meta, out, err
}

func TestDecodeWhole(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		want     envelopeMeta
		wantData string
		wantErr  string
	}{
		{
			name: "success with trailer",
			body: "{\"data\":{\"streamCount\":3},\"description\":\"Active streams count\",\"status\":\"SUCCESS\"}\r\n\r\n",
			want: envelopeMeta{Status: "SUCCESS", Description: "Active streams count"}, wantData: `{"streamCount":3}`,
		},
		{
			name: "data null",
			body: `{"data":null,"description":"Available streams","status":"SUCCESS"}`,
			want: envelopeMeta{Status: "SUCCESS", Description: "Available streams"},
		},
		{
			name: "fail",
			body: `  {"data":null,"description":"Stream name mystream already taken","status":"FAIL"}  `,
			want: envelopeMeta{Status: "FAIL", Description: "Stream name mystream already taken"},
		},
		{
			name: "escaped slashes and byte order mark",
			body: "\xef\xbb\xbf{\"data\":{\"u\":\"rtmp:\\/\\/h\\/x\"},\"description\":\"Bandwidth in B\\/s\",\"status\":\"SUCCESS\"}",
			want: envelopeMeta{Status: "SUCCESS", Description: "Bandwidth in B/s"}, wantData: `{"u":"rtmp:\/\/h\/x"}`,
		},
		{
			name: "keys in any order, repeated data: the last counts",
			body: "{\"status\":\"SUCCESS\",\"data\":1,\"x\":[1,{}],\"description\":7,\"data\":[2]}\r\n\r\n",
			want: envelopeMeta{Status: "SUCCESS"}, wantData: `[2]`,
		},
		{name: "no status", body: `{"data":null}`, wantErr: "no status"},
		{name: "status not a string", body: `{"status":1}`, wantErr: "status: not a string"},
		{name: "empty", body: "\r\n", wantErr: "empty body"},
		{name: "html", body: "<html><body>Access Denied</body></html>", wantErr: "not a JSON object"},
		{name: "truncated", body: `{"data":{"a":1`, wantErr: "unexpected EOF"},
		{name: "array", body: `[1,2]`, wantErr: "not a JSON object"},
		{name: "garbage after", body: `{"status":"SUCCESS","data":null} x`, wantErr: "invalid character"},
		{name: "second value after", body: `{"status":"SUCCESS","data":null} {}`, wantErr: "data after the envelope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, data, err := decodeWhole([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeWhole() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeWhole() error = %v", err)
			}
			if got != tt.want || string(data) != tt.wantData {
				t.Errorf("decodeWhole() = %+v %s, want %+v %s", got, data, tt.want, tt.wantData)
			}
		})
	}
}

// refListConfig decodes a listConfig answer with encoding/json's generic
// maps, by the rules the streaming decoder promises (keys exact, the last
// of equal keys winning): the oracle of the property and fuzz tests. It
// expects no key repeated at the envelope, data or entry level.
func refListConfig(body []byte) (envelopeMeta, []PullConfig, bool) {
	var meta envelopeMeta
	var env map[string]json.RawMessage
	if json.Unmarshal(body, &env) != nil || env == nil {
		return meta, nil, false
	}
	st, ok := env["status"]
	if !ok || firstByteOf(st) != '"' {
		return meta, nil, false
	}
	_ = json.Unmarshal(st, &meta.Status)
	if d := env["description"]; firstByteOf(d) == '"' {
		_ = json.Unmarshal(d, &meta.Description)
	}
	out := []PullConfig{}
	data, ok := env["data"]
	if !ok || string(data) == "null" {
		return meta, out, true
	}
	var cats map[string]json.RawMessage
	if json.Unmarshal(data, &cats) != nil || cats == nil {
		return meta, nil, false
	}
	pulls, ok := cats["pull"]
	if !ok || string(pulls) == "null" {
		return meta, out, true
	}
	var entries []json.RawMessage
	if json.Unmarshal(pulls, &entries) != nil || entries == nil {
		return meta, nil, false
	}
	for _, e := range entries {
		pc, ok := refPullConfig(e)
		if !ok {
			return meta, nil, false
		}
		out = append(out, pc)
	}
	return meta, out, true
}

func firstByteOf(raw []byte) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// refPullConfig is refListConfig's reading of one entry.
func refPullConfig(raw []byte) (PullConfig, bool) {
	var pc PullConfig
	if string(raw) == "null" {
		return pc, true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return pc, false
	}
	str := func(v json.RawMessage) string {
		var s string
		if firstByteOf(v) == '"' {
			_ = json.Unmarshal(v, &s)
		}
		return s
	}
	for k, v := range m {
		switch k {
		case "configId":
			if string(v) != "null" {
				n, err := strconv.ParseUint(string(v), 10, 64)
				if err != nil {
					return pc, false
				}
				pc.ConfigID = n
			}
		case "localStreamName":
			pc.LocalStreamName = str(v)
		case "uri":
			switch firstByteOf(v) {
			case '"':
				pc.URI = str(v)
			case '{':
				var u map[string]json.RawMessage
				_ = json.Unmarshal(v, &u)
				pc.URI = str(u["originalUri"])
				if pc.URI == "" {
					pc.URI = str(u["fullUri"])
				}
			case 'n':
			default:
				return pc, false
			}
		case "keepAlive":
			switch s := string(v); s {
			case "true":
				pc.KeepAlive = true
			case "false", "null":
			default:
				f, err := strconv.ParseFloat(s, 64)
				if err != nil {
					return pc, false
				}
				pc.KeepAlive = f != 0
			}
		case "status":
			if string(v) == "null" {
				continue
			}
			var st map[string]json.RawMessage
			if json.Unmarshal(v, &st) != nil || st == nil {
				return pc, false
			}
			cur, ok := st["current"]
			if !ok || string(cur) == "null" {
				continue
			}
			var c map[string]json.RawMessage
			if json.Unmarshal(cur, &c) != nil || c == nil {
				return pc, false
			}
			num := func(v json.RawMessage, n *int64) bool {
				if v == nil || string(v) == "null" {
					return true
				}
				if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
					*n = i
					return true
				}
				f, err := strconv.ParseFloat(string(v), 64)
				*n = int64(f)
				return err == nil
			}
			var code, ts int64
			if !num(c["code"], &code) || !num(c["timestamp"], &ts) {
				return pc, false
			}
			pc.Status = PullStatus{Code: int(code), Description: str(c["description"]), Timestamp: ts}
		default:
			if strings.HasPrefix(k, "_") && firstByteOf(v) == '"' {
				if pc.Vars == nil {
					pc.Vars = map[string]string{}
				}
				pc.Vars[k] = str(v)
			}
		}
	}
	return pc, true
}

// checkListConfig decodes body whole, one byte at a time and in halves,
// and fails when the stream decoder and the oracle disagree on success or
// on the result.
func checkListConfig(t interface {
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}, name string, body []byte) {
	wantMeta, want, ok := refListConfig(body)
	for how, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(body),
		"one byte": iotest.OneByteReader(bytes.NewReader(body)),
		"halves":   iotest.HalfReader(bytes.NewReader(body)),
	} {
		gotMeta, got, err := streamListConfig(r)
		if (err == nil) != ok {
			t.Fatalf("%s (%s): stream error = %v, oracle accepts it: %v", name, how, err, ok)
		}
		if err != nil {
			continue
		}
		if gotMeta != wantMeta {
			t.Errorf("%s (%s): meta = %+v, want %+v", name, how, gotMeta, wantMeta)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (%s): pull configs differ (-oracle +stream):\n%s", name, how, diff)
		}
	}
}

func TestListConfigAgreesWithEncodingJSON(t *testing.T) {
	for _, r := range recordedResponses(t) {
		if r.command == "listConfig" {
			checkListConfig(t, r.name, r.body)
		}
	}
	checkListConfig(t, "300 entries", genListConfig(300))
	for _, body := range []string{
		"{\"status\":\"SUCCESS\",\"x\":[1,{}],\"description\":\"d\",\"data\":null}\r\n\r\n",
		`{"status":"SUCCESS","data":null} x`,
		`{"status":"SUCCESS","data":null} {}`,
		`{"data":null}`,
		`null`,
		`{"data":{"pull":null,"push":[{"a":1}]},"status":"SUCCESS","description":7}`,
		`{"data":{"pull":[null,{"configId":3}]},"status":"SUCCESS"}`,
		`{"data":{"pull":[{"configId":"x"}]}}`,
		`{"data":[],"status":"SUCCESS"}`,
		`{"data":{"pull":[1]},"status":"SUCCESS"}`,
		`{"data":{"pull":{}},"status":"SUCCESS"}`,
		`{"status":1,"data":null}`,
		`{"data":{"pull":[{"_a":"1","_b":2,"_c":"\u0041","uri":{"fullUri":"f","originalUri":""}}]},"status":"FAIL"}`,
		`{"data":{"pull":[{"configId":18446744073709551615,"status":{"current":{"code":4.7,"timestamp":"x"}}}]},"status":"SUCCESS"}`,
	} {
		checkListConfig(t, body, []byte(body))
	}
}

// pullEntry generates a pull entry with distinct keys whose values are of
// every type, the right one most often.
func pullEntry() *rapid.Generator[string] {
	values := map[string][]string{
		"configId":        {`1`, `18446744073709551615`, `18446744073709551616`, `-1`, `1.5`, `"7"`, `null`, `{}`},
		"localStreamName": {`"cam1"`, `"a\/b"`, `"\u00e9\ud800"`, "\"\xff\"", `7`, `null`, `[]`},
		"uri":             {`"rtmp:\/\/h\/live\/a"`, `{"originalUri":"o","fullUri":"f"}`, `{"fullUri":"f"}`, `{"originalUri":1}`, `null`, `true`, `[1]`},
		"keepAlive":       {`true`, `false`, `null`, `0`, `2.5`, `"1"`, `{}`},
		"status": {`{"current":{"code":0,"description":"Streaming","timestamp":1505790289},"previous":{"code":"x"}}`,
			`{"current":{"code":1.9,"timestamp":null}}`, `{"current":null}`, `{"current":{"code":"1"}}`, `{"current":7}`, `null`, `"x"`, `{}`},
		"_streamlb_group": {`"g1"`, `"\/"`, `1`, `null`},
		"_x":              {`"y"`, `{"z":"w"}`},
		"other":           {`[1,{"a":[]}]`, `"s"`, `{"current":{"code":"x"}}`},
	}
	keys := []string{"configId", "localStreamName", "uri", "keepAlive", "status", "_streamlb_group", "_x", "other"}
	return rapid.Custom(func(t *rapid.T) string {
		if rapid.IntRange(0, 20).Draw(t, "shape") == 0 {
			return rapid.SampledFrom([]string{`null`, `1`, `"s"`, `[{"configId":1}]`, `{}`}).Draw(t, "odd")
		}
		var parts []string
		for _, k := range rapid.Permutation(keys).Draw(t, "keys")[:rapid.IntRange(0, len(keys)).Draw(t, "n")] {
			vs := values[k]
			v := vs[0]
			if rapid.Bool().Draw(t, "odd value") {
				v = rapid.SampledFrom(vs).Draw(t, k)
			}
			parts = append(parts, strconv.Quote(k)+":"+v)
		}
		return "{" + strings.Join(parts, ",") + "}"
	})
}

func TestListConfigProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		entries := rapid.SliceOfN(pullEntry(), 0, 4).Draw(t, "entries")
		body := `{"data":{"push":[{"configId":"x"}],"pull":[` + strings.Join(entries, ",") + "]},\"status\":\"SUCCESS\"}\r\n\r\n"
		checkListConfig(t, body, []byte(body))
	})
}

// An entry that does not decode is skipped, however deep the bad value,
// and the listing goes on with the next one; an entry that is not JSON
// stops it.
func TestStreamPullConfigsSkipping(t *testing.T) {
	tests := []struct {
		data    string
		names   []string
		skipped int
		fails   bool
	}{
		{`{"pull":[{"localStreamName":"a"},{"configId":"x","status":{"current":{"code":[1,{"a":[]}]}},"localStreamName":"b"},{"localStreamName":"c"}]}`, []string{"a", "c"}, 1, false},
		{`{"pull":[{"status":{"current":{"code":"x","description":{"deep":[[[]]]}}}},7,[1,[2]],{"localStreamName":"d"}]}`, []string{"d"}, 3, false},
		{`{"pull":[{"localStreamName":"a"},{"configId":"x",]}]}`, nil, 0, true},
	}
	for _, tt := range tests {
		body := `{"data":` + tt.data + `,"status":"SUCCESS"}`
		var names []string
		skipped := 0
		_, err := walkEnvelope(iotest.OneByteReader(strings.NewReader(body)), func(dec *jsontext.Decoder) error {
			return streamPullConfigs(dec, func(pc *PullConfig) error {
				names = append(names, pc.LocalStreamName)
				return nil
			}, func(error) { skipped++ })
		})
		if (err != nil) != tt.fails {
			t.Errorf("%s: error = %v, want failure %v", tt.data, err, tt.fails)
			continue
		}
		if err == nil && (!cmp.Equal(names, tt.names) || skipped != tt.skipped) {
			t.Errorf("%s: names %q, %d skipped; want %q, %d", tt.data, names, skipped, tt.names, tt.skipped)
		}
	}
}

func TestStreamKeepsReadErrors(t *testing.T) {
	body := genListConfig(50)
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(body[:len(body)/2]), iotest.ErrReader(boom))
	_, _, err := streamListConfig(r)
	if !errors.Is(err, boom) {
		t.Errorf("error = %v, want the read error", err)
	}
}

func TestStreamNames(t *testing.T) {
	tests := []struct {
		body string
		want []string
		err  bool
	}{
		{`{"data":null,"description":"Inbound local stream names","status":"SUCCESS"}`, []string{}, false},
		{`{"data":[{"name":"a"},{"name":"b\/c"},{"x":1},{"name":7},{"name":"\u00e9"},{"name":"x","name":null}],"description":"d","status":"SUCCESS"}`, []string{"a", "b/c", "", "", "é", "x"}, false},
		{`{"data":[1],"status":"SUCCESS"}`, nil, true},
		{`{"data":[null],"status":"SUCCESS"}`, nil, true},
		{`{"data":{"name":"a"},"status":"SUCCESS"}`, nil, true},
		{`{"data":[{"name":"a"}`, nil, true},
	}
	for _, tt := range tests {
		got := []string{}
		_, err := walkEnvelope(iotest.OneByteReader(strings.NewReader(tt.body)), func(dec *jsontext.Decoder) error {
			return streamNames(dec, func(name []byte) error {
				got = append(got, string(name))
				return nil
			})
		})
		if (err != nil) != tt.err {
			t.Errorf("%s: error = %v, want error %v", tt.body, err, tt.err)
			continue
		}
		if err == nil && !cmp.Equal(got, tt.want) {
			t.Errorf("%s: names = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestDecodePullResultAgreesWithEncodingJSON(t *testing.T) {
	var bodies [][]byte
	for _, r := range recordedResponses(t) {
		if r.command == "pullStream" {
			bodies = append(bodies, r.body)
		}
	}
	if len(bodies) == 0 {
		t.Fatal("no recorded pullStream answers")
	}
	bodies = append(bodies, []byte(`{"data":{"CONFIGID":5,"localstreamname":"x","Uri":{"fullUri":"f"},"keepalive":1},"status":"SUCCESS"}`))
	for _, body := range bodies {
		_, data, err := decodeWhole(body)
		if err != nil || data == nil {
			continue
		}
		var w struct {
			ConfigID        uint64          `json:"configId"`
			LocalStreamName optString       `json:"localStreamName"`
			URI             json.RawMessage `json:"uri"`
			KeepAlive       flexBool        `json:"keepAlive"`
		}
		if err := json.Unmarshal(data, &w); err != nil {
			t.Fatal(err)
		}
		want := PullResult{ConfigID: w.ConfigID, LocalStreamName: w.LocalStreamName.s, KeepAlive: bool(w.KeepAlive)}
		if firstByteOf(w.URI) == '"' {
			_ = json.Unmarshal(w.URI, &want.URI)
		} else {
			var u struct{ OriginalURI, FullURI string }
			_ = json.Unmarshal(w.URI, &u)
			want.URI = u.OriginalURI
			if want.URI == "" {
				want.URI = u.FullURI
			}
		}
		got, err := decodePullResult(data)
		if err != nil || got != want {
			t.Errorf("decodePullResult(%s) = %+v, %v, want %+v", data, got, err, want)
		}
	}
}

// TestDecodeOptStringAgreesWithEncodingJSON checks the fast paths of
// decodeOptString on valid JSON strings.
func TestDecodeOptStringAgreesWithEncodingJSON(t *testing.T) {
	check := func(t interface{ Fatalf(string, ...any) }, value string) {
		got, gotOK, gotErr := decodeOptString([]byte(value))
		var want string
		wantErr := json.Unmarshal([]byte(value), &want)
		if !json.Valid([]byte(value)) || value[0] != '"' {
			return // decodeOptString reads checked JSON only
		}
		if (gotErr == nil) != (wantErr == nil) || gotErr == nil && (got != want || !gotOK) {
			t.Fatalf("decodeOptString(%q) = %q, %v, %v; encoding/json: %q, %v", value, got, gotOK, gotErr, want, wantErr)
		}
	}
	for _, v := range []string{`"a"`, `"a\/b"`, `"\"\\\/\b\f\n\r\t"`, `"\u00e9\/"`, `"\q"`, "\"\xff\\/\"", `"a\"`, "\"a\x01\\/\""} {
		check(t, v)
	}
	rapid.Check(t, func(t *rapid.T) {
		check(t, `"`+rapid.StringMatching(`([a-z/é\x01]|\\[\\"/bfnrtuq]|\\u[0-9a-fA-F]{4}){0,8}`).Draw(t, "inner")+`"`)
	})
}

func ExampleNewHTTPClient() {
	hc := NewHTTPClient(HTTPOptions{OneShot: true})
	c := New(Endpoint{Member: "b", BaseURL: "http://127.0.0.1:1"}, hc)
	fmt.Println(c.Endpoint().Member, hc.Timeout)
	// Output: b 0s
}

// A listing's entries cost two allocations each, their name and URI: the
// user variables and status descriptions they repeat are shared, and come
// out as they are written.
func TestListConfigAllocations(t *testing.T) {
	const entries = 1000
	body := genListConfig(entries)
	got := map[int]PullConfig{}
	allocs := testing.AllocsPerRun(5, func() {
		i := 0
		_, err := walkEnvelope(bytes.NewReader(body), func(dec *jsontext.Decoder) error {
			return streamPullConfigs(dec, func(pc *PullConfig) error {
				if i < 6 || i >= entries-6 {
					cp := *pc
					cp.Vars = maps.Clone(pc.Vars)
					got[i] = cp
				}
				i++
				return nil
			}, nil)
		})
		if err != nil || i != entries {
			t.Fatalf("decoded %d entries: %v", i, err)
		}
	})
	if perEntry := allocs / entries; perEntry > 2.1 {
		t.Errorf("%.2f allocations per entry, want at most 2", perEntry)
	}
	for i, pc := range got {
		if diff := cmp.Diff(genPullConfig(i), pc); diff != "" {
			t.Errorf("entry %d (-want +got):\n%s", i, diff)
		}
	}
}
