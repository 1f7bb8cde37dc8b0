package ems

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeEMS is an httptest server that answers every request with the status
// and body last set, and records the requests it got.
type fakeEMS struct {
	srv *httptest.Server

	mu     sync.Mutex
	status int
	body   []byte
	reqs   []seenRequest
}

// seenRequest is what a fakeEMS records of a request.
type seenRequest struct {
	Method        string
	RequestURI    string
	Authorization string
	HasAuth       bool
}

func newFakeEMS(t *testing.T) *fakeEMS {
	t.Helper()
	f := &fakeEMS{status: http.StatusOK}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		status, body := f.status, f.body
		auth, has := r.Header["Authorization"]
		sr := seenRequest{Method: r.Method, RequestURI: r.RequestURI, HasAuth: has}
		if has {
			sr.Authorization = auth[0]
		}
		f.reqs = append(f.reqs, sr)
		f.mu.Unlock()
		// As EMS: text/plain, Connection: close.
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Connection", "close")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEMS) answer(status int, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body = status, body
}

func (f *fakeEMS) last(t *testing.T) seenRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("the server got no request")
	}
	return f.reqs[len(f.reqs)-1]
}

// newTestClient returns a Client for ep whose idle connections are closed
// when the test ends.
func newTestClient(t *testing.T, ep Endpoint) *Client {
	t.Helper()
	c := New(ep, nil)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordedDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ref decodes a body independently of the package (generic maps, exact
// numbers) to check the typed results against.
func ref(t *testing.T, body []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("reference decode: %v", err)
	}
	return m
}

func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func num(v any) string {
	if v == nil {
		return "0"
	}
	return str(v)
}

func truthy(v any) bool {
	b, _ := v.(bool)
	return b
}

// refPull converts a reference-decoded pull configuration.
func refPull(m map[string]any) PullConfig {
	pc := PullConfig{LocalStreamName: str(m["localStreamName"]), URI: str(m["uri"]), KeepAlive: truthy(m["keepAlive"])}
	pc.ConfigID, _ = strconv.ParseUint(num(m["configId"]), 10, 64)
	if st, ok := m["status"].(map[string]any); ok {
		if cur, ok := st["current"].(map[string]any); ok {
			code, _ := strconv.Atoi(num(cur["code"]))
			ts, _ := strconv.ParseInt(num(cur["timestamp"]), 10, 64)
			pc.Status = PullStatus{Code: code, Description: str(cur["description"]), Timestamp: ts}
		}
	}
	for k, v := range m {
		if s, ok := v.(string); ok && strings.HasPrefix(k, "_") {
			if pc.Vars == nil {
				pc.Vars = map[string]string{}
			}
			pc.Vars[k] = s
		}
	}
	return pc
}

func refStream(m map[string]any) StreamInfo {
	s := StreamInfo{Name: str(m["name"]), Type: str(m["type"]), IP: str(m["ip"])}
	s.UniqueID, _ = strconv.ParseUint(num(m["uniqueId"]), 10, 64)
	s.TypeNumeric, _ = strconv.ParseUint(num(m["typeNumeric"]), 10, 64)
	s.ConnectionType, _ = strconv.Atoi(num(m["connectionType"]))
	s.Created, _ = strconv.ParseFloat(num(m["creationTimestamp"]), 64)
	if ps, ok := m["pullSettings"].(map[string]any); ok {
		pc := refPull(ps)
		s.PullSettings = &pc
	}
	return s
}

// TestRecordedResponses decodes every recorded EMS answer through the
// method for its command and compares the result with an independent
// decode of the same body.
func TestRecordedResponses(t *testing.T) {
	f := newFakeEMS(t)
	c := newTestClient(t, Endpoint{Member: "rec", BaseURL: f.srv.URL})
	seen := map[string]int{}
	for _, r := range recordedResponses(t) {
		t.Run(r.name, func(t *testing.T) {
			if !json.Valid(bytes.TrimSpace(r.body)) {
				t.Skip("not valid JSON")
			}
			f.answer(http.StatusOK, r.body)
			m := ref(t, r.body)
			ctx := testCtx(t)
			data := m["data"]
			fail := str(m["status"]) != "SUCCESS"

			var err error
			switch r.command {
			case "listConfig":
				var got []PullConfig
				got, err = c.ListConfig(ctx)
				if err == nil {
					want := []PullConfig{}
					if d, ok := data.(map[string]any); ok {
						pulls, _ := d["pull"].([]any)
						for _, p := range pulls {
							want = append(want, refPull(p.(map[string]any)))
						}
					}
					if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("ListConfig mismatch (-want +got):\n%s", diff)
					}
				}
			case "listStreams":
				var got []StreamInfo
				got, err = c.ListStreams(ctx)
				if err == nil {
					want := []StreamInfo{}
					list, _ := data.([]any)
					for _, s := range list {
						want = append(want, refStream(s.(map[string]any)))
					}
					if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("ListStreams mismatch (-want +got):\n%s", diff)
					}
				}
			case "version":
				var got Version
				got, err = c.Version(ctx)
				if err == nil {
					d := data.(map[string]any)
					want := Version{str(d["banner"]), str(d["branchName"]), str(d["buildDate"]), str(d["buildNumber"]),
						str(d["codeName"]), str(d["hash"]), str(d["releaseNumber"])}
					if got != want {
						t.Errorf("Version = %+v, want %+v", got, want)
					}
				}
			case "pullStream":
				var got PullResult
				got, err = c.PullStream(ctx, PullRequest{URI: "rtmp://10.0.0.5/live/x", LocalStreamName: "x"})
				if err == nil {
					d := data.(map[string]any)
					u := d["uri"].(map[string]any)
					want := PullResult{LocalStreamName: str(d["localStreamName"]), URI: str(u["originalUri"]), KeepAlive: truthy(d["keepAlive"])}
					want.ConfigID, _ = strconv.ParseUint(num(d["configId"]), 10, 64)
					if got != want || got.ConfigID == 0 || got.URI == "" {
						t.Errorf("PullStream = %+v, want %+v", got, want)
					}
				}
			case "shutdownStream":
				err = c.ShutdownStream(ctx, "mystream", true)
			case "listStreamsIds":
				var got []uint64
				got, err = c.ListStreamsIDs(ctx)
				if err == nil {
					var want []uint64
					list, _ := data.([]any)
					for _, v := range list {
						n, _ := strconv.ParseUint(num(v), 10, 64)
						want = append(want, n)
					}
					if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("ListStreamsIDs mismatch (-want +got):\n%s", diff)
					}
				}
			default:
				var got json.RawMessage
				got, err = c.Call(ctx, r.command, nil)
				if err == nil {
					var gotV any
					if got != nil {
						dec := json.NewDecoder(bytes.NewReader(got))
						dec.UseNumber()
						if err := dec.Decode(&gotV); err != nil {
							t.Fatalf("Call data does not decode: %v", err)
						}
					}
					if diff := cmp.Diff(data, gotV); diff != "" {
						t.Errorf("Call data mismatch (-want +got):\n%s", diff)
					}
				}
			}
			if fail {
				desc, ok := IsFail(err)
				if !ok || desc != str(m["description"]) {
					t.Errorf("error = %v, want FAIL %q", err, str(m["description"]))
				}
				return
			}
			if err != nil {
				t.Errorf("%s: %v", r.command, err)
			}
			if want := "/" + r.command; !strings.HasPrefix(f.last(t).RequestURI, want) {
				t.Errorf("request %q, want it to start with %q", f.last(t).RequestURI, want)
			}
		})
		seen[r.command]++
	}
	for _, cmd := range []string{"listConfig", "listStreams", "version", "pullStream", "shutdownStream", "listStreamsIds", "getStreamsCount"} {
		if seen[cmd] == 0 {
			t.Errorf("no recorded %s answer exercised", cmd)
		}
	}
}

func TestSpotChecks(t *testing.T) {
	f := newFakeEMS(t)
	c := newTestClient(t, Endpoint{Member: "spot", BaseURL: f.srv.URL})

	t.Run("listStreams keeps 64-bit integers exact", func(t *testing.T) {
		f.answer(http.StatusOK, readFixture(t, "ems-listStreams-crems-data.json"))
		got, err := c.ListStreams(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		want := []StreamInfo{{
			UniqueID: 2, Name: "mystream", Type: "INR", IP: "192.168.2.121",
			TypeNumeric: 5282249572905648128, ConnectionType: 1, Created: 1460353344514.988,
			PullSettings: &PullConfig{ConfigID: 1, LocalStreamName: "mystream", URI: "rtmp://streaming.cityofboston.gov/live/cable", KeepAlive: true},
		}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ListStreams mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("listStreams null is empty", func(t *testing.T) {
		f.answer(http.StatusOK, readFixture(t, "ems-listStreams-crems-null.json"))
		got, err := c.ListStreams(testCtx(t))
		if err != nil || len(got) != 0 {
			t.Errorf("ListStreams = %v, %v, want empty, nil", got, err)
		}
	})
	t.Run("listConfig pull entries only", func(t *testing.T) {
		f.answer(http.StatusOK, readFixture(t, "ems-listConfig-webuilogs-dash3-pull4.json"))
		got, err := c.ListConfig(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 {
			t.Fatalf("ListConfig returned %d entries, want the 4 pull entries", len(got))
		}
		want := PullConfig{ConfigID: 1, LocalStreamName: "1", URI: "rtmp://webcasting.thefloridachannel.org/live/tvweb1", KeepAlive: true,
			Status: PullStatus{Code: PullStatusStreaming, Description: "Streaming", Timestamp: 1505790289}}
		if diff := cmp.Diff(want, got[0]); diff != "" {
			t.Errorf("ListConfig()[0] mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("listConfig pretty-printed with escaped slashes", func(t *testing.T) {
		f.answer(http.StatusOK, readFixture(t, "ems-listConfig-evocli-pretty.json"))
		got, err := c.ListConfig(testCtx(t))
		if err != nil || len(got) != 1 || got[0].URI != "rtmp://localhost/live/bunny.mp4" || got[0].ConfigID != 2 || got[0].Status.Timestamp != 1512641007 {
			t.Errorf("ListConfig = %+v, %v", got, err)
		}
	})
	t.Run("pullStream answer", func(t *testing.T) {
		f.answer(http.StatusOK, readFixture(t, "ems-pullStream-webuilogs-success.json"))
		got, err := c.PullStream(testCtx(t), PullRequest{URI: "rtmp://webcasting.thefloridachannel.org/live/tvweb1", LocalStreamName: "4"})
		want := PullResult{ConfigID: 7, LocalStreamName: "4", URI: "rtmp://webcasting.thefloridachannel.org/live/tvweb1", KeepAlive: true}
		if err != nil || got != want {
			t.Errorf("PullStream = %+v, %v, want %+v", got, err, want)
		}
	})
	t.Run("version with a numeric buildDate", func(t *testing.T) {
		b, err := os.ReadFile("../../testdata/ems/doc-examples/ems-version-userguide17.json")
		if err != nil {
			t.Fatal(err)
		}
		f.answer(http.StatusOK, b)
		got, err := c.Version(testCtx(t))
		if err != nil || got.BuildDate != "1446515437" || got.ReleaseNumber == "" {
			t.Errorf("Version = %+v, %v, want buildDate 1446515437", got, err)
		}
	})
	t.Run("inbound stream names", func(t *testing.T) {
		f.answer(http.StatusOK, []byte(`{"data":[{"name":"a"},{"name":"b c"}],"description":"Inbound local stream names","status":"SUCCESS"}`+"\r\n\r\n"))
		got, err := c.ListInboundStreamNames(testCtx(t))
		if err != nil || !cmp.Equal(got, []string{"a", "b c"}) {
			t.Errorf("ListInboundStreamNames = %q, %v", got, err)
		}
		f.answer(http.StatusOK, []byte(`{"data":null,"description":"Inbound local stream names","status":"SUCCESS"}`))
		got, err = c.ListInboundStreamNames(testCtx(t))
		if err != nil || len(got) != 0 {
			t.Errorf("ListInboundStreamNames on null = %q, %v, want empty, nil", got, err)
		}
	})
	t.Run("getStreamInfo", func(t *testing.T) {
		f.answer(http.StatusOK, []byte(`{"data":{"name":"x","pullSettings":{"_streamlb_group":"g","configId":9,"uri":"rtmp:\/\/10.0.0.5\/live\/x","keepAlive":false},"type":"INR","typeNumeric":18446744073709551615,"uniqueId":4294967297},"description":"Stream information","status":"SUCCESS"}`))
		got, err := c.GetStreamInfo(testCtx(t), "x")
		want := StreamInfo{UniqueID: 1<<32 + 1, Name: "x", Type: "INR", TypeNumeric: 1<<64 - 1,
			PullSettings: &PullConfig{ConfigID: 9, URI: "rtmp://10.0.0.5/live/x", Vars: map[string]string{"_streamlb_group": "g"}}}
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetStreamInfo mismatch (-want +got):\n%s", diff)
		}
		if p, _ := DecodeParams(decodeWire(t, f.last(t).RequestURI)); !cmp.Equal(p, Params{{"localStreamName", "x"}}) {
			t.Errorf("GetStreamInfo sent %q", p)
		}
	})
	t.Run("isStreamRunning", func(t *testing.T) {
		for _, want := range []bool{true, false} {
			f.answer(http.StatusOK, fmt.Appendf(nil, `{"data":{"Running":%v},"description":"Stream status:","status":"SUCCESS"}`, want))
			got, err := c.IsStreamRunning(testCtx(t), "x")
			if err != nil || got != want {
				t.Errorf("IsStreamRunning = %v, %v, want %v", got, err, want)
			}
		}
	})
	t.Run("getConfigInfo", func(t *testing.T) {
		f.answer(http.StatusOK, []byte(`{"data":{"_callback":null,"_n":5,"_streamlb_origin":"a","configId":9007199254740993,"keepAlive":false,"localStreamName":"x","status":{"current":{"code":5,"description":"Connection failed","timestamp":1505790289,"uniqueStreamId":0}},"uri":"rtmp:\/\/a\/live\/x"},"description":"Configuration Info","status":"SUCCESS"}`))
		got, err := c.GetConfigInfo(testCtx(t), 9007199254740993)
		want := PullConfig{ConfigID: 9007199254740993, LocalStreamName: "x", URI: "rtmp://a/live/x",
			Status: PullStatus{Code: PullStatusConnectionFailed, Description: "Connection failed", Timestamp: 1505790289},
			Vars:   map[string]string{"_streamlb_origin": "a"}}
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetConfigInfo mismatch (-want +got):\n%s", diff)
		}
		if p, _ := DecodeParams(decodeWire(t, f.last(t).RequestURI)); !cmp.Equal(p, Params{{"id", "9007199254740993"}}) {
			t.Errorf("GetConfigInfo sent %q", p)
		}
	})
	t.Run("removeConfig and shutdownStream parameters", func(t *testing.T) {
		f.answer(http.StatusOK, []byte(`{"data":null,"description":"Configuration terminated","status":"SUCCESS"}`))
		if err := c.RemoveConfig(testCtx(t), 5); err != nil {
			t.Fatal(err)
		}
		if got := f.last(t).RequestURI; got != "/removeConfig?params=aWQ9NQ==" {
			t.Errorf("RemoveConfig requested %q, want /removeConfig?params=aWQ9NQ==", got)
		}
		f.answer(http.StatusOK, readFixture(t, "ems-shutdownStream-crems-data.json"))
		if err := c.ShutdownStream(testCtx(t), "my stream", false); err != nil {
			t.Fatal(err)
		}
		if p, _ := DecodeParams(decodeWire(t, f.last(t).RequestURI)); !cmp.Equal(p, Params{{"localStreamName", "my stream"}, {"permanently", "0"}}) {
			t.Errorf("ShutdownStream sent %q", p)
		}
	})
}

// decodeWire extracts the parameter string from a request URI the way EMS
// does: the raw value of the first query parameter, base64-decoded.
func decodeWire(t *testing.T, requestURI string) string {
	t.Helper()
	_, q, ok := strings.Cut(requestURI, "?")
	if !ok {
		_, q, ok = strings.Cut(requestURI, "%3f")
	}
	if !ok {
		t.Fatalf("request %q has no parameters", requestURI)
	}
	first, _, _ := strings.Cut(q, "&")
	_, v, _ := strings.Cut(first, "=")
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		t.Fatalf("parameters of %q are not standard base64: %v", requestURI, err)
	}
	return string(b)
}

func TestErrors(t *testing.T) {
	const password = "pa55-w0rd"
	f := newFakeEMS(t)
	direct := newTestClient(t, Endpoint{Member: "a", BaseURL: f.srv.URL})
	proxy := newTestClient(t, Endpoint{Member: "b", BaseURL: f.srv.URL + "/apiproxy", Proxy: true, User: "admin", Password: password})

	tests := []struct {
		name       string
		client     *Client
		status     int
		body       []byte
		call       func(context.Context, *Client) error
		kind       Kind
		retryable  bool
		wantDesc   string
		wantInText []string
		check      func(t *testing.T, err error)
	}{
		{
			name: "already taken", client: direct, status: 200, body: readFixture(t, "ems-pullStream-httpcli-fail.json"),
			call: func(ctx context.Context, c *Client) error {
				_, err := c.PullStream(ctx, PullRequest{URI: "rtmp://x/live/mystream", LocalStreamName: "mystream"})
				return err
			},
			kind: KindFail, wantDesc: "Stream name mystream already taken",
			wantInText: []string{`ems member "a": pullStream: FAIL: Stream name mystream already taken`},
			check: func(t *testing.T, err error) {
				if !IsAlreadyTaken(err) {
					t.Errorf("IsAlreadyTaken(%v) = false", err)
				}
			},
		},
		{
			name: "unknown command", client: direct, status: 200, body: readFixture(t, "ems-unknownCommand-globocom-fail-nulldata.json"),
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Call(ctx, "non_existant_service", nil)
				return err
			},
			kind: KindFail, wantDesc: "command non_existant_service not known. Type help for list of commands",
			check: func(t *testing.T, err error) {
				if IsAlreadyTaken(err) {
					t.Errorf("IsAlreadyTaken(%v) = true", err)
				}
			},
		},
		{
			name: "other FAIL", client: direct, status: 200, body: readFixture(t, "ems-createDASHStream-webuilogs-fail.json"),
			call: func(ctx context.Context, c *Client) error { _, err := c.Call(ctx, "createDASHStream", nil); return err },
			kind: KindFail, wantDesc: "Unable to create DASH stream",
		},
		{
			name: "proxy 401", client: proxy, status: 401, body: []byte("<html><head><title>Web Server</title></head><body>Access Denied</body></html>"),
			call: func(ctx context.Context, c *Client) error { _, err := c.ListConfig(ctx); return err },
			kind: KindUnauthorized, wantInText: []string{`wrong credentials for member "b"`, `ems member "b": listConfig`},
			check: func(t *testing.T, err error) {
				if !IsUnauthorized(err) {
					t.Errorf("IsUnauthorized(%v) = false", err)
				}
			},
		},
		{
			name: "direct 401 is plain HTTP", client: direct, status: 401, body: []byte("no"),
			call: func(ctx context.Context, c *Client) error { _, err := c.Version(ctx); return err },
			kind: KindHTTP, wantDesc: "no",
			check: func(t *testing.T, err error) {
				if IsUnauthorized(err) {
					t.Errorf("IsUnauthorized(%v) = true for a direct endpoint", err)
				}
			},
		},
		{
			name: "500", client: proxy, status: 500, body: []byte("internal error"),
			call: func(ctx context.Context, c *Client) error { _, err := c.ListStreams(ctx); return err },
			kind: KindHTTP, retryable: true, wantDesc: "internal error", wantInText: []string{"HTTP 500 Internal Server Error"},
		},
		{
			name: "503 while streaming listConfig", client: direct, status: 503, body: nil,
			call: func(ctx context.Context, c *Client) error { _, err := c.ListConfig(ctx); return err },
			kind: KindHTTP, retryable: true,
		},
		{
			name: "404", client: proxy, status: 404, body: []byte("File not found"),
			call: func(ctx context.Context, c *Client) error { _, err := c.Version(ctx); return err },
			kind: KindHTTP, wantDesc: "File not found",
		},
		{
			name: "garbage", client: direct, status: 200, body: []byte("<html>" + strings.Repeat("garbage ", 100)),
			call: func(ctx context.Context, c *Client) error { _, err := c.ListStreams(ctx); return err },
			kind: KindDecode, wantDesc: excerpt([]byte("<html>" + strings.Repeat("garbage ", 100))),
			wantInText: []string{`body starts "<html>garbage`},
		},
		{
			name: "garbage while streaming listConfig", client: direct, status: 200, body: []byte(`{"data":{"pull":[{"configId":"x"}]}}`),
			call: func(ctx context.Context, c *Client) error { _, err := c.ListConfig(ctx); return err },
			kind: KindDecode, wantDesc: `{"data":{"pull":[{"configId":"x"}]}}`,
		},
		{
			name: "wrong data shape", client: direct, status: 200, body: []byte(`{"data":{"a":1},"description":"Available streams","status":"SUCCESS"}`),
			call: func(ctx context.Context, c *Client) error { _, err := c.ListStreams(ctx); return err },
			kind: KindDecode,
		},
		{
			name: "invalid request", client: direct, status: 200, body: nil,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.PullStream(ctx, PullRequest{URI: "rtmp://h/live/x", Vars: map[string]string{"bad": "1"}})
				return err
			},
			kind: KindRequest,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.answer(tt.status, tt.body)
			err := tt.call(testCtx(t), tt.client)
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("error = %v (%T), want *Error", err, err)
			}
			if e.Kind != tt.kind {
				t.Errorf("Kind = %v, want %v (error %v)", e.Kind, tt.kind, err)
			}
			if got := IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v", got, tt.retryable)
			}
			if tt.wantDesc != "" && e.Description != tt.wantDesc {
				t.Errorf("Description = %q, want %q", e.Description, tt.wantDesc)
			}
			if len(e.Description) > excerptLen && e.Kind != KindFail {
				t.Errorf("Description has %d bytes, want at most %d", len(e.Description), excerptLen)
			}
			for _, s := range tt.wantInText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			assertNoSecret(t, err, password)
			if tt.check != nil {
				tt.check(t, err)
			}
		})
	}
}

// assertNoSecret checks that neither the error text nor its formatted forms
// contain the secret or the Basic authorization of it.
func assertNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	basic := base64.StdEncoding.EncodeToString([]byte("admin:" + secret))
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		if strings.Contains(s, secret) || strings.Contains(s, basic) {
			t.Errorf("error text leaks the credentials: %s", s)
		}
	}
}

func TestTransportErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := newTestClient(t, Endpoint{Member: "gone", BaseURL: "http://" + addr, Proxy: true, User: "admin", Password: "s3cret"})
		_, err = c.ListConfig(testCtx(t))
		e, ok := errors.AsType[*Error](err)
		if !ok || e.Kind != KindTransport || !IsRetryable(err) {
			t.Fatalf("error = %v, want a retryable transport error", err)
		}
		if !strings.HasPrefix(err.Error(), `ems member "gone": listConfig: `) || strings.Contains(err.Error(), "params") {
			t.Errorf("error text = %q", err)
		}
		assertNoSecret(t, err, "s3cret")
	})
	t.Run("deadline", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		c := newTestClient(t, Endpoint{Member: "slow", BaseURL: srv.URL})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Version(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) {
			t.Fatalf("error = %v, want a retryable deadline error", err)
		}
	})
	t.Run("body cut short", func(t *testing.T) {
		body := readFixture(t, "ems-listConfig-webuilogs-pull3.json")
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body[:len(body)/2])
		}))
		t.Cleanup(srv.Close)
		c := newTestClient(t, Endpoint{Member: "cut", BaseURL: srv.URL})
		for _, call := range []func(context.Context) error{
			func(ctx context.Context) error { _, err := c.ListConfig(ctx); return err },
			func(ctx context.Context) error { _, err := c.Call(ctx, "listConfig", nil); return err },
		} {
			err := call(testCtx(t))
			if e, ok := errors.AsType[*Error](err); !ok || e.Kind != KindTransport {
				t.Errorf("error = %v, want a transport error", err)
			}
		}
	})
	t.Run("body too large", func(t *testing.T) {
		f := newFakeEMS(t)
		f.answer(http.StatusOK, readFixture(t, "ems-listConfig-webuilogs-pull3.json"))
		c := newTestClient(t, Endpoint{Member: "big", BaseURL: f.srv.URL})
		c.maxBody = 1000
		for _, call := range []func(context.Context) error{
			func(ctx context.Context) error { _, err := c.ListConfig(ctx); return err },
			func(ctx context.Context) error { _, err := c.Call(ctx, "listConfig", nil); return err },
		} {
			err := call(testCtx(t))
			if e, ok := errors.AsType[*Error](err); !ok || e.Kind != KindDecode || !strings.Contains(err.Error(), "exceeds 1000 bytes") {
				t.Errorf("error = %v, want a decode error for a body over 1000 bytes", err)
			}
		}
	})
	t.Run("invalid base URL", func(t *testing.T) {
		for _, base := range []string{"", "ftp://h", "http://u:hunter2@[::1", "http://h/?x=1", "/relative"} {
			c := newTestClient(t, Endpoint{Member: "m", BaseURL: base})
			_, err := c.Version(testCtx(t))
			if e, ok := errors.AsType[*Error](err); !ok || e.Kind != KindRequest || IsRetryable(err) {
				t.Errorf("BaseURL %q: error = %v, want a terminal request error", base, err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %v", err)
			}
		}
	})
}

func TestRequestShape(t *testing.T) {
	f := newFakeEMS(t)
	f.answer(http.StatusOK, readFixture(t, "ems-pullStream-webuilogs-success.json"))
	const user, password = "admin", "pa55:w0rd"
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))

	// A request whose base64 text holds '+' and '/', which must reach EMS
	// unescaped.
	var req PullRequest
	for i := range 1000 {
		req = PullRequest{URI: fmt.Sprintf("rtmp://10.0.0.5/live/cam%d?x=~>>", i), LocalStreamName: fmt.Sprintf("cam %d", i)}
		p, _ := req.Params()
		if w := p.Wire(); strings.Contains(w, "+") && strings.Contains(w, "/") {
			break
		}
	}
	params, _ := req.Params()
	wire := params.Wire()
	if !strings.Contains(wire, "+") || !strings.Contains(wire, "/") {
		t.Fatalf("no test request found whose base64 holds '+' and '/'")
	}

	tests := []struct {
		name     string
		ep       Endpoint
		wantURI  string
		wantAuth string
	}{
		{"direct", Endpoint{Member: "a", BaseURL: f.srv.URL, User: user, Password: password},
			"/pullStream?params=" + wire, ""},
		{"direct with trailing slash", Endpoint{Member: "a", BaseURL: f.srv.URL + "/"},
			"/pullStream?params=" + wire, ""},
		{"proxy", Endpoint{Member: "b", BaseURL: f.srv.URL + "/apiproxy", Proxy: true, User: user, Password: password},
			"/apiproxy/pullStream?params=" + wire, wantAuth},
		{"proxy, EMS 1.7 encoded query", Endpoint{Member: "c", BaseURL: f.srv.URL + "/apiproxy/", Proxy: true, User: user, Password: password, EncodedQuery: true},
			"/apiproxy/pullStream%3fparams=" + wire, wantAuth},
		{"proxy with credentials in the base URL", Endpoint{Member: "d", BaseURL: strings.Replace(f.srv.URL, "//", "//admin:pa55%3Aw0rd@", 1) + "/apiproxy", Proxy: true},
			"/apiproxy/pullStream?params=" + wire, wantAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, tt.ep)
			if _, err := c.PullStream(testCtx(t), req); err != nil {
				t.Fatal(err)
			}
			got := f.last(t)
			if got.Method != http.MethodGet {
				t.Errorf("method = %s, want GET", got.Method)
			}
			if got.RequestURI != tt.wantURI {
				t.Errorf("RequestURI = %q, want %q", got.RequestURI, tt.wantURI)
			}
			if tt.wantAuth == "" && got.HasAuth {
				t.Errorf("Authorization header sent to a direct endpoint: %q", got.Authorization)
			}
			if got.Authorization != tt.wantAuth {
				t.Errorf("Authorization = %q, want %q", got.Authorization, tt.wantAuth)
			}
			if strings.Contains(got.RequestURI, user) || strings.Contains(got.RequestURI, "w0rd") {
				t.Errorf("credentials in the request URI %q", got.RequestURI)
			}
			if p, err := DecodeParams(decodeWire(t, got.RequestURI)); err != nil || !cmp.Equal(p, params) {
				t.Errorf("EMS would read %q, %v, want %q", p, err, params)
			}
		})
	}

	t.Run("no parameters, no query", func(t *testing.T) {
		f.answer(http.StatusOK, readFixture(t, "ems-listConfig-webuilogs-pull3.json"))
		for _, ep := range []Endpoint{{BaseURL: f.srv.URL}, {BaseURL: f.srv.URL + "/apiproxy", Proxy: true, EncodedQuery: true}} {
			c := newTestClient(t, ep)
			if _, err := c.ListConfig(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			want := strings.TrimPrefix(ep.BaseURL, f.srv.URL) + "/listConfig"
			if got := f.last(t).RequestURI; got != want {
				t.Errorf("RequestURI = %q, want %q", got, want)
			}
		}
	})
	t.Run("refused parameters are not sent", func(t *testing.T) {
		c := newTestClient(t, Endpoint{BaseURL: f.srv.URL})
		f.mu.Lock()
		before := len(f.reqs)
		f.mu.Unlock()
		bad := []Params{
			{{"localStreamName", "x\nremoveConfig id=1"}},
			{{"cmd", "removeConfig"}},
			{{"k", strings.Repeat("v", maxCommandLine)}},
		}
		for _, p := range bad {
			if _, err := c.Call(testCtx(t), "getStreamInfo", p); !errors.Is(err, err) || err == nil {
				t.Errorf("Call with %q succeeded", p)
			} else if e, _ := errors.AsType[*Error](err); e.Kind != KindRequest {
				t.Errorf("Call with %.40q: kind %v, want request", p, e.Kind)
			}
		}
		for _, cmd := range []string{"", "list/Config", "a?b", "a b", "list%2f"} {
			if _, err := c.Call(testCtx(t), cmd, nil); err == nil {
				t.Errorf("Call(%q) succeeded", cmd)
			}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.reqs) != before {
			t.Errorf("%d refused requests reached the server", len(f.reqs)-before)
		}
	})
	t.Run("member name defaults to the host", func(t *testing.T) {
		c := newTestClient(t, Endpoint{BaseURL: "http://admin:pw@127.0.0.1:1/apiproxy", Proxy: true})
		if _, err := c.Call(testCtx(t), "bad cmd", nil); err == nil || !strings.Contains(err.Error(), `ems member "127.0.0.1:1"`) || strings.Contains(err.Error(), "pw") {
			t.Errorf("error = %v, want it to name 127.0.0.1:1 without the password", err)
		}
		if got := c.Endpoint().BaseURL; got != "http://admin:pw@127.0.0.1:1/apiproxy" {
			t.Errorf("Endpoint().BaseURL = %q, want it as given", got)
		}
	})
}

func TestConcurrentCalls(t *testing.T) {
	f := newFakeEMS(t)
	f.answer(http.StatusOK, readFixture(t, "ems-listConfig-webuilogs-dash3-pull4.json"))
	c := newTestClient(t, Endpoint{Member: "m", BaseURL: f.srv.URL})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			got, err := c.ListConfig(ctx)
			if err == nil && len(got) != 4 {
				err = fmt.Errorf("got %d entries, want 4", len(got))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestBigListConfig(t *testing.T) {
	const n = 10000
	body := genListConfig(n)
	f := newFakeEMS(t)
	f.answer(http.StatusOK, body)
	c := newTestClient(t, Endpoint{Member: "big", BaseURL: f.srv.URL})
	got, err := c.ListConfig(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("ListConfig returned %d entries, want %d", len(got), n)
	}
	for _, i := range []int{0, 1, 4999, n - 1} {
		if diff := cmp.Diff(genPullConfig(i), got[i]); diff != "" {
			t.Errorf("entry %d mismatch (-want +got):\n%s", i, diff)
		}
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		err    *Error
		want   string
		reason string
	}{
		{&Error{Member: "b", Command: "pullStream", Kind: KindFail, Description: "Stream name x already taken"},
			`ems member "b": pullStream: FAIL: Stream name x already taken`, "fail"},
		{&Error{Member: "b", Command: "listConfig", Kind: KindUnauthorized, StatusCode: 401},
			`ems member "b": listConfig: wrong credentials for member "b" (API proxy answered 401)`, "unauthorized"},
		{&Error{Member: "b", Command: "version", Kind: KindHTTP, StatusCode: 502, Description: "bad gateway"},
			`ems member "b": version: HTTP 502 Bad Gateway: "bad gateway"`, "http_5xx"},
		{&Error{Member: "b", Command: "version", Kind: KindTransport, Err: errors.New("connection refused")},
			`ems member "b": version: connection refused`, "transport"},
		{&Error{Member: "b", Command: "version", Kind: KindDecode, Err: errors.New("bad"), Description: "<html>"},
			`ems member "b": version: decode response: bad (body starts "<html>")`, "decode"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if got := tt.err.Reason(); got != tt.reason {
			t.Errorf("Reason() = %q, want %q", got, tt.reason)
		}
	}
	wrapped := fmt.Errorf("replicate: %w", &Error{Kind: KindHTTP, StatusCode: 503})
	if !IsRetryable(wrapped) {
		t.Errorf("IsRetryable(%v) = false through wrapping", wrapped)
	}
	if IsRetryable(errors.New("plain")) || IsUnauthorized(nil) || IsAlreadyTaken(nil) {
		t.Errorf("predicates true for a foreign error")
	}
}

// An entry of listConfig that does not decode is skipped, and said so,
// when the caller asks; the others still arrive.
func TestEachPullConfigSkipsAnUndecodableEntry(t *testing.T) {
	f := newFakeEMS(t)
	c := newTestClient(t, Endpoint{Member: "skip", BaseURL: f.srv.URL})
	f.answer(http.StatusOK, []byte(`{"data":{"pull":[{"configId":1,"localStreamName":"a","uri":"rtmp://h/live/a"},`+
		`{"configId":"two","localStreamName":"b","uri":"rtmp://h/live/b"},`+
		`{"configId":3,"localStreamName":"c","uri":"rtmp://h/live/c"}]},"description":"Run-time configuration","status":"SUCCESS"}`))
	var names []string
	var skipped []error
	err := c.EachPullConfigSkipping(testCtx(t), func(pc *PullConfig) error {
		names = append(names, pc.LocalStreamName)
		return nil
	}, func(err error) { skipped = append(skipped, err) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "c"}; !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
	if len(skipped) != 1 {
		t.Errorf("skipped %v, want one error", skipped)
	}
	if err := c.EachPullConfig(testCtx(t), func(*PullConfig) error { return nil }); err == nil {
		t.Error("EachPullConfig accepted an undecodable entry")
	}
}
