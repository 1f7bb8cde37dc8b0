package statusapi

// A minimal Chrome DevTools Protocol client for the browser test: it starts
// headless Chromium, connects to a page target over a WebSocket (RFC 6455,
// client side only, written here to need no dependency) and sends commands
// one at a time, reading frames until the answer arrives. It starts no
// goroutine.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// findChromium returns the path of the Chromium binary, or skips the test.
func findChromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("/usr/bin/chromium"); err == nil {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("headless Chromium not found (/usr/bin/chromium or chromium in PATH); install it (apt-get install chromium) to run the browser test")
	return ""
}

// browser is a headless Chromium started for one test; its process group
// is killed when the test ends.
type browser struct {
	port string // the DevTools port
}

// startBrowser starts Chromium with remote debugging on a free loopback
// port and waits until it serves DevTools.
func startBrowser(t *testing.T, bin string) *browser {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir="+dir, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"about:blank")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Chromium runs helper processes: end the whole group it leads.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers that outlived it
	})

	file := filepath.Join(dir, "DevToolsActivePort")
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(file)
		if err == nil && bytes.Count(b, []byte("\n")) >= 1 {
			port, _, _ := strings.Cut(string(b), "\n")
			return &browser{port: strings.TrimSpace(port)}
		}
		select {
		case <-exited:
			t.Fatalf("chromium exited before serving DevTools:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium did not write %s within 15s:\n%s", file, stderr.String())
		}
	}
}

// page connects to the browser's first page target.
func (b *browser) page(t *testing.T) *cdpPage {
	t.Helper()
	var targets []struct {
		Type string `json:"type"`
		URL  string `json:"webSocketDebuggerUrl"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		targets = targets[:0]
		err := getJSONInto(t.Context(), "http://127.0.0.1:"+b.port+"/json/list", &targets)
		for _, tg := range targets {
			if tg.Type == "page" && tg.URL != "" {
				ws, err := dialWebSocket(t.Context(), tg.URL)
				if err != nil {
					t.Fatalf("connect to the page: %v", err)
				}
				t.Cleanup(func() { ws.close() })
				return &cdpPage{ws: ws}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no page target within 10s (last error: %v)", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval while Chromium opens its first tab
	}
}

func getJSONInto(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// cdpPage sends DevTools commands to one page.
type cdpPage struct {
	ws   *wsConn
	next int64
}

// call sends method with params and decodes the result into result (when
// not nil). It fails the test on any error.
func (p *cdpPage) call(t *testing.T, method string, params, result any) {
	t.Helper()
	if err := p.tryCall(method, params, result); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

func (p *cdpPage) tryCall(method string, params, result any) error {
	p.next++
	id := p.next
	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	if err := p.ws.setDeadline(time.Now().Add(15 * time.Second)); err != nil {
		return err
	}
	if err := p.ws.writeText(msg); err != nil {
		return err
	}
	for {
		b, err := p.ws.readMessage()
		if err != nil {
			return err
		}
		var reply struct {
			ID     int64           `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &reply); err != nil {
			return fmt.Errorf("decode a DevTools message: %w", err)
		}
		if reply.ID != id {
			continue // an event, or the answer to nothing we wait for
		}
		if reply.Error != nil {
			return fmt.Errorf("DevTools error %d: %s", reply.Error.Code, reply.Error.Message)
		}
		if result == nil {
			return nil
		}
		return json.Unmarshal(reply.Result, result)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value
// into v.
func (p *cdpPage) eval(t *testing.T, expr string, v any) {
	t.Helper()
	if err := p.tryEval(expr, v); err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
}

func (p *cdpPage) tryEval(expr string, v any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := p.tryCall("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if res.Exception != nil {
		return fmt.Errorf("%s %s", res.Exception.Text, res.Exception.Exception.Description)
	}
	if len(res.Result.Value) == 0 {
		return errors.New("no value")
	}
	return json.Unmarshal(res.Result.Value, v)
}

// waitFor polls a boolean expression until it is true, failing the test
// after timeout.
func (p *cdpPage) waitFor(t *testing.T, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		err := p.tryEval(expr, &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become true within %v (last error: %v)", expr, timeout, err)
		}
		time.Sleep(25 * time.Millisecond) // poll interval
	}
}

// navigate loads u and waits until the document has loaded.
func (p *cdpPage) navigate(t *testing.T, u string) {
	t.Helper()
	var res struct {
		ErrorText string `json:"errorText"`
	}
	p.call(t, "Page.navigate", map[string]any{"url": u}, &res)
	if res.ErrorText != "" {
		t.Fatalf("navigate to %s: %s", u, res.ErrorText)
	}
	p.waitFor(t, `document.readyState === "complete" && location.href === `+jsString(u), 10*time.Second)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// wsConn is the client side of a WebSocket connection.
type wsConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialWebSocket(ctx context.Context, rawURL string) (*wsConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "ws" {
		return nil, fmt.Errorf("websocket URL %q: want ws://", rawURL)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	resp.Body.Close()
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		conn.Close()
		return nil, fmt.Errorf("websocket handshake: %s", resp.Status)
	}
	return &wsConn{conn: conn, br: br}, nil
}

func (c *wsConn) setDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

func (c *wsConn) close() {
	_ = c.writeFrame(0x8, nil)
	c.conn.Close()
}

func (c *wsConn) writeText(p []byte) error { return c.writeFrame(0x1, p) }

// writeFrame writes one final, masked frame (clients must mask).
func (c *wsConn) writeFrame(opcode byte, p []byte) error {
	hdr := []byte{0x80 | opcode}
	switch n := len(p); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	body := make([]byte, len(p))
	for i := range p {
		body[i] = p[i] ^ mask[i%4]
	}
	_, err := c.conn.Write(append(hdr, body...))
	return err
}

// readMessage returns the next text or binary message, answering pings
// and joining fragments.
func (c *wsConn) readMessage() ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return nil, err
		}
		fin, opcode := h[0]&0x80 != 0, h[0]&0x0F
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(c.br, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(c.br, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > 64<<20 {
			return nil, fmt.Errorf("websocket frame of %d bytes", n)
		}
		var mask [4]byte
		masked := h[1]&0x80 != 0
		if masked {
			if _, err := io.ReadFull(c.br, mask[:]); err != nil {
				return nil, err
			}
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return nil, err
		}
		if masked {
			for i := range p {
				p[i] ^= mask[i%4]
			}
		}
		switch opcode {
		case 0x8:
			return nil, errors.New("websocket closed by the browser")
		case 0x9:
			if err := c.writeFrame(0xA, p); err != nil {
				return nil, err
			}
			continue
		case 0xA:
			continue
		}
		msg = append(msg, p...)
		if fin {
			return msg, nil
		}
	}
}
