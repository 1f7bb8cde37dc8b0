package ems

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// genPullConfig is the i-th pull entry of genListConfig, as ListConfig
// should return it.
func genPullConfig(i int) PullConfig {
	pc := PullConfig{
		ConfigID:        uint64(i + 1),
		LocalStreamName: fmt.Sprintf("stream-%05d", i),
		URI:             fmt.Sprintf("rtmp://10.0.%d.%d/live/stream-%05d", i/250%250, i%250+1, i),
		KeepAlive:       i%3 != 0,
		Status:          PullStatus{Code: i % 6, Description: []string{"Streaming", "Connecting", "Waiting for stream", "Connected", "Disconnected", "Connection failed"}[i%6], Timestamp: 1505790289 + int64(i)},
	}
	if i%2 == 0 {
		pc.Vars = map[string]string{"_streamlb_group": "g1", "_streamlb_origin": "origin-a"}
	}
	return pc
}

// genListConfig returns a listConfig answer with n pull entries, in the
// shape EMS 2.0 writes (sorted keys, escaped slashes, other categories,
// status with current and previous, trailing CRLFs).
func genListConfig(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"data":{"dash":[{"bandwidth":0,"chunkBaseName":"dummy","configId":900001,"groupName":"d01","groupTargetFolder":"F:\/EVOSTREAMMS\/evo-webroot\\d01\\","keepAlive":true,"localStreamName":"1","operationType":6,"status":{"current":{"code":0,"description":"Streaming","timestamp":1505790325,"uniqueStreamId":4}}}],"hds":[],"hls":[],"metalistener":[],"mss":[],"process":[],"pull":[`)
	esc := func(s string) string { return strings.ReplaceAll(s, "/", `\/`) }
	for i := range n {
		pc := genPullConfig(i)
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"_callback":null,`)
		if pc.Vars != nil {
			fmt.Fprintf(&b, `"_streamlb_group":%q,"_streamlb_origin":%q,`, pc.Vars["_streamlb_group"], pc.Vars["_streamlb_origin"])
		}
		fmt.Fprintf(&b, `"audioCodecBytes":"","configId":%d,"emulateUserAgent":"EvoStream Media Server (www.evostream.com) player","forceTcp":false,"httpProxy":"","httpStreamType":"ts","isAudio":true,"keepAlive":%t,"localStreamName":%q,"operationType":1,"pageUrl":"","ppsBytes":"","rangeEnd":-1,"rangeStart":-2,"rtcpDetectionInterval":10,"saveToConfig":true,"sendDummyPayload":false,"sendRenewStream":false,"spsBytes":"","ssmIp":"",`,
			pc.ConfigID, pc.KeepAlive, pc.LocalStreamName)
		fmt.Fprintf(&b, `"status":{"current":{"code":%d,"description":%q,"timestamp":%d,"uniqueStreamId":%d},"previous":{"code":3,"description":"Connected","timestamp":%d,"uniqueStreamId":0}},`,
			pc.Status.Code, pc.Status.Description, pc.Status.Timestamp, i+1, pc.Status.Timestamp-1)
		fmt.Fprintf(&b, `"swfUrl":"","tcUrl":"","tos":256,"ttl":256,"uri":"%s","videoSourceIndex":"high"}`, esc(pc.URI))
	}
	b.WriteString(`],"push":[],"record":[],"webrtc":[]},"description":"Run-time configuration","status":"SUCCESS"}` + "\r\n\r\n")
	return b.Bytes()
}

func BenchmarkParamsEncode(b *testing.B) {
	req := PullRequest{
		URI:             "rtmp://10.0.0.5/live/some stream,with=escapes",
		LocalStreamName: "some stream,with=escapes",
		Vars:            map[string]string{"_streamlb_group": "g1", "_streamlb_origin": "origin-a"},
	}
	no := false
	req.KeepAlive = &no
	p, err := req.Params()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Wire()
	}
}

// BenchmarkDecodeListConfig decodes listConfig answers of 10,000 and
// 50,000 entries as the client does: streamed, entry by entry. It reports
// the time per entry.
func BenchmarkDecodeListConfig(b *testing.B) {
	for _, entries := range []int{10000, 50000} {
		b.Run(fmt.Sprintf("entries=%d", entries), func(b *testing.B) {
			body := genListConfig(entries)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				_, err := walkEnvelope(bytes.NewReader(body), func(dec *jsontext.Decoder) error {
					return streamPullConfigs(dec, func(*PullConfig) error { n++; return nil }, nil)
				})
				if err != nil || n != entries {
					b.Fatalf("decoded %d entries: %v", n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(entries), "ns/entry")
		})
	}
}

// BenchmarkClientListConfig lists 50,000 pull configurations over
// loopback as the balancer does (EachPullConfigSkipping), from a server
// that writes a prepared answer: the HTTP path and the decoding.
func BenchmarkClientListConfig(b *testing.B) {
	const entries = 50000
	body := genListConfig(entries)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Connection", "close")
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	c := New(Endpoint{Member: "big", BaseURL: srv.URL}, nil)
	b.Cleanup(c.CloseIdleConnections)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		err := c.EachPullConfigSkipping(b.Context(), func(*PullConfig) error { n++; return nil }, func(error) {})
		if err != nil || n != entries {
			b.Fatalf("listed %d entries: %v", n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/entries, "ns/entry")
}

// BenchmarkDecodeInboundNames decodes a listInboundStreamNames answer of
// 10,000 names.
func BenchmarkDecodeInboundNames(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"data":[`)
	for i := range 10000 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"name":"stream-%05d"}`, i)
	}
	body.WriteString(`],"description":"Inbound local stream names","status":"SUCCESS"}` + "\r\n\r\n")
	b.SetBytes(int64(body.Len()))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		_, err := walkEnvelope(bytes.NewReader(body.Bytes()), func(dec *jsontext.Decoder) error {
			return streamNames(dec, func([]byte) error { n++; return nil })
		})
		if err != nil || n != 10000 {
			b.Fatalf("decoded %d names: %v", n, err)
		}
	}
}

// BenchmarkDecodePullResult decodes a recorded pullStream answer.
func BenchmarkDecodePullResult(b *testing.B) {
	body, err := os.ReadFile(filepath.Join(recordedDir, "ems-pullStream-webuilogs-success.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		_, data, err := decodeWhole(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := decodePullResult(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEnvelope(b *testing.B) {
	body := bytes.Join([][]byte{
		[]byte(`{"data":[`),
		bytes.Repeat([]byte(`{"appName":"evostreamms","connectionType":1,"ip":"192.168.2.196","name":"1","pullSettings":{"_callback":null,"configId":1,"keepAlive":true,"localStreamName":"1","uri":"rtmp:\/\/webcasting.thefloridachannel.org\/live\/tvweb1"},"type":"INR","typeNumeric":5282249572905648128,"uniqueId":1},`), 20),
		[]byte(`{"name":"last"}],"description":"Available streams","status":"SUCCESS"}` + "\r\n\r\n"),
	}, nil)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		meta, _, err := decodeWhole(body)
		if err != nil || meta.Status != statusSuccess {
			b.Fatal(err)
		}
	}
}
