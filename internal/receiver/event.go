package receiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"streamlb/internal/ems"
)

// Event types the balancer acts on.
const (
	TypeInStreamCreated = "inStreamCreated"
	TypeInStreamClosed  = "inStreamClosed"
)

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
	if !ems.ValidJSON(body) {
		// encoding/json says where and what is wrong.
		err := json.Unmarshal(body, new(json.RawMessage))
		msg := "invalid JSON"
		if serr, ok := errors.AsType[*json.SyntaxError](err); ok {
			msg = fmt.Sprintf("invalid JSON at offset %d: %s", serr.Offset, serr.Error())
		}
		if firstByte(body) == '<' {
			msg += " (the body looks like XML: the EMS sink needs serializerType=\"JSON\")"
		}
		return Event{}, malformed("%s", msg)
	}
	if c := firstByte(body); c != '{' {
		return Event{}, malformed("body is a JSON %s, not an object", jsonKind(c))
	}
	// Keys match as encoding/json matches a struct's fields: the last of
	// equal keys wins, and case does not matter. id, processId and
	// timestamp are left alone (older builds lack some).
	var rawType, payload []byte
	_ = ems.EachMember(body, func(key, value []byte) error { // body is valid: no error
		switch {
		case fieldIs(key, "type"):
			rawType = value
		case fieldIs(key, "payload"):
			payload = value
		}
		return nil
	})

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
	_ = ems.EachMember(payload, func(key, value []byte) error { // payload is valid: no error
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
	err = ems.EachMember(pullSettings, func(key, value []byte) error {
		if fieldIs(key, "uri") {
			rawURI = value
		}
		if len(key) == 0 || key[0] != '_' || firstByte(value) != '"' || maxVars > 0 && len(s.Vars) >= maxVars {
			return nil
		}
		v, err := ems.UnquoteString(value)
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
	v, err := ems.UnquoteString(raw)
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
