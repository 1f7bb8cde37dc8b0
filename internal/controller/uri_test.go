package controller

import (
	"net/url"
	"testing"

	"pgregory.net/rapid"
)

func TestURIHostAgreesWithURLParse(t *testing.T) {
	for _, raw := range []string{
		"rtmp://10.0.0.5/live/x", "rtmp://10.0.0.5:1935/live/x", "rtmp://h_x.example-1.org/live/a.b", "RTMP://Host/live",
		"rtmp://h:/x", "rtmp://:1935/x", "rtmp:///x", "rtmp://h", "rtmp://[::1]:1935/live/x", "rtmp://u:p@h/live",
		"rtmp://h/live/a%20b", "rtmp://h/live/a%zz", "rtmp://h/live/a b", "rtmp://h:12a/x", "rtmp://h?x", "rtmp://h#x",
		"rtsp://camera.example.invalid/stream", "", "live/x", "://h/x", "rtmp:/h/x", "1rtmp://h/x", "rtmp://h/x\x7f",
	} {
		if got, want := uriHost(raw), referenceURIHost(raw); got != want {
			t.Errorf("uriHost(%q) = %q, want %q", raw, got, want)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		raw := rapid.StringMatching(`[a-zA-Z0-9]{0,5}(://|:/|/)[a-zA-Z0-9._:@\[\]%-]{0,12}(/[a-zA-Z0-9 ._%?#~-]{0,8}){0,3}`).Draw(t, "uri")
		if got, want := uriHost(raw), referenceURIHost(raw); got != want {
			t.Fatalf("uriHost(%q) = %q, want %q", raw, got, want)
		}
	})
}

// referenceURIHost is what uriHost computes, by url.Parse alone.
func referenceURIHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func TestIsPullURI(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		addr := rapid.StringMatching(`[0-9.:]{0,8}`).Draw(t, "addr")
		app := rapid.StringMatching(`[a-z/]{0,5}`).Draw(t, "app")
		name := rapid.StringMatching(`[a-z/]{0,5}`).Draw(t, "name")
		uri := rapid.OneOf(rapid.Just(pullURI(addr, app, name)), rapid.StringMatching(`rtmp://[0-9.:]{0,8}/[a-z/]{0,12}`)).Draw(t, "uri")
		if got, want := isPullURI(uri, addr, app, name), uri == pullURI(addr, app, name); got != want {
			t.Fatalf("isPullURI(%q, %q, %q, %q) = %v, want %v", uri, addr, app, name, got, want)
		}
	})
}
