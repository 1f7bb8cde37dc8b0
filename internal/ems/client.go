package ems

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// DefaultTimeout bounds a call whose context has no deadline. It is the
// only bound the package sets: the HTTP client NewHTTPClient builds has no
// timeout of its own, so a call, a streamed listing of any length
// included, ends exactly at its context's deadline.
const DefaultTimeout = 10 * time.Second

// MaxResponseBytes is the largest answer body a Client accepts.
const MaxResponseBytes = 256 << 20

// maxDrainBytes bounds how much of an unread body is drained so that the
// connection can be reused.
const maxDrainBytes = 64 << 10

// HTTPOptions configures NewHTTPClient.
type HTTPOptions struct {
	// TLS is the configuration of https calls; nil: Go's defaults.
	TLS *tls.Config
	// OneShot makes plain-http calls on a lighter path for members that
	// close the connection after every answer, as EMS does ("Connection:
	// close"): dial, write, read and close in the caller's goroutine, with
	// pooled buffers, instead of http.Transport's per-connection
	// goroutines (see closeTransport). Calls to https members and to a
	// member seen keeping its connection open still take the pooled
	// transport.
	OneShot bool
}

// NewHTTPClient returns the HTTP client for EMS members: no environment
// proxy, no redirects followed (a redirect would carry an API proxy's
// credentials wherever it points), a transport keeping enough idle
// connections for about 64 concurrent calls per member where the member
// allows reuse, and no timeout: every call is bounded by its context's
// deadline (see DefaultTimeout), not by a client-wide Timeout that would
// cut a long streamed listing short, nor by ResponseHeaderTimeout. Several
// Clients may share it.
func NewHTTPClient(opts HTTPOptions) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     opts.TLS,
	}
	var rt http.RoundTripper = tr
	if opts.OneShot {
		ct := newCloseTransport(tr)
		// A connection that carries one answer needs no TCP keep-alive
		// probes: leaving them off saves four setsockopt calls per call.
		ct.dial = (&net.Dialer{KeepAlive: -1}).DialContext
		rt = ct
	}
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Client calls the HTTP API of one EMS member, directly or through its API
// proxy. It is safe for concurrent use. Every method returns an *Error on
// failure.
type Client struct {
	ep      Endpoint
	member  string
	base    *url.URL // without credentials; nil when baseErr is set
	baseErr error
	user    string
	pass    string
	hc      *http.Client
	bufs    sync.Pool // *bytes.Buffer for the data of answers decoded whole
	maxBody int64
}

// New returns a Client for ep. It never fails: an unusable BaseURL makes
// every call fail with KindRequest. With hc nil, the Client uses its own
// NewHTTPClient(HTTPOptions{OneShot: true}). hc is used as it is. Credentials given in BaseURL's user information are never
// put in request URLs; for an API proxy they are used when ep.User is empty.
func New(ep Endpoint, hc *http.Client) *Client {
	if hc == nil {
		hc = NewHTTPClient(HTTPOptions{OneShot: true})
	}
	c := &Client{ep: ep, hc: hc, maxBody: MaxResponseBytes, user: ep.User, pass: ep.Password.Reveal()}
	c.bufs.New = func() any { return new(bytes.Buffer) }
	c.base, c.baseErr = parseBaseURL(ep.BaseURL)
	if c.base != nil && c.base.User != nil {
		if c.user == "" {
			c.user = c.base.User.Username()
			c.pass, _ = c.base.User.Password()
		}
		c.base.User = nil
	}
	c.member = ep.Member
	if c.member == "" && c.base != nil {
		c.member = c.base.Host
	}
	return c
}

// parseBaseURL parses an endpoint's base URL. Its errors never quote the
// URL, which may hold credentials.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case raw == "":
		return nil, errors.New("endpoint has no base URL")
	case err != nil:
		return nil, errors.New("endpoint base URL does not parse")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("endpoint base URL: scheme must be http or https")
	case u.Host == "" || u.Opaque != "":
		return nil, errors.New("endpoint base URL has no host")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("endpoint base URL must not have a query or fragment")
	}
	return u, nil
}

// Endpoint returns the endpoint the Client was made for.
func (c *Client) Endpoint() Endpoint { return c.ep }

// CloseIdleConnections closes the idle connections of the Client's HTTP
// client.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Call runs command with params and returns the raw data of the SUCCESS
// envelope, nil when it is null. A FAIL envelope gives an *Error of
// KindFail with EMS's description.
func (c *Client) Call(ctx context.Context, command string, params Params) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.call(ctx, command, params, nil, func(data []byte) error {
		out = bytes.Clone(data)
		return nil
	})
	return out, err
}

// call runs one command and decodes its answer as it arrives. With stream
// set, stream is called with the decoder positioned at the data value,
// which it must read; otherwise the data value is copied into a pooled
// buffer and, once the envelope is known to be a SUCCESS, handed to whole
// (nil when null), which must not keep it. An error from stream or whole
// is a KindDecode error.
func (c *Client) call(ctx context.Context, command string, params Params, stream func(*jsontext.Decoder) error, whole func(data []byte) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	req, err := c.newRequest(ctx, command, params)
	if err != nil {
		return c.errorf(command, KindRequest, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(command, err)
	}
	defer drainClose(resp.Body)

	if resp.StatusCode == http.StatusUnauthorized && c.ep.Proxy {
		return &Error{Member: c.member, Command: command, Kind: KindUnauthorized, StatusCode: resp.StatusCode}
	}
	body := newCappedReader(resp.Body, c.maxBody)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		head, _ := io.ReadAll(io.LimitReader(body, excerptLen))
		return &Error{Member: c.member, Command: command, Kind: KindHTTP, StatusCode: resp.StatusCode, Description: excerpt(head)}
	}

	// A listing is read through a larger buffer than the decoder's own
	// (4 KiB): a 39 MB listConfig then takes hundreds of reads from the
	// connection instead of ten thousand.
	var r io.Reader = body
	if stream != nil {
		br := getBodyReader(body)
		defer putBodyReader(br)
		r = br
	} else {
		// A small answer is read whole into a pooled buffer and decoded
		// in place: streamed, the decoder would make a buffer of its own
		// for every answer (about 3.5 KB for a pullStream answer).
		in := c.bufs.Get().(*bytes.Buffer)
		defer func() {
			if in.Cap() <= maxPooledBody {
				in.Reset()
				c.bufs.Put(in)
			}
		}()
		if _, err := in.ReadFrom(body); err != nil {
			return c.bodyError(command, resp.StatusCode, body, err)
		}
		r = in
	}
	var data *bytes.Buffer // whole's data, nil when null
	if stream == nil {
		buf := c.bufs.Get().(*bytes.Buffer)
		defer func() {
			if buf.Cap() <= maxPooledBody {
				buf.Reset()
				c.bufs.Put(buf)
			}
		}()
		stream = func(dec *jsontext.Decoder) error {
			v, err := dec.ReadValue()
			if err != nil {
				return err
			}
			buf.Reset()
			data = nil
			if v.Kind() != 'n' {
				buf.Write(v)
				data = buf
			}
			return nil
		}
	}
	meta, err := walkEnvelope(r, stream)
	if err != nil {
		return c.bodyError(command, resp.StatusCode, body, err)
	}
	if err := c.checkStatus(command, resp.StatusCode, meta.Status, meta.Description); err != nil || whole == nil {
		return err
	}
	var b []byte
	if data != nil {
		b = data.Bytes()
	}
	if err := whole(b); err != nil {
		return &Error{Member: c.member, Command: command, Kind: KindDecode, StatusCode: resp.StatusCode, Description: excerpt(b), Err: err}
	}
	return nil
}

// maxPooledBody is the largest answer buffer kept for reuse.
const maxPooledBody = 64 << 10

// bodyReaders keeps the buffered readers of listings for reuse.
var bodyReaders sync.Pool // *bufio.Reader

// bodyReaderSize is the buffer of a listing's reader.
const bodyReaderSize = 64 << 10

// getBodyReader returns a buffered reader of r, reused when one is free.
func getBodyReader(r io.Reader) *bufio.Reader {
	if br, ok := bodyReaders.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, bodyReaderSize)
}

// putBodyReader keeps br for reuse.
func putBodyReader(br *bufio.Reader) {
	br.Reset(eof{}) // drop the reference to the body
	bodyReaders.Put(br)
}

// checkStatus turns an envelope that is not SUCCESS into a KindFail error.
func (c *Client) checkStatus(command string, code int, status, description string) error {
	if !strings.EqualFold(status, statusSuccess) {
		return &Error{Member: c.member, Command: command, Kind: KindFail, StatusCode: code, Description: description}
	}
	return nil
}

// newRequest builds the GET request for command: BASE/COMMAND, with
// ?params=BASE64 (or, for EncodedQuery, %3fparams=BASE64 in the path) when
// there are parameters. The base64 text is not percent-encoded.
func (c *Client) newRequest(ctx context.Context, command string, params Params) (*http.Request, error) {
	if c.baseErr != nil {
		return nil, c.baseErr
	}
	if err := validCommand(command); err != nil {
		return nil, err
	}
	if err := params.Validate(); err != nil {
		return nil, err
	}
	u := *c.base
	rawPath := strings.TrimRight(c.base.EscapedPath(), "/") + "/" + command
	u.RawQuery = ""
	if len(params) > 0 {
		enc := params.Encode()
		if len(command)+1+len(enc) > maxCommandLine {
			return nil, fmt.Errorf("parameters too long (%d bytes; EMS accepts commands up to %d)", len(enc), maxCommandLine)
		}
		wire := params.Wire()
		if c.ep.EncodedQuery {
			rawPath += "%3fparams=" + wire
		} else {
			u.RawQuery = "params=" + wire
		}
	}
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return nil, errors.New("endpoint base URL has an invalid path")
	}
	u.Path, u.RawPath = path, rawPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, errors.New("cannot build request URL")
	}
	// Keep the exact path: http.NewRequest re-parses the URL.
	req.URL.Path, req.URL.RawPath = path, rawPath
	req.Header.Set("Accept", "application/json, text/plain, */*")
	req.Header.Set("User-Agent", "streamlb")
	if c.ep.Proxy {
		req.SetBasicAuth(c.user, c.pass)
	}
	return req, nil
}

// validCommand checks a command name: letters, digits, '_' and '-'.
func validCommand(command string) error {
	if command == "" {
		return errors.New("empty command")
	}
	for i := 0; i < len(command); i++ {
		c := command[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("command %q: invalid character", command)
		}
	}
	return nil
}

func (c *Client) errorf(command string, kind Kind, err error) *Error {
	return &Error{Member: c.member, Command: command, Kind: kind, Err: err}
}

// transportError wraps a failure to get an answer. The *url.Error layer is
// dropped: its text repeats the whole request URL.
func (c *Client) transportError(command string, err error) *Error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return c.errorf(command, KindTransport, err)
}

// bodyError classifies a failure while reading or decoding an answer body.
func (c *Client) bodyError(command string, status int, body *cappedReader, err error) *Error {
	if len(body.head) < excerptLen && body.readErr == nil {
		// The decoder may have stopped before the excerpt was read.
		_, _ = io.CopyN(io.Discard, body, int64(excerptLen-len(body.head)))
	}
	e := &Error{Member: c.member, Command: command, StatusCode: status, Description: excerpt(body.head), Err: err}
	switch rerr := body.readErr; {
	case rerr == nil:
		e.Kind = KindDecode
	case isTooLarge(rerr):
		e.Kind, e.Err = KindDecode, rerr
	default:
		e.Kind, e.Err, e.Description = KindTransport, rerr, ""
	}
	return e
}

func isTooLarge(err error) bool {
	_, ok := errors.AsType[*bodyTooLargeError](err)
	return ok
}

// drainClose reads what is left of a body, up to a bound, and closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrainBytes))
	_ = body.Close()
}
