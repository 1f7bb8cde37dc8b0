package ems

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

const recordedDir = "../../testdata/ems/recorded"

func TestDecodeEnvelope(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		want     envelope
		wantData string
		wantErr  string
	}{
		{
			name: "success with trailer",
			body: "{\"data\":{\"streamCount\":3},\"description\":\"Active streams count\",\"status\":\"SUCCESS\"}\r\n\r\n",
			want: envelope{Status: "SUCCESS", Description: "Active streams count"}, wantData: `{"streamCount":3}`,
		},
		{
			name: "data null",
			body: `{"data":null,"description":"Available streams","status":"SUCCESS"}`,
			want: envelope{Status: "SUCCESS", Description: "Available streams"},
		},
		{
			name: "fail",
			body: `  {"data":null,"description":"Stream name mystream already taken","status":"FAIL"}  `,
			want: envelope{Status: "FAIL", Description: "Stream name mystream already taken"},
		},
		{
			name: "escaped slashes and byte order mark",
			body: "\xef\xbb\xbf{\"data\":{\"u\":\"rtmp:\\/\\/h\\/x\"},\"description\":\"Bandwidth in B\\/s\",\"status\":\"SUCCESS\"}",
			want: envelope{Status: "SUCCESS", Description: "Bandwidth in B/s"}, wantData: `{"u":"rtmp:\/\/h\/x"}`,
		},
		{name: "no status", body: `{"data":null}`, wantErr: "no status"},
		{name: "empty", body: "\r\n", wantErr: "empty body"},
		{name: "html", body: "<html><body>Access Denied</body></html>", wantErr: "not a JSON object"},
		{name: "truncated", body: `{"data":{"a":1`, wantErr: "unexpected end"},
		{name: "array", body: `[1,2]`, wantErr: "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeEnvelope([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeEnvelope() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeEnvelope() error = %v", err)
			}
			if got.Status != tt.want.Status || got.Description != tt.want.Description || string(got.Data) != tt.wantData {
				t.Errorf("decodeEnvelope() = {%q %q %s}, want {%q %q %s}", got.Status, got.Description, got.Data, tt.want.Status, tt.want.Description, tt.wantData)
			}
		})
	}
}

func TestWalkEnvelope(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    envelopeMeta
		wantErr string
	}{
		{"keys in any order with trailer", "{\"status\":\"SUCCESS\",\"x\":[1,{}],\"description\":\"d\",\"data\":null}\r\n\r\n", envelopeMeta{"SUCCESS", "d"}, ""},
		{"garbage after", `{"status":"SUCCESS","data":null} x`, envelopeMeta{}, "invalid character"},
		{"second value after", `{"status":"SUCCESS","data":null} {}`, envelopeMeta{}, "data after the envelope"},
		{"no status", `{"data":null}`, envelopeMeta{}, "no status"},
		{"not an object", `null`, envelopeMeta{}, "want '{'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := walkEnvelope(json.NewDecoder(strings.NewReader(tt.body)), skip)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("walkEnvelope() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("walkEnvelope() = %+v, %v, want %+v", got, err, tt.want)
			}
		})
	}
}

func TestExcerpt(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"short", "  oops\r\n", "oops"},
		{"control characters", "a\tb\x00c", "a b c"},
		{"cut on a rune boundary", long, strings.Repeat("é", 60)},
		{"invalid UTF-8", "a\xffb", "a?b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := excerpt([]byte(tt.in))
			if got != tt.want {
				t.Errorf("excerpt(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(got) > excerptLen {
				t.Errorf("excerpt(%q) has %d bytes, want at most %d", tt.in, len(got), excerptLen)
			}
		})
	}
}

func TestCappedReader(t *testing.T) {
	t.Run("within the limit", func(t *testing.T) {
		r := newCappedReader(iotest.OneByteReader(strings.NewReader("hello")), 5)
		b, err := io.ReadAll(r)
		if err != nil || string(b) != "hello" {
			t.Fatalf("ReadAll = %q, %v, want hello, nil", b, err)
		}
		if string(r.head) != "hello" || r.readErr != nil {
			t.Errorf("head = %q, readErr = %v", r.head, r.readErr)
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		r := newCappedReader(strings.NewReader("hello!"), 5)
		_, err := io.ReadAll(r)
		if !isTooLarge(err) || !isTooLarge(r.readErr) {
			t.Fatalf("ReadAll error = %v, readErr = %v, want body too large", err, r.readErr)
		}
	})
	t.Run("read error kept", func(t *testing.T) {
		boom := errors.New("reset")
		r := newCappedReader(iotest.ErrReader(boom), 5)
		if _, err := io.ReadAll(r); !errors.Is(err, boom) || !errors.Is(r.readErr, boom) {
			t.Fatalf("ReadAll error = %v, readErr = %v, want %v", err, r.readErr, boom)
		}
	})
}

// recordedResponses returns every recorded EMS answer body: the ems-*.json
// files that are not events, and each line of ems-responses-webuilogs.jsonl,
// keyed by a name, with the command each answers.
func recordedResponses(tb testing.TB) []recordedResponse {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(recordedDir, "ems-*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no recorded fixtures in %s: %v", recordedDir, err)
	}
	var out []recordedResponse
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "ems-event-") {
			continue
		}
		body, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		command, _, _ := strings.Cut(strings.TrimPrefix(name, "ems-"), "-")
		out = append(out, recordedResponse{name: name, command: command, body: body})
	}

	index, err := os.ReadFile(filepath.Join(recordedDir, "ems-responses-webuilogs.index.tsv"))
	if err != nil {
		tb.Fatal(err)
	}
	commands := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(string(index)), "\n") {
		fields := strings.Split(line, "\t")
		if i == 0 || len(fields) < 2 {
			continue
		}
		commands[fields[0]] = fields[1]
	}
	jsonl, err := os.Open(filepath.Join(recordedDir, "ems-responses-webuilogs.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer jsonl.Close()
	sc := bufio.NewScanner(jsonl)
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		key := strconv.Itoa(n)
		command, ok := commands[key]
		if !ok {
			tb.Fatalf("ems-responses-webuilogs.jsonl line %d has no index entry", n)
		}
		out = append(out, recordedResponse{
			name:    "ems-responses-webuilogs.jsonl:" + key,
			command: command,
			body:    bytes.Clone(sc.Bytes()),
		})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

type recordedResponse struct {
	name, command string
	body          []byte
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, r := range recordedResponses(f) {
		f.Add(r.body)
	}
	f.Add([]byte("{\"data\":null,\"description\":\"x\",\"status\":\"FAIL\"}\r\n\r\n"))
	f.Add([]byte(`{"data":{"pull":[{"configId":18446744073709551615,"_x":"y","status":{"current":{"code":4}}}]},"status":"SUCCESS"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		// The member walker also meets unvalidated bytes here.
		var direct PullConfig
		_ = decodePullConfigBytes(body, &direct)

		env, envErr := decodeEnvelope(body)
		var pulls []PullConfig
		meta, walkErr := walkEnvelope(json.NewDecoder(bytes.NewReader(body)), func(dec *json.Decoder) error {
			return decodeConfigData(dec, &pulls)
		})
		if envErr == nil && walkErr == nil && (env.Status != meta.Status || env.Description != meta.Description) {
			t.Fatalf("decodeEnvelope says %q %q, walkEnvelope %q %q", env.Status, env.Description, meta.Status, meta.Description)
		}
		if envErr != nil || env.Data == nil {
			return
		}
		var streams []wireStream
		_ = json.Unmarshal(env.Data, &streams)
		var stream wireStream
		_ = json.Unmarshal(env.Data, &stream)
		var pc wirePullConfig
		_ = json.Unmarshal(env.Data, &pc)
	})
}
