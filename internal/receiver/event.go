package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Event types the balancer acts on.
const (
	TypeInStreamCreated = "inStreamCreated"
	TypeInStreamClosed  = "inStreamClosed"
	// TypeServerStarted: the EMS that posts it has just started, and
	// holds none of the pulls it held before unless it restored them.
	TypeServerStarted = "serverStarted"
)

// ActedOn are the event types the balancer acts on, the enabledEvents that
// README.md gives EMS's event sink. Other types are answered and counted.
func ActedOn() []string {
	return []string{TypeInStreamCreated, TypeInStreamClosed, TypeServerStarted}
}

// ConnectionTypeUnknown is StreamEvent.ConnectionType for a payload that
// carries no connectionType.
const ConnectionTypeUnknown = -1

// StreamEvent is what the balancer needs from an inStreamCreated or
// inStreamClosed event.
type StreamEvent struct {
	// Type is TypeInStreamCreated or TypeInStreamClosed.
	Type string
	// Name is payload.name, the stream's local name; never empty.
	Name string
	// IP is payload.ip: the EMS's own near address on the stream's
	// connection, "" for file or internal streams.
	IP string
	// Peer is the address of the HTTP client that posted the event (the
	// EMS), IPv4-mapped addresses unmapped and any zone removed. It is the
	// zero Addr when the event was decoded without a request (DecodeEvent).
	Peer netip.Addr
	// ConnectionType is payload.connectionType: 0 for a stream published by
	// an encoder, 1 pulled, 2 pushed, and so on; ConnectionTypeUnknown when
	// the payload has none.
	ConnectionType int
	// PullURI is payload.pullSettings.uri, "" when absent.
	PullURI string
	// Vars holds the payload.pullSettings keys that begin with "_" and have
	// string values (user variables echoed by EMS, such as a provenance
	// tag), keyed by the full key, underscore included. It is nil when
	// there are none.
	Vars map[string]string
	// Received is when the receiver got the event; zero from DecodeEvent.
	Received time.Time
}

// Event is one decoded EMS event notification.
type Event struct {
	// Type is the envelope's type, such as "inStreamCreated".
	Type string
	// Stream is non-nil for inStreamCreated and inStreamClosed events.
	Stream *StreamEvent
}

// ErrMalformed is matched, with errors.Is, by every error DecodeEvent
// returns. The error's text says what is wrong with the event and is safe
// to show to the sender.
var ErrMalformed = errors.New("malformed event")

type malformedError struct{ msg string }

func (e *malformedError) Error() string        { return e.msg }
func (e *malformedError) Is(target error) bool { return target == ErrMalformed }

func malformed(format string, args ...any) error {
	return &malformedError{msg: fmt.Sprintf(format, args...)}
}

// DecodeEvent decodes one EMS RPC event body (the JSON serializer's
// envelope: type, payload and, depending on the EMS build, id, processId
// and timestamp). Only type and payload are required; for inStreamCreated
// and inStreamClosed the payload must also carry a non-empty string name,
// and Event.Stream is filled in (Peer and Received stay zero).
//
// Every error it returns matches ErrMalformed. On error the returned Event
// still carries Type when the type could be read.
func DecodeEvent(body []byte) (Event, error) { return decodeEvent(body, 0) }

// decodeEvent is DecodeEvent keeping at most maxVars user variables (0: no
// limit); past them, the others are neither decoded nor checked.
func decodeEvent(body []byte, maxVars int) (Event, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return Event{}, malformed("empty body")
	}
	// Keys match as encoding/json matches a struct's fields: the last of
	// equal keys wins, and case does not matter. id, processId and
	// timestamp are left alone (older builds lack some).
	var rawType, payload []byte
	isObject, err := walkBody(body, func(key, value []byte) {
		switch {
		case fieldIs(key, "type"):
			rawType = value
		case fieldIs(key, "payload"):
			payload = value
		}
	})
	if err != nil {
		// encoding/json says where and what is wrong.
		msg := "invalid JSON: " + err.Error()
		if serr, ok := errors.AsType[*json.SyntaxError](json.Unmarshal(body, new(json.RawMessage))); ok {
			msg = fmt.Sprintf("invalid JSON at offset %d: %s", serr.Offset, serr.Error())
		}
		if firstByte(body) == '<' {
			msg += " (the body looks like XML: the EMS sink needs serializerType=\"JSON\")"
		}
		return Event{}, malformed("%s", msg)
	}
	if !isObject {
		return Event{}, malformed("body is a JSON %s, not an object", jsonKind(firstByte(body)))
	}

	typ, err := requiredString(rawType, "type")
	if err != nil {
		return Event{}, err
	}
	ev := Event{Type: typ}
	if isNull(payload) {
		return ev, malformed(`missing "payload"`)
	}
	if c := firstByte(payload); c != '{' {
		return ev, malformed(`"payload" is a JSON %s, not an object`, jsonKind(c))
	}
	if typ != TypeInStreamCreated && typ != TypeInStreamClosed {
		return ev, nil
	}
	s, err := decodeStream(typ, payload, maxVars)
	if err != nil {
		return ev, err
	}
	ev.Stream = s
	return ev, nil
}

// fieldIs reports whether an object's key names field, as encoding/json
// matches keys to struct fields (without regard to case).
func fieldIs(key []byte, field string) bool {
	return bytes.EqualFold(key, []byte(field))
}

// decodeStream reads a stream event's payload, a valid JSON object. Every
// value is kept raw until its type is checked, so no number goes through
// float64. At most maxVars user variables are kept (0: all).
func decodeStream(typ string, payload []byte, maxVars int) (*StreamEvent, error) {
	var rawName, rawIP, rawCT, pullSettings []byte
	_ = eachMember(payload, func(key, value []byte) error { // payload is valid: no error
		switch {
		case fieldIs(key, "name"):
			rawName = value
		case fieldIs(key, "ip"):
			rawIP = value
		case fieldIs(key, "connectionType"):
			rawCT = value
		case fieldIs(key, "pullSettings"):
			pullSettings = value
		}
		return nil
	})
	name, err := requiredString(rawName, "payload.name")
	if err != nil {
		return nil, err
	}
	ip, err := optionalString(rawIP, "payload.ip")
	if err != nil {
		return nil, err
	}
	ct := ConnectionTypeUnknown
	if !isNull(rawCT) {
		n, err := strconv.Atoi(string(rawCT))
		if err != nil {
			return nil, malformed(`"payload.connectionType" is not an integer: %s`, excerpt(rawCT, 40))
		}
		ct = n
	}
	s := &StreamEvent{Type: typ, Name: name, IP: ip, ConnectionType: ct}
	if isNull(pullSettings) {
		return s, nil
	}
	if c := firstByte(pullSettings); c != '{' {
		return nil, malformed(`"payload.pullSettings" is a JSON %s, not an object`, jsonKind(c))
	}
	// The "_" user variables match exactly, as a map's keys do.
	var rawURI []byte
	err = eachMember(pullSettings, func(key, value []byte) error {
		if fieldIs(key, "uri") {
			rawURI = value
		}
		if len(key) == 0 || key[0] != '_' || firstByte(value) != '"' || maxVars > 0 && len(s.Vars) >= maxVars {
			return nil
		}
		v, err := unquote(value)
		if err != nil {
			return malformed("decode %q: %s", "payload.pullSettings."+string(key), err.Error())
		}
		if s.Vars == nil {
			s.Vars = make(map[string]string)
		}
		s.Vars[string(key)] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.PullURI, err = optionalString(rawURI, "payload.pullSettings.uri"); err != nil {
		return nil, err
	}
	return s, nil
}

// requiredString decodes raw as a JSON string that must be present,
// non-null and non-empty.
func requiredString(raw []byte, field string) (string, error) {
	if isNull(raw) {
		return "", malformed("missing %q", field)
	}
	v, err := optionalString(raw, field)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", malformed("%q is empty", field)
	}
	return v, nil
}

// optionalString decodes raw as a JSON string; absent or null is "".
func optionalString(raw []byte, field string) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	if c := firstByte(raw); c != '"' {
		return "", malformed("%q is a JSON %s, not a string", field, jsonKind(c))
	}
	v, err := unquote(raw)
	if err != nil {
		return "", malformed("decode %q: %s", field, err.Error())
	}
	return v, nil
}

// isNull reports whether raw is absent or the JSON null literal.
func isNull(raw []byte) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// firstByte returns the first non-whitespace byte of b, or 0.
func firstByte(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// jsonKind names the kind of JSON value that starts with c.
func jsonKind(c byte) string {
	switch {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "number"
	}
	return "value"
}

// excerpt returns at most n bytes of b as valid UTF-8, marking a cut.
func excerpt(b []byte, n int) string {
	cut := len(b) > n
	if cut {
		b = b[:n]
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if cut {
		s += "..."
	}
	return s
}

// The event's JSON is read with jsontext's decoder, set to accept what
// encoding/json accepts (repeated keys, invalid UTF-8 in strings), parsing
// the body in place: the raw values it returns are slices of the body.
var decodeOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// walkBody checks that body holds exactly one JSON value, with whitespace
// around it, and, when it is an object, calls fn with the unescaped key
// and the raw value of each member, in order. key is valid during the
// call; value as long as body.
func walkBody(body []byte, fn func(key, value []byte)) (isObject bool, err error) {
	dec := getDecoder(body)
	defer putDecoder(dec)
	if dec.PeekKind() == '{' {
		isObject = true
		err = eachMemberOf(dec, func(key, value []byte) error { fn(key, value); return nil })
	} else {
		err = dec.SkipValue()
	}
	if err != nil {
		return false, err
	}
	switch _, err := dec.ReadToken(); err {
	case io.EOF:
		return isObject, nil
	case nil:
		return false, errors.New("more than one value")
	default:
		return false, err
	}
}

// eachMember calls fn with the unescaped key and the raw value of every
// member of obj, a valid JSON object, in order. An error from fn stops
// the walk and is returned.
func eachMember(obj []byte, fn func(key, value []byte) error) error {
	dec := getDecoder(obj)
	defer putDecoder(dec)
	return eachMemberOf(dec, fn)
}

// decoders keeps decoders for reuse: building one costs more than reading
// an event with it.
var decoders sync.Pool // *jsontext.Decoder

// getDecoder returns a decoder reading b in place.
func getDecoder(b []byte) *jsontext.Decoder {
	if dec, ok := decoders.Get().(*jsontext.Decoder); ok {
		dec.Reset(bytes.NewBuffer(b), decodeOptions...)
		return dec
	}
	return jsontext.NewDecoder(bytes.NewBuffer(b), decodeOptions...)
}

// putDecoder keeps dec for reuse, without its input.
func putDecoder(dec *jsontext.Decoder) {
	dec.Reset(eof{}, decodeOptions...)
	decoders.Put(dec)
}

// eof is an empty reader.
type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

func eachMemberOf(dec *jsontext.Decoder, fn func(key, value []byte) error) error {
	if _, err := dec.ReadToken(); err != nil { // '{'
		return err
	}
	for dec.PeekKind() != '}' {
		rawKey, err := dec.ReadValue()
		if err != nil {
			return err
		}
		key := rawKey[1 : len(rawKey)-1]
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			s, err := unquote(rawKey)
			if err != nil {
				return err
			}
			key = []byte(s)
		}
		value, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if err := fn(key, value); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken() // '}', or the error that stopped PeekKind
	return err
}

// unquote returns the text of raw, a valid JSON string with its quotes, as
// encoding/json decodes it (invalid UTF-8 and lone surrogates as U+FFFD).
func unquote(raw []byte) (string, error) {
	if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}
