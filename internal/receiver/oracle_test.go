package receiver

import (
	"encoding/json"
	"strconv"
	"strings"
)

// referenceDecode decodes body the way DecodeEvent promises to, with
// encoding/json's struct and map decoding instead of DecodeEvent's own
// scanner: the oracle the fuzz target checks DecodeEvent against. ok is
// false where DecodeEvent must fail.
func referenceDecode(body []byte) (ev Event, ok bool) {
	var env struct {
		Type    json.RawMessage `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	if json.Unmarshal(body, &env) != nil {
		return Event{}, false
	}
	typ, ok := refString(env.Type, true)
	if !ok || !isObject(env.Payload) {
		return Event{}, false
	}
	ev.Type = typ
	if typ != TypeInStreamCreated && typ != TypeInStreamClosed {
		return ev, true
	}
	var p struct {
		Name           json.RawMessage `json:"name"`
		IP             json.RawMessage `json:"ip"`
		ConnectionType json.RawMessage `json:"connectionType"`
		PullSettings   json.RawMessage `json:"pullSettings"`
	}
	if json.Unmarshal(env.Payload, &p) != nil {
		return Event{}, false
	}
	s := &StreamEvent{Type: typ, ConnectionType: ConnectionTypeUnknown}
	if s.Name, ok = refString(p.Name, true); !ok {
		return Event{}, false
	}
	if s.IP, ok = refString(p.IP, false); !ok {
		return Event{}, false
	}
	if !isNull(p.ConnectionType) {
		n, err := strconv.Atoi(string(p.ConnectionType))
		if err != nil {
			return Event{}, false
		}
		s.ConnectionType = n
	}
	if !isNull(p.PullSettings) {
		if !isObject(p.PullSettings) {
			return Event{}, false
		}
		var ps struct {
			URI json.RawMessage `json:"uri"`
		}
		var all map[string]json.RawMessage
		if json.Unmarshal(p.PullSettings, &ps) != nil || json.Unmarshal(p.PullSettings, &all) != nil {
			return Event{}, false
		}
		if s.PullURI, ok = refString(ps.URI, false); !ok {
			return Event{}, false
		}
		for k, raw := range all {
			if !strings.HasPrefix(k, "_") || firstByte(raw) != '"' {
				continue
			}
			var v string
			if json.Unmarshal(raw, &v) != nil {
				return Event{}, false
			}
			if s.Vars == nil {
				s.Vars = make(map[string]string)
			}
			s.Vars[k] = v
		}
	}
	ev.Stream = s
	return ev, true
}

// refString decodes a string field: absent or null is "" unless required;
// a required one must not be empty.
func refString(raw json.RawMessage, required bool) (string, bool) {
	if isNull(raw) {
		return "", !required
	}
	var v string
	if firstByte(raw) != '"' || json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	return v, !required || v != ""
}

func isObject(raw json.RawMessage) bool { return !isNull(raw) && firstByte(raw) == '{' }
