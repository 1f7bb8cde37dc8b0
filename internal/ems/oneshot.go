package ems

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
)

// closeTransport is the HTTP transport NewHTTPClient builds with
// HTTPOptions.OneShot, for members that close the connection after each
// answer, as EMS does ("Connection: close"). For such
// a server http.Transport's connection machinery (a dialing goroutine, a
// reader and a writer goroutine per connection, buffers that are never
// reused) is pure cost: closeTransport dials, writes the request, reads the
// answer and closes, all in the caller's goroutine, with pooled buffers.
//
// A host that keeps connections open (an answer without "Connection:
// close"), an https URL, and any request closeTransport cannot make itself
// go to base, which pools connections as usual. Safe for concurrent use.
type closeTransport struct {
	base *http.Transport
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	readers, writers sync.Pool // *bufio.Reader, *bufio.Writer

	mu    sync.Mutex
	keeps map[string]bool // hosts seen keeping a connection open
}

func newCloseTransport(base *http.Transport) *closeTransport {
	t := &closeTransport{base: base, keeps: make(map[string]bool)}
	t.readers.New = func() any { return bufio.NewReaderSize(nil, 4096) }
	t.writers.New = func() any { return bufio.NewWriterSize(nil, 1024) }
	t.dial = base.DialContext
	if t.dial == nil {
		t.dial = (&net.Dialer{}).DialContext
	}
	return t
}

// RoundTrip implements http.RoundTripper.
func (t *closeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	conn, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The context's end closes the connection, which ends any read or
	// write in progress; errors are then reported as the context's.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = conn.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	bw := t.writers.Get().(*bufio.Writer)
	bw.Reset(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	t.writers.Put(bw)
	if err != nil {
		return fail(err)
	}
	br := t.readers.Get().(*bufio.Reader)
	br.Reset(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		br.Reset(nil)
		t.readers.Put(br)
		return fail(err)
	}
	if !resp.Close {
		// This host would keep the connection: let base pool them.
		t.mu.Lock()
		t.keeps[req.URL.Host] = true
		t.mu.Unlock()
	}
	resp.Body = &oneShotBody{body: resp.Body, conn: conn, br: br, pool: &t.readers, stop: stop, ctx: ctx}
	return resp, nil
}

// handles reports whether the request is one for closeTransport: plain
// HTTP, no body, to a host not seen keeping connections.
func (t *closeTransport) handles(req *http.Request) bool {
	if req.URL.Scheme != "http" || req.Body != nil && req.Body != http.NoBody || t.base.Proxy != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.keeps[req.URL.Host]
}

// CloseIdleConnections closes base's idle connections; closeTransport
// keeps none.
func (t *closeTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }

// oneShotBody is an answer's body on its own connection: closing it closes
// the connection and returns the buffer.
type oneShotBody struct {
	body io.ReadCloser
	conn net.Conn
	br   *bufio.Reader
	pool *sync.Pool // where br goes back
	stop func() bool
	ctx  context.Context

	mu     sync.Mutex
	closed bool
}

func (b *oneShotBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errors.New("read on closed response body")
	}
	n, err := b.body.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() != nil {
		err = b.ctx.Err()
	}
	return n, err
}

func (b *oneShotBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.stop()
	err := b.conn.Close()
	b.br.Reset(nil)
	b.pool.Put(b.br)
	return err
}
