package emsim

import (
	"fmt"
	"testing"
)

// The settings and the parsed URI written directly read as what their
// objects write, for every view, with variables in order or not, with and
// without "_callback", with "swfUrl" in values, and for URIs with a port,
// a user, a password, an IPv6 host, a query and characters JSON escapes.
// A listConfig entry splits around "status" as before.
func TestSettingsWrittenDirectlyAsTheirObjects(t *testing.T) {
	uris := []string{
		"rtmp://127.0.0.1/live/cam",
		"rtmp://127.0.0.1:1935/live/cam",
		"rtsp://user:pa%2Fss@[::1]:554/a/b/c.sdp",
		"rtsp://user@cam.example.org/x",
		"http://cam.example.org/live/cam.m3u8?token=a&b=c&&token=d",
		`rtmp://cam.example.org/live/"q"\t`,
	}
	queries := []string{
		"uri=%s localStreamName=cam",
		"uri=%s localStreamName=cam keepAlive=0 _b=2 _a=1",
		"uri=%s localStreamName=cam _a=1 _b=2 _c=[x,y] tcUrl=rtmp://x/y rangeStart=-2 rangeEnd=4000 ttl=200 emulateUserAgent=streamlb",
		"uri=%s localStreamName=cam _callback=cb _z=last",
		"uri=%s localStreamName=cam _A=first _b=2",
		"uri=%s localStreamName=cam _d=1 _e=\"swfUrl\":x",
	}
	for _, uri := range uris {
		for _, q := range queries {
			p := parseParams(fmt.Sprintf(q, uri))
			set, u, perr := pullSettingsFromParams(p)
			if perr != nil {
				t.Fatalf("%s: %v", fmt.Sprintf(q, uri), perr)
				continue
			}
			set.ConfigID = 77
			for _, view := range []settingsView{viewStored, viewListed, viewResponse} {
				want := string(appendObject(nil, set.object(view, &u)))
				got := string(set.appendJSON(nil, view, &u))
				if got != want {
					t.Errorf("%s, view %d:\n got %s\nwant %s", fmt.Sprintf(q, uri), view, got, want)
				}
			}
			wb, wa := splitAround(set.object(viewListed, nil), "status")
			if gb, ga := splitListed(set); string(gb) != string(wb) || string(ga) != string(wa) {
				t.Errorf("%s: listed around status\n got %s | %s\nwant %s | %s", fmt.Sprintf(q, uri), gb, ga, wb, wa)
			}
			if got, want := string(u.appendJSON(nil)), string(appendObject(nil, u.object())); got != want {
				t.Errorf("%s: uri\n got %s\nwant %s", uri, got, want)
			}
		}
	}
}
