package ems

import (
	"bytes"
	"context"
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
)

// DefaultTimeout bounds a call whose context has no deadline, and every
// call made through the HTTP client New builds when given none.
const DefaultTimeout = 10 * time.Second

// MaxResponseBytes is the largest answer body a Client accepts.
const MaxResponseBytes = 256 << 20

// maxDrainBytes bounds how much of an unread body is drained so that the
// connection can be reused.
const maxDrainBytes = 64 << 10

// NewHTTPClient returns the HTTP client New uses when given none: a per-call
// timeout of DefaultTimeout, no environment proxy, no redirects followed,
// and a transport keeping enough idle connections for about 16 concurrent
// calls per member. (EMS itself answers "Connection: close", so reuse only
// happens where a server allows it.) Several Clients may share it.
func NewHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: DefaultTimeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   DefaultTimeout,
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
	bufs    sync.Pool     // *bytes.Buffer for answers read whole
	timeout time.Duration // bounds every call, when hc's own was moved here
	maxBody int64
}

// New returns a Client for ep. It never fails: an unusable BaseURL makes
// every call fail with KindRequest. With hc nil, the Client uses its own
// NewHTTPClient. Credentials given in BaseURL's user information are never
// put in request URLs; for an API proxy they are used when ep.User is empty.
func New(ep Endpoint, hc *http.Client) *Client {
	if hc == nil {
		hc = NewHTTPClient()
	}
	var timeout time.Duration
	if tr, ok := hc.Transport.(*http.Transport); ok {
		// EMS closes the connection after every answer: make such calls
		// without http.Transport's machinery (see closeTransport). The
		// client's timeout becomes a context deadline: http.Client runs a
		// goroutine per call to enforce its own around a RoundTripper
		// that is not an *http.Transport.
		cp := *hc
		cp.Transport = newCloseTransport(tr)
		timeout, cp.Timeout = cp.Timeout, 0
		hc = &cp
	}
	c := &Client{ep: ep, hc: hc, timeout: timeout, maxBody: MaxResponseBytes, user: ep.User, pass: ep.Password.Reveal()}
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

// call runs one command. With stream set it decodes the body as it arrives,
// handing the data value to stream, which must consume it; otherwise it
// reads the whole body into a pooled buffer and hands the data of a SUCCESS
// envelope (nil when null) to whole, which must not keep it. An error from
// stream or whole is a KindDecode error.
func (c *Client) call(ctx context.Context, command string, params Params, stream func(*jsonStream) error, whole func(data []byte) error) error {
	d, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
		d = time.Now().Add(DefaultTimeout)
	}
	if c.timeout > 0 && time.Until(d) > c.timeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
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

	if stream != nil {
		meta, err := walkStream(newJSONStream(body), stream)
		if err != nil {
			return c.bodyError(command, resp.StatusCode, body, err)
		}
		return c.checkStatus(command, resp.StatusCode, meta.Status, meta.Description)
	}
	buf := c.bufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			c.bufs.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(body); err != nil {
		return c.bodyError(command, resp.StatusCode, body, err)
	}
	b := buf.Bytes()
	env, err := decodeEnvelope(b)
	if err != nil {
		return &Error{Member: c.member, Command: command, Kind: KindDecode, StatusCode: resp.StatusCode, Description: excerpt(b), Err: err}
	}
	if err := c.checkStatus(command, resp.StatusCode, env.Status, env.Description); err != nil {
		return err
	}
	if err := whole(env.Data); err != nil {
		return &Error{Member: c.member, Command: command, Kind: KindDecode, StatusCode: resp.StatusCode, Description: excerpt(env.Data), Err: err}
	}
	return nil
}

// maxPooledBody is the largest answer buffer kept for reuse.
const maxPooledBody = 64 << 10

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
