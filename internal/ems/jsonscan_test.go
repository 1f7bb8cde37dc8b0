package ems

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// jsonCorpus holds valid and invalid JSON texts that exercise every rule
// of the grammar.
var jsonCorpus = []string{
	`null`, `true`, `false`, `0`, `-0`, `1`, `-12.5e+3`, `1E9`, `0.1`, `""`, `"a\"b\\c\/d\b\f\n\r\t\u00e9\uD83D"`,
	`{}`, `[]`, `{"a":1,"b":[1,2,{"c":null}]}`, ` [ 1 , 2 ] `, "\t{\r\n\"k\" : \"v\" }\n",
	"\"\xff\xfe invalid utf-8 passes\"", `[[[[[]]]]]`,
	// invalid
	``, ` `, `nul`, `nulll`, `tru`, `-`, `01`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `1.5.2`,
	`"`, `"abc`, `"a\q"`, `"\u12"`, `"\u12G4"`, "\"a\x01b\"", `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`,
	`{"a" 1}`, `{1:2}`, `[1,]`, `[,1]`, `[1 2]`, `]`, `}`, `[}`, `{]`, `1 2`, `{} {}`, `"a" x`,
	`[1,2`, `{"a":[`, `{"a":{"b":`, `'a'`, `NaN`, `Infinity`, `[true false]`,
}

func TestValidJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range jsonCorpus {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%q) = %v, want %v", s, got, want)
		}
	}
	for _, r := range recordedResponses(t) {
		if !validJSON(r.body) || !json.Valid(r.body) {
			t.Errorf("%s: validJSON = %v, json.Valid = %v", r.name, validJSON(r.body), json.Valid(r.body))
		}
	}
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	if validJSON([]byte(deep)) != json.Valid([]byte(deep)) {
		t.Errorf("validJSON and json.Valid disagree past the depth limit")
	}
}

// jsonish generates byte strings close to JSON: fragments of valid JSON
// glued together, so that both valid and subtly invalid texts come up.
func jsonish() *rapid.Generator[string] {
	atoms := []string{`{`, `}`, `[`, `]`, `,`, `:`, ` `, `"k"`, `"\u00e9"`, `"\x"`, `1`, `-`, `0`, `.5`, `e7`,
		`null`, `tru`, `true`, `"`, `\`, "\x01", `""`, `{"a":1}`, `[1,2]`}
	return rapid.Custom(func(t *rapid.T) string {
		n := rapid.IntRange(0, 12).Draw(t, "n")
		var b strings.Builder
		for range n {
			b.WriteString(rapid.SampledFrom(atoms).Draw(t, "atom"))
		}
		return b.String()
	})
}

func TestValidJSONProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := jsonish().Draw(t, "text")
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", s, got, want)
		}
	})
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range jsonCorpus {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", b, got, want)
		}
	})
}

// referenceListConfig decodes a listConfig body with the encoding/json
// walker the streaming decoder replaced.
func referenceListConfig(body []byte) (envelopeMeta, []PullConfig, error) {
	out := []PullConfig{}
	meta, err := walkEnvelope(json.NewDecoder(bytes.NewReader(body)), func(dec *json.Decoder) error {
		return decodeConfigData(dec, &out)
	})
	return meta, out, err
}

// streamListConfig decodes a listConfig body read from r.
func streamListConfig(r io.Reader) (envelopeMeta, []PullConfig, error) {
	out := []PullConfig{}
	meta, err := walkStream(newJSONStream(r), func(s *jsonStream) error {
		return streamPullConfigs(s, func(pc *PullConfig) error {
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

// checkSameDecoding decodes body with both walkers, whole and one byte at
// a time, and fails when they disagree on success or on the result.
func checkSameDecoding(t interface {
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}, name string, body []byte) {
	wantMeta, want, wantErr := referenceListConfig(body)
	readers := map[string]io.Reader{
		"whole":    bytes.NewReader(body),
		"one byte": iotest.OneByteReader(bytes.NewReader(body)),
		"halves":   iotest.HalfReader(bytes.NewReader(body)),
	}
	for how, r := range readers {
		gotMeta, got, gotErr := streamListConfig(r)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%s (%s): stream error = %v, reference error = %v", name, how, gotErr, wantErr)
		}
		if gotErr != nil {
			continue
		}
		if gotMeta != wantMeta {
			t.Errorf("%s (%s): meta = %+v, want %+v", name, how, gotMeta, wantMeta)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (%s): pull configs differ (-reference +stream):\n%s", name, how, diff)
		}
	}
}

func TestStreamDecodingAgreesWithReference(t *testing.T) {
	for _, r := range recordedResponses(t) {
		checkSameDecoding(t, r.name, r.body)
	}
	for i, s := range jsonCorpus {
		checkSameDecoding(t, fmt.Sprintf("corpus %d", i), []byte(s))
		checkSameDecoding(t, fmt.Sprintf("corpus %d as data", i), []byte(`{"data":{"pull":[`+s+`]},"status":"SUCCESS"}`))
	}
	checkSameDecoding(t, "300 entries", genListConfig(300))
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
		`{"status":1,"data":null}`,
		`{"data":{"pull":[{"_a":"1","_b":2,"_c":"\u0041"}]},"status":"FAIL"}`,
	} {
		checkSameDecoding(t, body, []byte(body))
	}
}

func TestStreamDecodingProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		body := `{"data":{"pull":[` + jsonish().Draw(t, "entry") + `]},"status":"SUCCESS"}`
		checkSameDecoding(t, body, []byte(body))
	})
}

func FuzzStreamDecoding(f *testing.F) {
	for _, r := range recordedResponses(f) {
		f.Add(r.body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkSameDecoding(t, "fuzz", body)
	})
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
		{`{"data":[{"name":"a"},{"name":"b\/c"},{"x":1},{"name":7},{"name":"\u00e9"}],"description":"d","status":"SUCCESS"}`, []string{"a", "b/c", "", "", "é"}, false},
		{`{"data":[1],"status":"SUCCESS"}`, nil, true},
		{`{"data":{"name":"a"},"status":"SUCCESS"}`, nil, true},
		{`{"data":[{"name":"a"}`, nil, true},
	}
	for _, tt := range tests {
		got := []string{}
		_, err := walkStream(newJSONStream(iotest.OneByteReader(strings.NewReader(tt.body))), func(s *jsonStream) error {
			return streamNames(s, func(name []byte) error {
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
	for _, body := range bodies {
		env, err := decodeEnvelope(body)
		if err != nil || env.Data == nil {
			continue
		}
		var w struct {
			ConfigID        uint64    `json:"configId"`
			LocalStreamName optString `json:"localStreamName"`
			URI             wireURI   `json:"uri"`
			KeepAlive       flexBool  `json:"keepAlive"`
		}
		if err := json.Unmarshal(env.Data, &w); err != nil {
			t.Fatal(err)
		}
		want := PullResult{ConfigID: w.ConfigID, LocalStreamName: w.LocalStreamName.s, URI: w.URI.s, KeepAlive: bool(w.KeepAlive)}
		got, err := decodePullResult(env.Data)
		if err != nil || got != want {
			t.Errorf("decodePullResult = %+v, %v, want %+v", got, err, want)
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
			return // decodeOptString reads scanned JSON only
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
