package ems

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/go-json-experiment/json/jsontext"
)

const docExamplesDir = "../../testdata/ems/doc-examples"

func readDocExample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(docExamplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLoadCommandsDecodeDocExamples decodes the documentation examples of
// the load commands through their methods.
func TestLoadCommandsDecodeDocExamples(t *testing.T) {
	f := newFakeEMS(t)
	c := newTestClient(t, Endpoint{Member: "load", BaseURL: f.srv.URL})

	for _, name := range []string{"ems-getBandwidth-apidef17.json", "ems-getBandwidth-docs20.json"} {
		t.Run(name, func(t *testing.T) {
			f.answer(http.StatusOK, readDocExample(t, name))
			got, err := c.GetBandwidth(testCtx(t))
			want := Bandwidth{CurrentIn: 111880.0459, CurrentOut: 147.8026}
			if err != nil || got != want {
				t.Errorf("GetBandwidth = %+v, %v, want %+v, nil", got, err, want)
			}
			if r := f.last(t).RequestURI; r != "/getBandwidth" {
				t.Errorf("request %q, want /getBandwidth", r)
			}
		})
	}
	for _, name := range []string{"ems-httpClientsConnected-apidef17.json", "ems-httpClientsConnected-apidef17-2.json", "ems-httpClientsConnected-docs20.json"} {
		t.Run(name, func(t *testing.T) {
			f.answer(http.StatusOK, readDocExample(t, name))
			got, err := c.HTTPClientsConnected(testCtx(t), "")
			if err != nil || got != 2 {
				t.Errorf("HTTPClientsConnected = %d, %v, want 2, nil", got, err)
			}
		})
	}
	t.Run("httpClientsConnected sends groupName", func(t *testing.T) {
		f.answer(http.StatusOK, readDocExample(t, "ems-httpClientsConnected-apidef17-2.json"))
		if _, err := c.HTTPClientsConnected(testCtx(t), "MyGroupStream"); err != nil {
			t.Fatal(err)
		}
		want := "/httpClientsConnected?params=" + Params{{"groupName", "MyGroupStream"}}.Wire()
		if got := f.last(t).RequestURI; got != want {
			t.Errorf("request %q, want %q", got, want)
		}
	})
	for name, want := range map[string]int{"ems-clientsConnected-apidef17-2.json": 0, "ems-clientsConnected-docs20.json": 3} {
		t.Run(name, func(t *testing.T) {
			f.answer(http.StatusOK, readDocExample(t, name))
			got, err := c.ClientsConnected(testCtx(t), "")
			if err != nil || got != want {
				t.Errorf("ClientsConnected = %d, %v, want %d, nil", got, err, want)
			}
		})
	}
	t.Run("clientsConnected example with the command name before it is refused", func(t *testing.T) {
		f.answer(http.StatusOK, readDocExample(t, "ems-clientsConnected-apidef17.json"))
		_, err := c.ClientsConnected(testCtx(t), "")
		if e, ok := err.(*Error); !ok || e.Kind != KindDecode {
			t.Errorf("ClientsConnected error = %v, want a KindDecode *Error", err)
		}
	})
	for _, name := range []string{"ems-getConnectionsCount-apidef17.json", "ems-getConnectionsCount-docs20.json"} {
		t.Run(name, func(t *testing.T) {
			f.answer(http.StatusOK, readDocExample(t, name))
			got, err := c.GetConnectionsCount(testCtx(t))
			if err != nil || got != 3 {
				t.Errorf("GetConnectionsCount = %d, %v, want 3, nil", got, err)
			}
		})
	}
	for _, name := range []string{"ems-getConnectionsCountLimit-apidef17.json", "ems-getConnectionsCountLimit-docs20.json"} {
		t.Run(name+" (curly quotes, no comma) is a decode error", func(t *testing.T) {
			f.answer(http.StatusOK, readDocExample(t, name))
			_, err := c.GetConnectionsCountLimit(testCtx(t))
			if e, ok := err.(*Error); !ok || e.Kind != KindDecode {
				t.Errorf("GetConnectionsCountLimit error = %v, want a KindDecode *Error", err)
			}
		})
		t.Run(name+" repaired", func(t *testing.T) {
			body := readDocExample(t, name)
			body = bytes.Replace(body, []byte("“cuurent”:3"), []byte(`"current":3,`), 1)
			f.answer(http.StatusOK, body)
			got, err := c.GetConnectionsCountLimit(testCtx(t))
			if want := (ConnectionsLimit{Current: 3}); err != nil || got != want {
				t.Errorf("GetConnectionsCountLimit = %+v, %v, want %+v, nil", got, err, want)
			}
		})
	}
}

// TestEachStream decodes listStreams answers: the documentation's inbound
// pull, the recordings, and an outbound RTMP stream as EMS lists it (the
// payload of a recorded outStreamCreated event).
func TestEachStream(t *testing.T) {
	f := newFakeEMS(t)
	c := newTestClient(t, Endpoint{Member: "load", BaseURL: f.srv.URL})
	collect := func(t *testing.T) []StreamEntry {
		t.Helper()
		var out []StreamEntry
		if err := c.EachStream(testCtx(t), func(e *StreamEntry) error {
			out = append(out, *e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("docs20 inbound pull", func(t *testing.T) {
		f.answer(http.StatusOK, readDocExample(t, "ems-listStreams-docs20.json"))
		want := []StreamEntry{{Name: "testpullStream", Type: "INR", FarIP: "54.239.131.224"}}
		if diff := cmp.Diff(want, collect(t)); diff != "" {
			t.Errorf("EachStream mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("recorded outbound RTMP", func(t *testing.T) {
		var ev struct{ Payload json.RawMessage }
		if err := json.Unmarshal(readFixture(t, "ems-event-outStreamCreated-webuilogs-ONR.json"), &ev); err != nil {
			t.Fatal(err)
		}
		body := append(append([]byte(`{"data":[`), ev.Payload...), `],"description":"Available streams","status":"SUCCESS"}`...)
		f.answer(http.StatusOK, body)
		got := collect(t)
		want := []StreamEntry{{Name: "load1", Type: "ONR", FarIP: "192.168.2.193", UserAgent: "EvoStream Media Server (www.evostream.com) player"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("EachStream mismatch (-want +got):\n%s", diff)
		}
		if p, ok := got[0].PlayerProtocol(); !ok || p != ProtocolRTMP {
			t.Errorf("PlayerProtocol = %q, %v, want rtmp, true", p, ok)
		}
	})
	t.Run("EMS 2.0 bitrates", func(t *testing.T) {
		f.answer(http.StatusOK, readFixture(t, "ems-listStreams-webuilogs-INR5-OFDASH3.json"))
		got := collect(t)
		if got[0].Name != "1" || got[0].Bitrate != 440312+62411.2 {
			t.Errorf("first entry %+v, want stream 1 at 440312+62411.2 bits/s", got[0])
		}
		if got[3].Type != "OFDASH" || got[3].Bitrate != 0 {
			t.Errorf("fourth entry %+v, want an OFDASH writer without bitrate", got[3])
		}
	})
	t.Run("recorded listings agree with ListStreams", func(t *testing.T) {
		for _, name := range []string{"ems-listStreams-webuilogs-INR5-OFDASH3.json", "ems-listStreams-crems-data.json", "ems-listStreams-crems-null.json", "ems-listStreams-rubyhttpcli-success.json"} {
			f.answer(http.StatusOK, readFixture(t, name))
			infos, err := c.ListStreams(testCtx(t))
			if err != nil {
				t.Fatalf("%s: ListStreams: %v", name, err)
			}
			got := collect(t)
			if len(got) != len(infos) {
				t.Fatalf("%s: EachStream gave %d entries, ListStreams %d", name, len(got), len(infos))
			}
			for i := range got {
				if got[i].Name != infos[i].Name || got[i].Type != infos[i].Type {
					t.Errorf("%s [%d]: EachStream %q %q, ListStreams %q %q", name, i, got[i].Name, got[i].Type, infos[i].Name, infos[i].Type)
				}
				if _, player := got[i].PlayerProtocol(); player {
					t.Errorf("%s [%d]: %s counted as a player", name, i, got[i].Type)
				}
			}
		}
	})
}

func TestPlayerProtocol(t *testing.T) {
	for typ, want := range map[string]string{"ONR": "rtmp", "ONR4TS": "rtmp", "ONP": "rtsp", "ONTS": "other", "ONFMP4": "other", "INR": "", "OFHLS": "", "OFDASH": "", "IFR": ""} {
		got, ok := StreamEntry{Type: typ}.PlayerProtocol()
		if got != want || ok != (want != "") {
			t.Errorf("PlayerProtocol(%s) = %q, %v, want %q", typ, got, ok, want)
		}
	}
}

// refEntries decodes listStreams' data with encoding/json, independently
// of streamEntries.
func refEntries(body string) ([]StreamEntry, bool) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return nil, false
	}
	var items []map[string]any
	if err := json.Unmarshal(env["data"], &items); err != nil {
		return nil, false
	}
	text := func(v any) string { s, _ := v.(string); return s }
	rate := func(block any, key string) float64 {
		m, _ := block.(map[string]any)
		f, _ := m[key].(float64)
		return max(f, 0)
	}
	out := []StreamEntry{}
	for _, it := range items {
		out = append(out, StreamEntry{
			Name: text(it["name"]), Type: text(it["type"]), FarIP: text(it["farIp"]), UserAgent: text(it["userAgent"]),
			Bitrate: rate(it["video"], "currVideoBitRate") + rate(it["audio"], "currAudioBitRate"),
		})
	}
	return out, true
}

func decodeEntries(body string) ([]StreamEntry, error) {
	out := []StreamEntry{}
	_, err := walkEnvelope(iotest.OneByteReader(strings.NewReader(body)), func(dec *jsontext.Decoder) error {
		return streamEntries(dec, func(e *StreamEntry) error {
			out = append(out, *e)
			return nil
		})
	})
	return out, err
}

// TestStreamEntriesAgreeWithEncodingJSON: on generated listStreams
// answers (escapes, repeated keys, values of every type), the streaming
// decoder and encoding/json read the same entries.
func TestStreamEntriesAgreeWithEncodingJSON(t *testing.T) {
	value := rapid.SampledFrom([]string{
		`"ONR"`, `"INR"`, `"a\/b"`, `"\u00e9"`, `"EvoStream Media Server (www.evostream.com) player"`, `"streamlb"`,
		`12`, `-3.5`, `1e3`, `null`, `true`, `[]`, `{}`, `{"currVideoBitRate":440312,"currAudioBitRate":62411.2}`,
		`{"currVideoBitRate":"x"}`, `{"currAudioBitRate":-1}`, `{"currVideoBitRate":1,"currVideoBitRate":2}`,
	})
	key := rapid.SampledFrom([]string{"name", "type", "farIp", "userAgent", "video", "audio", "na\\u006de", "other", "Name"})
	rapid.Check(t, func(t *rapid.T) {
		var entries []string
		for range rapid.IntRange(0, 4).Draw(t, "entries") {
			var members []string
			for range rapid.IntRange(0, 6).Draw(t, "members") {
				members = append(members, `"`+key.Draw(t, "key")+`":`+value.Draw(t, "value"))
			}
			entries = append(entries, "{"+strings.Join(members, ",")+"}")
		}
		body := `{"data":[` + strings.Join(entries, ",") + `],"description":"Available streams","status":"SUCCESS"}`
		want, ok := refEntries(body)
		if !ok {
			t.Fatalf("reference decode of %s failed", body)
		}
		got, err := decodeEntries(body)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("%s: mismatch (-encoding/json +streamEntries):\n%s", body, diff)
		}
	})
}

// FuzzStreamEntries: on any answer encoding/json reads as a listStreams
// answer (put in canonical form, one key each: the envelope's own rules
// are FuzzDecodeEnvelope's), the streaming decoder reads the same
// entries.
func FuzzStreamEntries(f *testing.F) {
	for _, name := range []string{"ems-listStreams-webuilogs-INR5-OFDASH3.json", "ems-listStreams-crems-data.json", "ems-listStreams-rubyhttpcli-success.json"} {
		b, err := os.ReadFile(filepath.Join(recordedDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var env map[string]json.RawMessage
		if json.Unmarshal(body, &env) != nil {
			return
		}
		env["status"] = json.RawMessage(`"SUCCESS"`)
		canon, err := json.Marshal(env)
		if err != nil {
			return
		}
		want, ok := refEntries(string(canon))
		if !ok {
			return
		}
		got, err := decodeEntries(string(canon))
		if err != nil {
			t.Fatalf("streamEntries failed where encoding/json did not: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("mismatch (-encoding/json +streamEntries):\n%s", diff)
		}
	})
}
