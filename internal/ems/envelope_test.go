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
	"unicode"

	"github.com/go-json-experiment/json/jsontext"
)

const recordedDir = "../../testdata/ems/recorded"

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
		meta, data, err := decodeWhole(body)
		// Read in place from a buffer, as the client reads a small
		// answer: the same result.
		bmeta, bdata, berr := decodeWholeFrom(bytes.NewBuffer(bytes.Clone(body)))
		if (berr == nil) != (err == nil) || bmeta != meta || !bytes.Equal(bdata, data) {
			t.Fatalf("in place: %+v %q %v; streamed: %+v %q %v", bmeta, bdata, berr, meta, data, err)
		}
		// The envelope: encoding/json's generic decoding is the oracle,
		// of the body but for a byte-order mark and trailing white space
		// of any kind, which the decoder lets pass as EMS's documentation
		// examples end in a no-break space (TestLoadCommandsDecodeDocExamples).
		var env map[string]json.RawMessage
		trimmed := bytes.TrimRightFunc(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")), unicode.IsSpace)
		ok := json.Unmarshal(trimmed, &env) == nil && env != nil && firstByteOf(env["status"]) == '"'
		if ok != (err == nil) {
			t.Fatalf("decodeWhole(%q) error = %v; encoding/json accepts it: %v", body, err, ok)
		}
		if err == nil {
			var want envelopeMeta
			_ = json.Unmarshal(env["status"], &want.Status)
			if firstByteOf(env["description"]) == '"' {
				_ = json.Unmarshal(env["description"], &want.Description)
			}
			if meta != want {
				t.Fatalf("decodeWhole(%q) = %+v, want %+v", body, meta, want)
			}
		}
		// The streamed decoders meet the same bytes; with skipping, a
		// listing fails only when the body is no envelope or its data not
		// a listConfig's.
		n := 0
		_, _ = walkEnvelope(bytes.NewReader(trimmed), func(dec *jsontext.Decoder) error {
			return streamPullConfigs(dec, func(*PullConfig) error { n++; return nil }, func(error) {})
		})
		_, _ = walkEnvelope(bytes.NewReader(trimmed), func(dec *jsontext.Decoder) error {
			return streamEntries(dec, func(*StreamEntry) error { return nil })
		})
		_, _ = walkEnvelope(bytes.NewReader(trimmed), func(dec *jsontext.Decoder) error {
			return streamNames(dec, func([]byte) error { return nil })
		})
		if data == nil {
			return
		}
		var direct PullConfig
		_ = decodePullConfig(newBytesDecoder(data), &direct)
		_, _ = decodePullResult(data)
		var streams []wireStream
		_ = json.Unmarshal(data, &streams)
		var stream wireStream
		_ = json.Unmarshal(data, &stream)
		var pc wirePullConfig
		_ = json.Unmarshal(data, &pc)
	})
}
