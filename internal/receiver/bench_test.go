package receiver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkDecodeEventKinds decodes recorded events of the kinds a group's
// sink receives most: an inStreamCreated of a pulled stream (a source), the
// same event of a replica (pullSettings carrying streamlb's tag, as every
// replica's is), and a small event that is only acknowledged.
func BenchmarkDecodeEventKinds(b *testing.B) {
	created, err := os.ReadFile(filepath.Join(recordedDir, "ems-event-inStreamCreated-webuilogs-INR.json"))
	if err != nil {
		b.Fatal(err)
	}
	replica := bytes.Replace(created, []byte(`"pullSettings":{`),
		[]byte(`"pullSettings":{"_streamlb_group":"bench","_streamlb_origin":"127.1.2.3",`), 1)
	if bytes.Equal(replica, created) {
		b.Fatal("fixture has no pullSettings")
	}
	other, err := os.ReadFile(filepath.Join(recordedDir, "ems-event-webRtcServiceStarted-webuilogs.json"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		body []byte
		vars bool
	}{
		{"inStreamCreated", created, false},
		{"inStreamCreated_replica", replica, true},
		{"webRtcServiceStarted", other, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				ev, err := DecodeEvent(bc.body)
				if err != nil {
					b.Fatal(err)
				}
				if bc.vars && (ev.Stream == nil || ev.Stream.Vars["_streamlb_group"] != "bench") {
					b.Fatalf("decoded %+v", ev.Stream)
				}
			}
		})
	}
}

// BenchmarkServeEvent answers one recorded inStreamCreated and one small
// event as the sink does, body reading included; the connection and the
// request's parsing are net/http's, outside the figure.
func BenchmarkServeEvent(b *testing.B) {
	r := New(Options{Sink: SinkFunc(func(StreamEvent) {})})
	for _, kind := range []string{"inStreamCreated-webuilogs-INR", "webRtcServiceStarted-webuilogs"} {
		body, err := os.ReadFile(filepath.Join(recordedDir, "ems-event-"+kind+".json"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(strings.Split(kind, "-")[0], func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			rd := bytes.NewReader(body)
			for b.Loop() {
				rd.Reset(body)
				req := httptest.NewRequest(http.MethodPost, routePrefix, rd)
				req.RemoteAddr = "127.0.0.9:40000"
				w := httptest.NewRecorder()
				r.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("answer %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
