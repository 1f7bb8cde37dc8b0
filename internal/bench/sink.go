package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// discardSink is an event sink that answers every POST at once and keeps
// nothing: where emulated members post their events when the balancer is
// not the one to receive them.
type discardSink struct {
	srv      *http.Server
	url      string
	received atomic.Int64
	wg       sync.WaitGroup
}

func startDiscardSink() (*discardSink, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start discarding sink: %w", err)
	}
	s := &discardSink{url: "http://" + ln.Addr().String() + "/evowebservices/"}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			s.received.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Serve ends with ErrServerClosed; a failure shows as events the
		// members could not post.
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *discardSink) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	s.wg.Wait()
}
