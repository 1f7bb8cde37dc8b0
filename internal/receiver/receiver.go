// Package receiver is streamlb's event sink: the HTTP handler that EMS RPC
// event sinks POST their JSON notifications to (POST /evowebservices/).
//
// It checks the sender (allowed source addresses, optional events token),
// reads a bounded body within a deadline, decodes the EMS event envelope,
// answers at once (200 for every well-formed event, 400/401/403/408/413
// otherwise) and hands inStreamCreated and inStreamClosed events to a Sink.
// Every other event type is acknowledged and counted, nothing more. What it
// hands on is bounded (see MaxNameBytes and the constants beside it): an
// event past a bound is acknowledged, counted and dropped, and every string
// from a request is cut short before it reaches a log line. The receiver
// keeps no state beyond its settings and starts no goroutines.
package receiver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// DefaultMaxBodyBytes is the body size limit when Options.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 1 << 20

// DefaultMaxBufferedBytes is the most body bytes all requests together may
// hold at once when Options.MaxBufferedBytes is 0.
const DefaultMaxBufferedBytes = 64 << 20

// DefaultBodyTimeout is how long a request's body may take to arrive when
// Options.BodyTimeout is 0. EMS posts a few hundred bytes at once.
const DefaultBodyTimeout = 5 * time.Second

// logBytes is the most of any string from a request a log line shows.
const logBytes = 200

// routePrefix is the path EMS sinks post to, as the original web services
// used it.
const routePrefix = "/evowebservices"

// complaintInterval is how often each kind of rejected request may be
// logged at warn level; the others are logged at debug level.
const complaintInterval = 10 * time.Second

// Sink receives decoded stream events.
type Sink interface {
	// HandleStreamEvent takes one inStreamCreated or inStreamClosed event.
	// It must not block: the receiver calls it while the EMS waits for its
	// answer, so the work belongs in the Sink's own queue. It may be
	// called from many goroutines at once.
	HandleStreamEvent(ev StreamEvent)
}

// StartSink is a Sink that also takes serverStarted events: the member at
// peer (the address that posted the event, as in StreamEvent.Peer) has
// started. It must not block either.
type StartSink interface {
	Sink
	HandleServerStarted(peer netip.Addr, received time.Time)
}

// SinkFunc adapts a function to the Sink interface.
type SinkFunc func(ev StreamEvent)

// HandleStreamEvent calls f(ev).
func (f SinkFunc) HandleStreamEvent(ev StreamEvent) { f(ev) }

// Options configures a Receiver.
type Options struct {
	// Sink receives the stream events; required.
	Sink Sink
	// Logger receives the receiver's logs; nil discards them.
	Logger *slog.Logger
	// Registerer gets the receiver's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Token is the events token (config key events_token). When set, only
	// POSTs to /evowebservices/TOKEN or /evowebservices/TOKEN/, or to
	// /evowebservices[/]?token=TOKEN, are accepted; any other is answered
	// 401. It is never logged, and String omits it.
	Token string
	// AllowedSources, when non-empty, lists the networks whose peers may
	// post events; any other peer is answered 403.
	AllowedSources []netip.Prefix
	// MaxBodyBytes bounds the body; a larger one is answered 413. Zero or
	// less means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// BodyTimeout bounds how long the body may take to arrive, from when
	// the handler starts reading it; a slower one is answered 408. Zero or
	// less means DefaultBodyTimeout.
	BodyTimeout time.Duration
	// MaxBufferedBytes bounds the body bytes held by all requests being
	// read or decoded at once; a request that would pass it is answered
	// 503 with Retry-After. Zero or less means DefaultMaxBufferedBytes.
	MaxBufferedBytes int64
	// Now returns the current time, for StreamEvent.Received; nil means
	// time.Now.
	Now func() time.Time
}

// String describes o without its token.
func (o Options) String() string {
	tok := ""
	if o.Token != "" {
		tok = "REDACTED"
	}
	return fmt.Sprintf("receiver.Options{Token:%q AllowedSources:%v MaxBodyBytes:%d}", tok, o.AllowedSources, o.MaxBodyBytes)
}

// GoString describes o without its token.
func (o Options) GoString() string { return o.String() }

// LogValue describes o without its token.
func (o Options) LogValue() slog.Value { return slog.StringValue(o.String()) }

// Receiver is the event sink's HTTP handler. Create it with New. It is safe
// for concurrent use and holds no goroutines, so it needs no closing.
type Receiver struct {
	sink        Sink
	starts      StartSink // sink, when it takes serverStarted; else nil
	logger      *slog.Logger
	metrics     *metrics
	access      atomic.Pointer[access]
	maxBody     int64
	bodyTimeout time.Duration
	buffered    *semaphore.Weighted // body bytes held, over all requests
	now         func() time.Time
	complaints  map[string]*rate.Limiter // by result; read-only after New
}

// access is who may post: replaced as a whole by SetAccess.
type access struct {
	hasToken  bool
	tokenHash [sha256.Size]byte
	allowed   []netip.Prefix
}

func newAccess(token string, allowed []netip.Prefix) *access {
	a := &access{hasToken: token != "", allowed: append([]netip.Prefix(nil), allowed...)}
	if a.hasToken {
		a.tokenHash = sha256.Sum256([]byte(token))
	}
	return a
}

// New returns a Receiver configured by opts. It registers its metrics on
// opts.Registerer and panics if opts.Sink is nil or the metrics are already
// registered there, as http.Handle panics on a bad registration.
func New(opts Options) *Receiver {
	if opts.Sink == nil {
		panic("receiver: New called with a nil Options.Sink")
	}
	r := &Receiver{
		sink:        opts.Sink,
		logger:      opts.Logger,
		metrics:     newMetrics(opts.Registerer),
		maxBody:     opts.MaxBodyBytes,
		bodyTimeout: opts.BodyTimeout,
		now:         opts.Now,
		complaints:  map[string]*rate.Limiter{},
	}
	r.starts, _ = opts.Sink.(StartSink)
	for _, result := range []string{resultMalformed, resultUnauthorized, resultForbidden, resultTooLarge, resultTimeout,
		resultBusy, resultNameTooLong, resultURITooLong, resultTooManyVars, resultVarTooLong, resultBadIP} {
		r.complaints[result] = rate.NewLimiter(rate.Every(complaintInterval), 1)
	}
	r.access.Store(newAccess(opts.Token, opts.AllowedSources))
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.maxBody <= 0 {
		r.maxBody = DefaultMaxBodyBytes
	}
	if r.bodyTimeout <= 0 {
		r.bodyTimeout = DefaultBodyTimeout
	}
	if opts.MaxBufferedBytes <= 0 {
		opts.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	r.buffered = semaphore.NewWeighted(opts.MaxBufferedBytes)
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// SetAccess replaces the events token and the allowed sources (config
// keys events_token and allowed_sources) for every request from now on;
// requests already past their checks are not affected. It is safe to call
// while the Receiver serves.
func (r *Receiver) SetAccess(token string, allowed []netip.Prefix) {
	r.access.Store(newAccess(token, allowed))
}

// Register adds the event sink's routes to mux: "POST /evowebservices",
// "POST /evowebservices/", "POST /evowebservices/{token}" and
// "POST /evowebservices/{token}/" (the last two answer 404 while no token
// is set). Other methods on those paths get 405 from the mux.
func (r *Receiver) Register(mux *http.ServeMux) {
	mux.Handle("POST "+routePrefix, r)
	mux.Handle("POST "+routePrefix+"/", r)
	mux.Handle("POST "+routePrefix+"/{token}", r)
	mux.Handle("POST "+routePrefix+"/{token}/", r)
}

// ServeHTTP handles one event POST, whatever route led to it: the path must
// be /evowebservices, /evowebservices/ or, with a token, the token forms.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	acc := r.access.Load()
	pathToken, trailingSlash, ok := splitPath(req.URL.Path)
	if !ok || (pathToken != "" && !acc.hasToken) {
		r.logger.Debug("event POST to an unknown path", "peer", req.RemoteAddr,
			"path", clip(redactedTarget(req, pathToken, trailingSlash), logBytes))
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	peer := PeerAddr(req.RemoteAddr)

	if !acc.sourceAllowed(peer) {
		r.reject(w, req, pathToken, trailingSlash, typeUnknown, resultForbidden,
			http.StatusForbidden, "source address not allowed", nil)
		return
	}
	if acc.hasToken && !acc.tokenOK(pathToken, req) {
		r.reject(w, req, pathToken, trailingSlash, typeUnknown, resultUnauthorized,
			http.StatusUnauthorized, "missing or wrong events token", nil)
		return
	}

	body, held, err := r.readBody(w, req)
	defer r.buffered.Release(held)
	if err != nil {
		if errors.Is(err, errBufferFull) {
			// The rest of the body is not read: the connection cannot
			// serve another request.
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "1")
			r.reject(w, req, pathToken, trailingSlash, typeUnknown, resultBusy,
				http.StatusServiceUnavailable, "too many event bytes in flight; retry", nil)
			return
		}
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			r.reject(w, req, pathToken, trailingSlash, typeUnknown, resultTooLarge,
				http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", r.maxBody), nil)
			return
		}
		if isTimeout(err) {
			w.Header().Set("Connection", "close")
			r.reject(w, req, pathToken, trailingSlash, typeUnknown, resultTimeout,
				http.StatusRequestTimeout, fmt.Sprintf("body not received within %v", r.bodyTimeout), nil)
			return
		}
		r.reject(w, req, pathToken, trailingSlash, typeUnknown, resultMalformed,
			http.StatusBadRequest, err.Error(), nil)
		return
	}

	ev, err := decodeEvent(body, MaxVars+1) // one more tells there are too many
	if err != nil {
		typ := ev.Type
		if typ == "" {
			typ = typeUnknown
		}
		// The message may quote a key of the body: bounded, as all else.
		r.reject(w, req, pathToken, trailingSlash, typ, resultMalformed,
			http.StatusBadRequest, clip(err.Error(), logBytes), body)
		return
	}

	if ev.Type == TypeServerStarted && r.starts != nil && peer.IsValid() {
		r.starts.HandleServerStarted(peer, r.now())
		r.metrics.count(ev.Type, resultAccepted)
		if r.logger.Enabled(req.Context(), slog.LevelDebug) {
			r.logger.Debug("server start accepted", "peer", peer)
		}
		writeOK(w)
		return
	}
	if ev.Stream == nil {
		r.metrics.count(ev.Type, resultIgnored)
		if r.logger.Enabled(req.Context(), slog.LevelDebug) {
			r.logger.Debug("event ignored", "type", clip(ev.Type, logBytes), "peer", peer)
		}
		writeOK(w)
		return
	}
	s := *ev.Stream
	if result, why := outOfBounds(&s); result != "" {
		// Acknowledged, as every well-formed event is, but not acted on.
		r.complain(req, result, "stream event out of bounds; acknowledged, not acted on", ev.Type,
			"error", why, "stream", clip(s.Name, logBytes), "peer", peer)
		r.metrics.count(ev.Type, result)
		writeOK(w)
		return
	}
	if s.IP != "" && !validIP(s.IP) {
		r.metrics.badIP.Inc()
		r.complain(req, resultBadIP, "payload.ip is not an IP address; handled as absent", ev.Type,
			"ip", clip(s.IP, logBytes), "ip_bytes", len(s.IP), "stream", clip(s.Name, logBytes), "peer", peer)
		s.IP = ""
	}
	s.Peer = peer
	s.Received = r.now()
	r.sink.HandleStreamEvent(s)
	r.metrics.count(ev.Type, resultAccepted)
	if r.logger.Enabled(req.Context(), slog.LevelDebug) {
		r.logger.Debug("stream event accepted", "type", s.Type, "stream", clip(s.Name, logBytes), "ip", s.IP,
			"peer", peer, "connection_type", s.ConnectionType)
	}
	writeOK(w)
}

// complain logs msg at warn level at most once per complaintInterval for
// each result, else at debug level.
func (r *Receiver) complain(req *http.Request, result, msg, typ string, attrs ...any) {
	level := slog.LevelDebug
	if lim := r.complaints[result]; lim != nil && lim.AllowN(r.now(), 1) {
		level = slog.LevelWarn
	}
	if r.logger.Enabled(req.Context(), level) {
		r.logger.Log(req.Context(), level, msg, append([]any{"result", result, "type", clip(typ, logBytes)}, attrs...)...)
	}
}

// reject answers status with msg, counts it and logs it: at warn level at
// most once per complaintInterval for each result, else at debug level.
func (r *Receiver) reject(w http.ResponseWriter, req *http.Request, pathToken string, trailingSlash bool,
	typ, result string, status int, msg string, body []byte) {
	r.metrics.count(typ, result)
	level := slog.LevelDebug
	if lim := r.complaints[result]; lim != nil && lim.AllowN(r.now(), 1) {
		level = slog.LevelWarn
	}
	if r.logger.Enabled(req.Context(), level) {
		attrs := []any{
			"result", result, "status", status, "error", msg,
			"peer", req.RemoteAddr, "path", clip(redactedTarget(req, pathToken, trailingSlash), logBytes),
		}
		if body != nil {
			attrs = append(attrs, "body_bytes", len(body), "body_excerpt", excerpt(body, logBytes))
		}
		r.logger.Log(req.Context(), level, "event POST rejected", attrs...)
	}
	writeError(w, status, msg)
}

func (a *access) sourceAllowed(peer netip.Addr) bool {
	if len(a.allowed) == 0 {
		return true
	}
	for _, p := range a.allowed {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// tokenOK reports whether the request carries the events token: in the
// path when the path has one, else in the token query parameter. The
// comparison takes the same time whatever the tokens' contents and lengths.
func (a *access) tokenOK(pathToken string, req *http.Request) bool {
	got := pathToken
	if got == "" {
		got = req.URL.Query().Get("token")
	}
	if got == "" {
		return false
	}
	h := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(h[:], a.tokenHash[:]) == 1
}

// splitPath checks that path is /evowebservices, /evowebservices/,
// /evowebservices/SEGMENT or /evowebservices/SEGMENT/ and returns SEGMENT
// ("" for the first two) and whether the path ends in a slash.
func splitPath(path string) (segment string, trailingSlash bool, ok bool) {
	rest, found := strings.CutPrefix(path, routePrefix)
	if !found {
		return "", false, false
	}
	if rest == "" {
		return "", false, true
	}
	if rest[0] != '/' {
		return "", false, false
	}
	rest = rest[1:]
	trailingSlash = true
	if seg, ok := strings.CutSuffix(rest, "/"); ok {
		rest = seg
	} else if rest != "" {
		trailingSlash = false
	}
	if strings.Contains(rest, "/") {
		return "", false, false
	}
	return rest, trailingSlash, true
}

// redactedTarget returns the request's path and query fit for a log line:
// any path segment after /evowebservices and any token parameter are
// replaced by REDACTED. Other query parameters are left out.
func redactedTarget(req *http.Request, pathToken string, trailingSlash bool) string {
	var b strings.Builder
	switch {
	case pathToken != "":
		b.WriteString(routePrefix + "/REDACTED")
		if trailingSlash {
			b.WriteByte('/')
		}
	case strings.HasPrefix(req.URL.Path, routePrefix+"/") && len(req.URL.Path) > len(routePrefix)+1:
		// An unexpected deeper path: it may hold a mistyped token.
		b.WriteString(routePrefix + "/REDACTED")
	default:
		b.WriteString(req.URL.Path)
	}
	if req.URL.RawQuery != "" {
		if q, err := url.ParseQuery(req.URL.RawQuery); err == nil && q.Has("token") {
			b.WriteString("?token=REDACTED")
		} else {
			b.WriteString("?...")
		}
	}
	return b.String()
}

// PeerAddr returns the address of a RemoteAddr ("ip:port" or a bare ip),
// unmapped and without zone; the zero Addr when it cannot be parsed. It is
// the one form the balancer gives a peer's address, the members' own
// included.
func PeerAddr(remote string) netip.Addr {
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		a = ap.Addr()
	} else if pa, err := netip.ParseAddr(remote); err == nil {
		a = pa
	}
	return a.Unmap().WithZone("")
}

// errBufferFull is readBody's error when the bytes held by every request
// would pass MaxBufferedBytes.
var errBufferFull = errors.New("receiver: body buffer budget spent")

// firstChunk is the buffer a body is first read into: an EMS event is a
// few hundred bytes.
const firstChunk = 2 << 10

// readBody reads the whole body, failing with *http.MaxBytesError past
// r.maxBody bytes, with a timeout error when it takes longer than
// r.bodyTimeout, and with errBufferFull when the bytes held by all requests
// would pass their budget. The buffer grows as the bytes arrive, each
// growth taken from the budget first: a declared Content-Length reserves
// nothing. The caller releases held bytes of the budget once done with the
// body, error or not.
//
// A body refused for the budget is not read further: closing it would
// otherwise wait for the rest of it (to keep the connection), and a
// sender that sends slowly would have its 503 only at the deadline.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request) (body []byte, held int64, err error) {
	// Not every ResponseWriter supports deadlines (httptest's recorder
	// does not); the server's ReadTimeout still applies then.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(r.bodyTimeout))
	rd := http.MaxBytesReader(w, req.Body, r.maxBody)
	defer func() { _ = rd.Close() }()
	// One byte past the limit lets MaxBytesReader tell a body over it.
	ceiling := int(r.maxBody) + 1
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			next := min(max(2*cap(buf), firstChunk), ceiling)
			if !r.buffered.TryAcquire(int64(next - cap(buf))) {
				_ = rc.SetReadDeadline(time.Now())
				return nil, held, errBufferFull
			}
			held += int64(next - cap(buf))
			buf = append(make([]byte, 0, next), buf...)
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case errors.Is(err, io.EOF):
			return buf, held, nil
		case err != nil:
			return nil, held, fmt.Errorf("read event body: %w", err)
		}
	}
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

func writeOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
}

func writeError(w http.ResponseWriter, status int, msg string) {
	b, err := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	if err != nil {
		b = []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
