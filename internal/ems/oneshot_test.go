package ems

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingTransport returns an http.Transport whose dials are counted.
func countingTransport(dials *atomic.Int64) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	}
}

// versionServer answers every call with a version envelope, closing the
// connection after each answer when closeEach is set, as EMS does.
func versionServer(t *testing.T, closeEach bool, delay time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if closeEach {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, `{"data":{"releaseNumber":"2.0.0"},"description":"Version","status":"SUCCESS"}`+"\r\n\r\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCloseTransport(t *testing.T) {
	tests := []struct {
		name      string
		closeEach bool
		wantDials int64 // for 10 sequential calls
	}{
		{"a server that closes gets one connection per call", true, 10},
		{"a server that keeps connections gets them reused", false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := versionServer(t, tt.closeEach, 0)
			var dials atomic.Int64
			c := New(Endpoint{Member: "m", BaseURL: srv.URL}, &http.Client{Transport: newCloseTransport(countingTransport(&dials))})
			t.Cleanup(c.CloseIdleConnections)
			if _, ok := c.hc.Transport.(*closeTransport); !ok {
				t.Fatalf("transport = %T, want *closeTransport", c.hc.Transport)
			}
			for range 10 {
				v, err := c.Version(testCtx(t))
				if err != nil || v.ReleaseNumber != "2.0.0" {
					t.Fatalf("Version() = %+v, %v", v, err)
				}
			}
			// The first call to a keep-alive server goes out on its own
			// connection; the next ones share one.
			if got := dials.Load(); got != tt.wantDials {
				t.Errorf("%d dials for 10 calls, want %d", got, tt.wantDials)
			}
		})
	}
}

func TestCloseTransportDeadline(t *testing.T) {
	srv := versionServer(t, true, time.Minute)
	c := New(Endpoint{Member: "m", BaseURL: srv.URL}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Version(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) {
		t.Fatalf("error = %v, want a retryable deadline error", err)
	}
}

func TestCloseTransportConcurrentCalls(t *testing.T) {
	srv := versionServer(t, true, 0)
	c := New(Endpoint{Member: "m", BaseURL: srv.URL}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 8 {
		wg.Go(func() {
			for range 25 {
				if _, err := c.Version(testCtx(t)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseTransportRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := New(Endpoint{Member: "gone", BaseURL: "http://" + addr}, nil)
	_, err = c.Version(testCtx(t))
	if e, ok := errors.AsType[*Error](err); !ok || e.Kind != KindTransport || !IsRetryable(err) {
		t.Fatalf("error = %v, want a retryable transport error", err)
	}
}

// NewHTTPClient takes the one-shot path only when asked, passes the TLS
// settings on and sets no timeout of its own.
func TestNewHTTPClient(t *testing.T) {
	tc := &tls.Config{MinVersion: tls.VersionTLS13}
	pooled := NewHTTPClient(HTTPOptions{TLS: tc})
	tr, ok := pooled.Transport.(*http.Transport)
	if !ok || tr.TLSClientConfig != tc || tr.ResponseHeaderTimeout != 0 {
		t.Errorf("pooled transport = %T %+v, want an *http.Transport with the TLS settings and no header timeout", pooled.Transport, tr)
	}
	oneShot := NewHTTPClient(HTTPOptions{TLS: tc, OneShot: true})
	ct, ok := oneShot.Transport.(*closeTransport)
	if !ok || ct.base.TLSClientConfig != tc {
		t.Errorf("one-shot transport = %T, want a *closeTransport over the TLS settings", oneShot.Transport)
	}
	for _, hc := range []*http.Client{pooled, oneShot} {
		if hc.Timeout != 0 || hc.CheckRedirect == nil {
			t.Errorf("client Timeout %v, CheckRedirect set %v; want 0 and set", hc.Timeout, hc.CheckRedirect != nil)
		}
	}
	if c := New(Endpoint{BaseURL: "http://127.0.0.1:1"}, oneShot); c.hc != oneShot {
		t.Error("New replaced the HTTP client it was given")
	}
}
