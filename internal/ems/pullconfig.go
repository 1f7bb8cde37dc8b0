package ems

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodePullConfig reads one stored pull configuration (an object, or null
// which leaves pc unchanged) from dec. The object is read whole, then only
// the fields PullConfig has are decoded.
func decodePullConfig(dec *json.Decoder, pc *PullConfig, buf *json.RawMessage) error {
	if err := dec.Decode(buf); err != nil {
		return err
	}
	return decodePullConfigBytes(*buf, pc)
}

// decodePullConfigBytes decodes a stored pull configuration from obj, a
// valid JSON object or null, keeping only the fields PullConfig has and
// skipping the others without decoding them.
func decodePullConfigBytes(obj []byte, pc *PullConfig) error {
	obj = bytes.TrimSpace(obj)
	if bytes.Equal(obj, []byte("null")) {
		return nil
	}
	return eachMember(obj, func(key, value []byte) error {
		var err error
		switch string(key) {
		case "configId":
			err = decodeUint(value, &pc.ConfigID)
		case "localStreamName":
			pc.LocalStreamName, _, err = decodeOptString(value)
		case "uri":
			var u wireURI
			err = u.UnmarshalJSON(value)
			pc.URI = u.s
		case "keepAlive":
			var b flexBool
			err = b.UnmarshalJSON(value)
			pc.KeepAlive = bool(b)
		case "status":
			err = decodeStatus(value, &pc.Status)
		default:
			if len(key) < 1 || key[0] != '_' {
				return nil
			}
			var s string
			var ok bool
			s, ok, err = decodeOptString(value)
			if err == nil && ok {
				if pc.Vars == nil {
					pc.Vars = make(map[string]string, 2)
				}
				pc.Vars[string(key)] = s
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
}

// decodeUint decodes a non-negative integer, or null (left unchanged).
func decodeUint(value []byte, n *uint64) error {
	if string(value) == "null" {
		return nil
	}
	v, err := strconv.ParseUint(string(value), 10, 64)
	if err != nil {
		return fmt.Errorf("not an unsigned integer: %.24s", value)
	}
	*n = v
	return nil
}

// decodeOptString decodes a JSON string; any other value gives "", false.
func decodeOptString(value []byte) (string, bool, error) {
	if len(value) < 2 || value[0] != '"' {
		return "", false, nil
	}
	if inner := value[1 : len(value)-1]; utf8.Valid(inner) {
		if bytes.IndexByte(inner, '\\') < 0 {
			return string(inner), true, nil
		}
		if s, ok := unescapeSimple(inner); ok {
			return s, true, nil
		}
	}
	var s string
	if err := json.Unmarshal(value, &s); err != nil {
		return "", false, err
	}
	return s, true, nil
}

// unescapeSimple returns the text of a JSON string's inside that uses only
// the one-character escapes (EMS writes every '/' as \/); it reports false
// for anything else (\u escapes, a malformed escape), left to
// encoding/json. inner must be valid UTF-8 (the caller checks): invalid
// bytes are copied as they are, where encoding/json would write U+FFFD.
func unescapeSimple(inner []byte) (string, bool) {
	var b strings.Builder
	b.Grow(len(inner))
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '"' || c < 0x20 {
			return "", false
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(inner) {
			return "", false
		}
		switch inner[i] {
		case '"', '\\', '/':
			b.WriteByte(inner[i])
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		default:
			return "", false
		}
	}
	return b.String(), true
}

// eachMember calls fn with the unescaped key and the raw value of every
// member of obj, a JSON object, in order. Values are not decoded. obj is
// expected to be valid JSON (as json.Decoder returns it); malformed input
// gives an error, never a panic.
func eachMember(obj []byte, fn func(key, value []byte) error) error {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errors.New("not an object")
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return errors.New("malformed object: want a key")
		}
		end, err := endOfString(obj, i)
		if err != nil {
			return err
		}
		key := obj[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
			var k string
			if err := json.Unmarshal(obj[i:end], &k); err != nil {
				return err
			}
			key = []byte(k)
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return errors.New("malformed object: want ':'")
		}
		i = skipSpace(obj, i+1)
		vend, err := endOfValue(obj, i)
		if err != nil {
			return err
		}
		if err := fn(key, obj[i:vend]); err != nil {
			return err
		}
		i = skipSpace(obj, vend)
		if i >= len(obj) {
			return errors.New("malformed object: unexpected end")
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return nil
		default:
			return errors.New("malformed object: want ',' or '}'")
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// endOfString returns the index just past the string starting at b[i].
func endOfString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errors.New("malformed JSON: unterminated string")
}

// endOfValue returns the index just past the value starting at b[i].
func endOfValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("malformed JSON: missing value")
	}
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := endOfString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("malformed JSON: unterminated value")
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\r' && b[j] != '\n' {
		j++
	}
	if j == i {
		return 0, errors.New("malformed JSON: missing value")
	}
	return j, nil
}

// decodePullList reads an array of pull configurations (or null) from dec
// and appends them to *out.
func decodePullList(dec *json.Decoder, out *[]PullConfig) error {
	ok, err := openValue(dec, '[')
	if err != nil || !ok {
		return err
	}
	var buf json.RawMessage
	for dec.More() {
		var pc PullConfig
		if err := decodePullConfig(dec, &pc, &buf); err != nil {
			return fmt.Errorf("pull[%d]: %w", len(*out), err)
		}
		*out = append(*out, pc)
	}
	return expectDelim(dec, ']')
}

// decodeConfigData reads listConfig's data, an object with one array per
// configuration category, keeping the pull entries and skipping the other
// categories wholesale.
func decodeConfigData(dec *json.Decoder, out *[]PullConfig) error {
	ok, err := openValue(dec, '{')
	if err != nil || !ok {
		return err
	}
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return err
		}
		if key == "pull" {
			if err := decodePullList(dec, out); err != nil {
				return err
			}
			continue
		}
		if err := skip(dec); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return expectDelim(dec, '}')
}

// wirePullConfig decodes a PullConfig held inside a larger value.
type wirePullConfig struct{ pc PullConfig }

// UnmarshalJSON decodes a stored pull configuration.
func (w *wirePullConfig) UnmarshalJSON(data []byte) error {
	return decodePullConfigBytes(data, &w.pc)
}

// decodeStatus decodes the current state from a configuration's status
// object: {"current":{"code":0,"description":"Streaming","timestamp":...},
// "previous":{...}}. Null leaves st unchanged.
func decodeStatus(value []byte, st *PullStatus) error {
	if string(value) == "null" {
		return nil
	}
	return eachMember(value, func(key, cur []byte) error {
		if string(key) != "current" || string(cur) == "null" {
			return nil
		}
		return eachMember(cur, func(key, v []byte) error {
			switch string(key) {
			case "code":
				var n flexInt
				if err := n.UnmarshalJSON(v); err != nil {
					return fmt.Errorf("code: %w", err)
				}
				st.Code = int(n)
			case "description":
				s, _, err := decodeOptString(v)
				if err != nil {
					return fmt.Errorf("description: %w", err)
				}
				st.Description = s
			case "timestamp":
				var n flexInt
				if err := n.UnmarshalJSON(v); err != nil {
					return fmt.Errorf("timestamp: %w", err)
				}
				st.Timestamp = int64(n)
			}
			return nil
		})
	})
}

// wireURI is a uri that is either a string (stored configurations) or the
// object EMS makes of a parsed URI (pullStream answers).
type wireURI struct{ s string }

// UnmarshalJSON accepts a string, an object with originalUri or fullUri,
// or null.
func (u *wireURI) UnmarshalJSON(data []byte) error {
	switch {
	case len(data) > 0 && data[0] == '"':
		return json.Unmarshal(data, &u.s)
	case len(data) > 0 && data[0] == '{':
		var original, full string
		err := eachMember(data, func(key, value []byte) error {
			var err error
			switch {
			case strings.EqualFold(string(key), "originalUri"):
				original, _, err = decodeOptString(value)
			case strings.EqualFold(string(key), "fullUri"):
				full, _, err = decodeOptString(value)
			}
			return err
		})
		if err != nil {
			return err
		}
		u.s = original
		if u.s == "" {
			u.s = full
		}
		return nil
	case bytes.Equal(data, []byte("null")):
		u.s = ""
		return nil
	}
	return fmt.Errorf("uri: unexpected %.20s", data)
}

// flexBool is a boolean that EMS may also write as a number (0 false).
type flexBool bool

// UnmarshalJSON accepts true, false, null and numbers.
func (b *flexBool) UnmarshalJSON(data []byte) error {
	switch s := string(data); s {
	case "true":
		*b = true
	case "false", "null":
		*b = false
	default:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a boolean: %.20s", data)
		}
		*b = f != 0
	}
	return nil
}

// flexInt is an integer that may be written with a fraction.
type flexInt int64

// UnmarshalJSON accepts integers, decimal numbers (truncated) and null.
func (n *flexInt) UnmarshalJSON(data []byte) error {
	s := string(data)
	if s == "null" {
		return nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		*n = flexInt(i)
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("not a number: %.20s", data)
	}
	*n = flexInt(f)
	return nil
}

// flexString is a string that EMS may also write as a number (version's
// buildDate in one EMS 1.7.0 sample).
type flexString string

// UnmarshalJSON accepts strings, numbers (kept as written), booleans and null.
func (s *flexString) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var v string
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		*s = flexString(v)
		return nil
	}
	if len(data) > 0 && (data[0] == '{' || data[0] == '[') {
		return fmt.Errorf("not a string: %.20s", data)
	}
	if string(data) == "null" {
		*s = ""
		return nil
	}
	*s = flexString(data)
	return nil
}
