package receiver

import (
	"bufio"
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const (
	recordedDir    = "../../testdata/ems/recorded"
	docExamplesDir = "../../testdata/ems/doc-examples"
	recordedLines  = recordedDir + "/ems-events-webuilogs.jsonl"
	recordedIndex  = recordedDir + "/ems-events-webuilogs.index.tsv"
)

// readLines returns the non-empty lines of a JSON-lines fixture.
func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scan %s: %v", path, err)
	}
	return lines
}

// readFile returns a fixture's content.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// recordedEventFiles returns the recorded single-event fixtures.
func recordedEventFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(recordedDir, "ems-event-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no recorded event fixtures under %s", recordedDir)
	}
	return files
}

// indexTypes returns the event_type column of the jsonl fixture's index,
// one entry per jsonl line.
func indexTypes(t testing.TB) []string {
	t.Helper()
	var types []string
	for i, line := range strings.Split(strings.TrimSpace(string(readFile(t, recordedIndex))), "\n") {
		if i == 0 {
			continue // header
		}
		cols := strings.Split(line, "\t")
		if len(cols) < 2 {
			t.Fatalf("index line %d: %q has no event_type column", i+1, line)
		}
		types = append(types, cols[1])
	}
	return types
}

// equateAddr compares netip.Addr values with ==.
func equateAddr() cmp.Option {
	return cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
}

func TestDecodeEventRecordedLines(t *testing.T) {
	lines := readLines(t, recordedLines)
	want := indexTypes(t)
	if len(lines) != 1224 || len(want) != len(lines) {
		t.Fatalf("fixture has %d lines and %d index rows, want 1224 of each", len(lines), len(want))
	}
	counts := map[string]int{}
	for i, line := range lines {
		ev, err := DecodeEvent(line)
		if err != nil {
			t.Errorf("line %d: DecodeEvent: %v", i+1, err)
			continue
		}
		if ev.Type != want[i] {
			t.Errorf("line %d: Type = %q, want %q", i+1, ev.Type, want[i])
		}
		isStream := ev.Type == TypeInStreamCreated || ev.Type == TypeInStreamClosed
		if (ev.Stream != nil) != isStream {
			t.Errorf("line %d (%s): Stream = %v, want non-nil %v", i+1, ev.Type, ev.Stream, isStream)
		}
		if ev.Stream != nil {
			if ev.Stream.Name == "" || ev.Stream.Type != ev.Type {
				t.Errorf("line %d: Stream = %+v, want a name and type %q", i+1, ev.Stream, ev.Type)
			}
			// Pulled streams carry their pull URI; published ones none.
			if (ev.Stream.ConnectionType == 1) != (ev.Stream.PullURI != "") {
				t.Errorf("line %d: ConnectionType %d with PullURI %q", i+1, ev.Stream.ConnectionType, ev.Stream.PullURI)
			}
		}
		counts[ev.Type]++
	}
	if counts[TypeInStreamCreated] != 169 || counts[TypeInStreamClosed] != 95 {
		t.Errorf("decoded %d inStreamCreated and %d inStreamClosed, want 169 and 95",
			counts[TypeInStreamCreated], counts[TypeInStreamClosed])
	}
}

func TestDecodeEventRecordedFiles(t *testing.T) {
	for _, f := range recordedEventFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ev, err := DecodeEvent(readFile(t, f))
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			// The file name says the type: ems-event-TYPE-....json.
			wantType := strings.Split(strings.TrimPrefix(filepath.Base(f), "ems-event-"), "-")[0]
			if ev.Type != wantType {
				t.Errorf("Type = %q, want %q", ev.Type, wantType)
			}
		})
	}
}

func TestDecodeEventStreamFields(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want Event
	}{
		{
			name: "pulled inStreamCreated (INR)",
			body: readFile(t, recordedDir+"/ems-event-inStreamCreated-webuilogs-INR.json"),
			want: Event{Type: TypeInStreamCreated, Stream: &StreamEvent{
				Type: TypeInStreamCreated, Name: "5", IP: "192.168.2.196", ConnectionType: 1,
				PullURI: "rtmp://webcasting.thefloridachannel.org/live/tvweb1",
			}},
		},
		{
			name: "pulled inStreamClosed with a null _callback (INR)",
			body: readFile(t, recordedDir+"/ems-event-inStreamClosed-webuilogs-INR.json"),
			want: Event{Type: TypeInStreamClosed, Stream: &StreamEvent{
				Type: TypeInStreamClosed, Name: "1", IP: "192.168.1.10", ConnectionType: 1,
				PullURI: "rtmp://webcasting.thefloridachannel.org/live/tvweb1",
			}},
		},
		{
			name: "published file stream without pullSettings (IFR)",
			body: readFile(t, recordedDir+"/ems-event-inStreamCreated-webuilogs-IFR.json"),
			want: Event{Type: TypeInStreamCreated, Stream: &StreamEvent{
				Type: TypeInStreamCreated, Name: `F:\EVOSTREAMMS\evostreamms17\media\bunny.mp4`,
				IP: "127.0.0.1", ConnectionType: 0,
			}},
		},
		{
			name: "first jsonl line",
			body: readLines(t, recordedLines)[0],
			want: Event{Type: TypeInStreamCreated, Stream: &StreamEvent{
				Type: TypeInStreamCreated, Name: "5", IP: "192.168.2.196", ConnectionType: 1,
				PullURI: "rtmp://webcasting.thefloridachannel.org/live/tvweb1",
			}},
		},
		{
			name: "outStreamCreated is not a stream event",
			body: readFile(t, recordedDir+"/ems-event-outStreamCreated-webuilogs-ONR.json"),
			want: Event{Type: "outStreamCreated"},
		},
		{
			name: "streamlb provenance vars",
			body: []byte(`{"id":7,"payload":{"name":"cam 1","ip":"127.0.0.3","connectionType":1,` +
				`"pullSettings":{"uri":"rtmp://127.0.0.2/live/cam 1","keepAlive":true,` +
				`"_streamlb_group":"default","_streamlb_origin":"127.0.0.2",` +
				`"_callback":null,"_n":5,"_obj":{"a":"b"},"_esc":"a\"b\u00e9","\u005fkey":"escaped"}},` +
				`"processId":1,"timestamp":1,"type":"inStreamCreated"}`),
			want: Event{Type: TypeInStreamCreated, Stream: &StreamEvent{
				Type: TypeInStreamCreated, Name: "cam 1", IP: "127.0.0.3", ConnectionType: 1,
				PullURI: "rtmp://127.0.0.2/live/cam 1",
				Vars: map[string]string{
					"_streamlb_group": "default", "_streamlb_origin": "127.0.0.2", "_esc": "a\"bé",
					"_key": "escaped",
				},
			}},
		},
		{
			name: "older build without processId or PID",
			body: []byte(`{"id":1,"payload":{"name":"x","ip":"","connectionType":0},"timestamp":1,"type":"inStreamClosed"}`),
			want: Event{Type: TypeInStreamClosed, Stream: &StreamEvent{
				Type: TypeInStreamClosed, Name: "x", ConnectionType: 0,
			}},
		},
		{
			name: "minimal doc form, no connectionType",
			body: []byte(`{"payload":{"name":"x"},"type":"inStreamCreated"}`),
			want: Event{Type: TypeInStreamCreated, Stream: &StreamEvent{
				Type: TypeInStreamCreated, Name: "x", ConnectionType: ConnectionTypeUnknown,
			}},
		},
		{
			name: "null ip, pullSettings and uri",
			body: []byte(`{"payload":{"name":"x","ip":null,"pullSettings":{"uri":null}},"type":"inStreamCreated"}`),
			want: Event{Type: TypeInStreamCreated, Stream: &StreamEvent{
				Type: TypeInStreamCreated, Name: "x", ConnectionType: ConnectionTypeUnknown,
			}},
		},
		{
			name: "huge unneeded numbers are left alone",
			body: []byte(`{"id":18446744073709551615,"payload":{"name":"x","connectionType":1,` +
				`"typeNumeric":5282249572905648128,"big":1e400},"processId":1,"timestamp":1,"type":"inStreamCreated"}`),
			want: Event{Type: TypeInStreamCreated, Stream: &StreamEvent{
				Type: TypeInStreamCreated, Name: "x", ConnectionType: 1,
			}},
		},
		{
			name: "other event types need only an object payload",
			body: []byte(`{"payload":{},"type":"timerTriggered"}`),
			want: Event{Type: "timerTriggered"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeEvent(tt.body)
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, equateAddr()); diff != "" {
				t.Errorf("DecodeEvent mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeEventMalformed(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantType string // Event.Type returned with the error
		wantErr  string
	}{
		{name: "empty", body: "", wantErr: "empty body"},
		{name: "blank", body: " \n", wantErr: "empty body"},
		{name: "truncated", body: `{"type":"inStreamCreated","payload":{`,
			wantErr: "invalid JSON at offset 37: unexpected end of JSON input"},
		{name: "bad character", body: `{"type":"inStreamCreated",x}`,
			wantErr: "invalid JSON at offset 27: invalid character 'x' looking for beginning of object key string"},
		{name: "trailing data", body: `{"type":"a","payload":{}} {}`,
			wantErr: "invalid JSON at offset 27: invalid character '{' after top-level value"},
		{name: "xml body", body: `<?xml version="1.0"?><event/>`,
			wantErr: "invalid JSON at offset 1: invalid character '<' looking for beginning of value" +
				` (the body looks like XML: the EMS sink needs serializerType="JSON")`},
		{name: "array", body: `[{"type":"inStreamCreated"}]`, wantErr: "body is a JSON array, not an object"},
		{name: "string", body: `"inStreamCreated"`, wantErr: "body is a JSON string, not an object"},
		{name: "number", body: `17`, wantErr: "body is a JSON number, not an object"},
		{name: "null", body: `null`, wantErr: "body is a JSON null, not an object"},
		{name: "missing type", body: `{"payload":{}}`, wantErr: `missing "type"`},
		{name: "null type", body: `{"payload":{},"type":null}`, wantErr: `missing "type"`},
		{name: "numeric type", body: `{"payload":{},"type":3}`, wantErr: `"type" is a JSON number, not a string`},
		{name: "empty type", body: `{"payload":{},"type":""}`, wantErr: `"type" is empty`},
		{name: "missing payload", body: `{"type":"timerTriggered"}`, wantType: "timerTriggered",
			wantErr: `missing "payload"`},
		{name: "null payload", body: `{"type":"inStreamCreated","payload":null}`, wantType: TypeInStreamCreated,
			wantErr: `missing "payload"`},
		{name: "array payload", body: `{"type":"inStreamCreated","payload":[]}`, wantType: TypeInStreamCreated,
			wantErr: `"payload" is a JSON array, not an object`},
		{name: "string payload", body: `{"type":"serverStarted","payload":"x"}`, wantType: "serverStarted",
			wantErr: `"payload" is a JSON string, not an object`},
		{name: "stream without name", body: `{"type":"inStreamCreated","payload":{"ip":"1.2.3.4"}}`,
			wantType: TypeInStreamCreated, wantErr: `missing "payload.name"`},
		{name: "stream with numeric name", body: `{"type":"inStreamClosed","payload":{"name":5}}`,
			wantType: TypeInStreamClosed, wantErr: `"payload.name" is a JSON number, not a string`},
		{name: "stream with empty name", body: `{"type":"inStreamClosed","payload":{"name":""}}`,
			wantType: TypeInStreamClosed, wantErr: `"payload.name" is empty`},
		{name: "stream with numeric ip", body: `{"type":"inStreamCreated","payload":{"name":"a","ip":1}}`,
			wantType: TypeInStreamCreated, wantErr: `"payload.ip" is a JSON number, not a string`},
		{name: "fractional connectionType",
			body:     `{"type":"inStreamCreated","payload":{"name":"a","connectionType":1.5}}`,
			wantType: TypeInStreamCreated, wantErr: `"payload.connectionType" is not an integer: 1.5`},
		{name: "huge connectionType",
			body:     `{"type":"inStreamCreated","payload":{"name":"a","connectionType":99999999999999999999}}`,
			wantType: TypeInStreamCreated, wantErr: `"payload.connectionType" is not an integer: 99999999999999999999`},
		{name: "string connectionType",
			body:     `{"type":"inStreamCreated","payload":{"name":"a","connectionType":"1"}}`,
			wantType: TypeInStreamCreated, wantErr: `"payload.connectionType" is not an integer: "1"`},
		{name: "array pullSettings",
			body:     `{"type":"inStreamCreated","payload":{"name":"a","pullSettings":[]}}`,
			wantType: TypeInStreamCreated, wantErr: `"payload.pullSettings" is a JSON array, not an object`},
		{name: "numeric pull uri",
			body:     `{"type":"inStreamCreated","payload":{"name":"a","pullSettings":{"uri":7}}}`,
			wantType: TypeInStreamCreated, wantErr: `"payload.pullSettings.uri" is a JSON number, not a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeEvent([]byte(tt.body))
			if err == nil {
				t.Fatalf("DecodeEvent(%q) = %+v, nil; want error %q", tt.body, got, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("DecodeEvent(%q) error = %q, want %q", tt.body, err.Error(), tt.wantErr)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("errors.Is(%v, ErrMalformed) = false, want true", err)
			}
			if got.Type != tt.wantType || got.Stream != nil {
				t.Errorf("DecodeEvent(%q) event = %+v, want Type %q and no Stream", tt.body, got, tt.wantType)
			}
		})
	}
}

// The documentation examples are payloads alone, and not valid JSON (missing
// commas, an unquoted value) or not JSON at all: they are refused, not
// guessed at.
func TestDecodeEventRejectsDocExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(docExamplesDir, "ems-event-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no doc-example event fixtures under %s", docExamplesDir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ev, err := DecodeEvent(readFile(t, f))
			if err == nil {
				t.Fatalf("DecodeEvent = %+v, nil; want an error", ev)
			}
			if !strings.HasPrefix(err.Error(), "invalid JSON at offset ") {
				t.Errorf("error = %q, want an invalid JSON error", err)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, line := range readLines(f, recordedLines) {
		f.Add(line)
	}
	for _, file := range recordedEventFiles(f) {
		f.Add(readFile(f, file))
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"type":"inStreamCreated"}`,
		`{"type":"inStreamCreated","payload":{"name":"a","pullSettings":{"_x":"y","uri":"rtmp://h/live/a"}}}`,
		`{"type":"inStreamClosed","payload":{"name":"a","connectionType":-1e99}}`,
		// Keys as encoding/json matches struct fields: any case (Unicode
		// folding included), the last of equal keys winning; "_" user
		// variables exactly.
		`{"TYPE":"x","type":"inStreamCreated","Payload":{"NAME":"a","name":"b","pullſettings":{"URI":"u","_v":"1","_v":"2","_V":"3"}}}`,
		`{"type":"inStreamCreated","payload":{"name":"a","IP":null,"ip":"1.2.3.4","pullSettings":{"uri":1}}}`,
		`{"type":"inStreamCreated","payload":{"name":"a\u0000","pullSettings":{"\u005fx":"\ud800","uri":"\/a"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := DecodeEvent(body)
		want, ok := referenceDecode(body)
		if ok != (err == nil) {
			t.Fatalf("DecodeEvent(%q) error %v; encoding/json decodes it: %v", body, err, ok)
		}
		if ok && !cmp.Equal(ev, want, cmpopts.EquateComparable(netip.Addr{})) {
			t.Fatalf("DecodeEvent(%q) differs from encoding/json:\n%s", body, cmp.Diff(want, ev, cmpopts.EquateComparable(netip.Addr{})))
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not match ErrMalformed", err)
			}
			if ev.Stream != nil {
				t.Errorf("error %v with a Stream %+v", err, ev.Stream)
			}
			return
		}
		if ev.Type == "" {
			t.Errorf("no error and an empty Type")
		}
		isStream := ev.Type == TypeInStreamCreated || ev.Type == TypeInStreamClosed
		if (ev.Stream != nil) != isStream {
			t.Errorf("Type %q with Stream %+v", ev.Type, ev.Stream)
		}
		if ev.Stream != nil && ev.Stream.Name == "" {
			t.Errorf("stream event without a name")
		}
		if ev.Stream != nil {
			for k := range ev.Stream.Vars {
				if !strings.HasPrefix(k, "_") {
					t.Errorf("Vars key %q lacks the underscore", k)
				}
			}
		}
	})
}

// TestReadmeEnabledEvents: the sink configuration README.md and
// docs/operations.md give EMS enables exactly the types the balancer acts
// on.
func TestReadmeEnabledEvents(t *testing.T) {
	want := `enabledEvents={"` + strings.Join(ActedOn(), `","`) + `"}`
	for _, doc := range []string{"../../README.md", "../../docs/operations.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not give the sink %s", doc, want)
		}
	}
}
