package ems

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// decodePullConfig reads one stored pull configuration (an object, or null
// which leaves pc unchanged) from dec, keeping only the fields PullConfig
// has and skipping the others without decoding them. Keys match exactly.
func decodePullConfig(dec *jsontext.Decoder, pc *PullConfig) error {
	return decodePullConfigShared(dec, pc, nil)
}

// decodePullConfigShared is decodePullConfig, taking the short strings
// that entries repeat (user variables, status descriptions) from strs; a
// nil strs shares none.
func decodePullConfigShared(dec *jsontext.Decoder, pc *PullConfig, strs *sharedStrings) error {
	return object(dec, true, func(key []byte) error {
		var err error
		var field string
		switch string(key) {
		case "configId":
			field = "configId"
			err = readValue(dec, func(v []byte) error { return decodeUint(v, &pc.ConfigID) })
		case "localStreamName":
			field = "localStreamName"
			pc.LocalStreamName, err = readOptString(dec)
		case "uri":
			field = "uri"
			pc.URI, err = readURI(dec)
		case "keepAlive":
			field = "keepAlive"
			err = readValue(dec, func(v []byte) error {
				var b flexBool
				err := b.UnmarshalJSON(v)
				pc.KeepAlive = bool(b)
				return err
			})
		case "status":
			field = "status"
			err = decodeStatus(dec, &pc.Status, strs)
		default:
			if len(key) < 1 || key[0] != '_' {
				return skipSmall(dec)
			}
			name := strs.get(key)
			field = name
			err = readValue(dec, func(v []byte) error {
				s, ok, err := strs.decode(v)
				if err == nil && ok {
					if pc.Vars == nil {
						pc.Vars = make(map[string]string, 2)
					}
					pc.Vars[name] = s
				}
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		return nil
	})
}

// skipSmall skips the next value, one of an entry's: read whole, in one
// pass, where SkipValue would read an object or array token by token. (A
// value as large as the answer, such as one of listConfig's categories, is
// skipped with SkipValue, which does not hold it.)
func skipSmall(dec *jsontext.Decoder) error {
	_, err := dec.ReadValue()
	return err
}

// readValue reads the next value, a scalar or not, and hands its bytes to
// fn, which must not keep them.
func readValue(dec *jsontext.Decoder, fn func(v []byte) error) error {
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	return fn(v)
}

// readOptString reads the next value: the text of a string, "" for
// anything else.
func readOptString(dec *jsontext.Decoder) (string, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return "", err
	}
	s, _, err := decodeOptString(v)
	return s, err
}

// decodeUint decodes a non-negative integer, or null (left unchanged).
func decodeUint(value []byte, n *uint64) error {
	if string(value) == "null" {
		return nil
	}
	v, err := strconv.ParseUint(string(value), 10, 64)
	if err != nil {
		return shapef("not an unsigned integer: %.24s", value)
	}
	*n = v
	return nil
}

// decodeOptString decodes a JSON string; any other value gives "", false.
func decodeOptString(value []byte) (string, bool, error) {
	if len(value) < 2 || value[0] != '"' {
		return "", false, nil
	}
	if inner := value[1 : len(value)-1]; verbatim(inner) {
		return string(inner), true, nil
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

// wirePullConfig decodes a PullConfig held inside a larger value.
type wirePullConfig struct{ pc PullConfig }

// UnmarshalJSON decodes a stored pull configuration.
func (w *wirePullConfig) UnmarshalJSON(data []byte) error {
	dec := getDecoder(bytes.NewBuffer(data))
	defer putDecoder(dec)
	return decodePullConfig(dec, &w.pc)
}

// decodeStatus reads the current state from a configuration's status
// object: {"current":{"code":0,"description":"Streaming","timestamp":...},
// "previous":{...}}. Null leaves st unchanged.
func decodeStatus(dec *jsontext.Decoder, st *PullStatus, strs *sharedStrings) error {
	return object(dec, true, func(key []byte) error {
		if string(key) != "current" {
			return skipSmall(dec)
		}
		return object(dec, true, func(key []byte) error {
			switch string(key) {
			case "code", "timestamp":
				isCode := string(key) == "code"
				return readValue(dec, func(v []byte) error {
					var n flexInt
					if err := n.UnmarshalJSON(v); err != nil {
						if isCode {
							return fmt.Errorf("code: %w", err)
						}
						return fmt.Errorf("timestamp: %w", err)
					}
					if isCode {
						st.Code = int(n)
					} else {
						st.Timestamp = int64(n)
					}
					return nil
				})
			case "description":
				return readValue(dec, func(v []byte) error {
					s, _, err := strs.decode(v)
					if err != nil {
						return fmt.Errorf("description: %w", err)
					}
					st.Description = s
					return nil
				})
			}
			return skipSmall(dec)
		})
	})
}

// readURI reads a uri that is either a string (stored configurations) or
// the object EMS makes of a parsed URI (pullStream answers), whose
// originalUri, else fullUri, it returns; null gives "".
func readURI(dec *jsontext.Decoder) (string, error) {
	k, err := peek(dec)
	if err != nil {
		return "", err
	}
	switch k {
	case '"':
		return readOptString(dec)
	case '{':
		var original, full string
		err := object(dec, false, func(key []byte) error {
			var err error
			switch {
			case bytes.EqualFold(key, []byte("originalUri")):
				original, err = readOptString(dec)
			case bytes.EqualFold(key, []byte("fullUri")):
				full, err = readOptString(dec)
			default:
				err = dec.SkipValue()
			}
			return err
		})
		if original == "" {
			original = full
		}
		return original, err
	case 'n':
		return "", dec.SkipValue()
	}
	if err := dec.SkipValue(); err != nil {
		return "", err
	}
	return "", shapef("uri: unexpected %s", kindName(k))
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
			return shapef("not a boolean: %.20s", data)
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
		return shapef("not a number: %.20s", data)
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
		return shapef("not a string: %.20s", data)
	}
	if string(data) == "null" {
		*s = ""
		return nil
	}
	*s = flexString(data)
	return nil
}

// streamPullConfigs reads listConfig's data (an object with one array per
// configuration category, or null) and calls fn with each pull entry, the
// other categories skipped unread. pc is reused from one call to the next,
// its Vars map included. With skip set, an entry that is valid JSON but no
// pull configuration is read to its end and reported to skip instead of
// failing the listing.
func streamPullConfigs(dec *jsontext.Decoder, fn func(pc *PullConfig) error, skip func(err error)) error {
	var pc PullConfig
	var vars map[string]string
	strs := newSharedStrings()
	return object(dec, true, func(key []byte) error {
		if string(key) != "pull" {
			return dec.SkipValue()
		}
		var y yielder
		return array(dec, func(i int) error {
			y.every(i, yieldConfigs)
			clear(vars)
			pc = PullConfig{Vars: vars}
			depth := dec.StackDepth()
			err := decodePullConfigShared(dec, &pc, strs)
			if pc.Vars != nil {
				vars = pc.Vars
				if len(pc.Vars) == 0 {
					pc.Vars = nil
				}
			}
			if err != nil {
				if skip == nil || !isShape(err) {
					return err
				}
				if err := skipRest(dec, depth); err != nil {
					return err
				}
				skip(err)
				return nil
			}
			return fn(&pc)
		})
	})
}

// streamNames reads listInboundStreamNames' data (an array of {"name":...}
// objects, or null) and calls fn with each name's bytes, valid during the
// call; an entry without a string name gives an empty one.
func streamNames(dec *jsontext.Decoder, fn func(name []byte) error) error {
	var name []byte
	var y yielder
	return array(dec, func(i int) error {
		y.every(i, yieldNames)
		name = name[:0]
		err := object(dec, false, func(key []byte) error {
			if string(key) != "name" {
				return dec.SkipValue()
			}
			return readValue(dec, func(v []byte) error {
				if len(v) < 2 || v[0] != '"' {
					return nil
				}
				var err error
				name, err = unquoteTo(name[:0], v)
				return err
			})
		})
		if err != nil {
			return err
		}
		if name == nil {
			name = []byte{}
		}
		return fn(name)
	})
}

// A listing of thousands of entries decodes for tens of milliseconds
// without waiting on its connection (the answer is buffered ahead of it),
// and Go's scheduler lets a goroutine run 10 ms before it preempts it.
// Meanwhile a goroutine that was preempted while holding a lock (the
// collector's workers preempt running goroutines) waits in the global run
// queue, and with it whatever waits for that lock. So a listing yields its
// processor once a millisecond of decoding has passed, looked at every
// yieldConfigs configurations or yieldNames names. A yield every 64
// configurations, whatever the time, made a listing of 50,000 entries
// about 10 % slower to decode, and 13 to 30 % slower read from a
// connection (BENCHMARKS.md).
const (
	yieldConfigs = 64
	yieldNames   = 1024
	yieldAfter   = time.Millisecond
)

// yielder yields the processor during a long decoding loop.
type yielder struct{ last time.Time }

// every yields, at every every-th element i but the first, if yieldAfter
// has passed since the last yield (or the first look).
func (y *yielder) every(i, every int) {
	if i == 0 || i%every != 0 {
		return
	}
	now := time.Now()
	switch {
	case y.last.IsZero():
		y.last = now
	case now.Sub(y.last) >= yieldAfter:
		runtime.Gosched()
		y.last = time.Now()
	}
}

// sharedStrings holds one copy of each short string a listing repeats from
// entry to entry (the names and values of user variables, the status
// descriptions), so that decoding them allocates nothing after the first.
// A nil *sharedStrings shares nothing.
type sharedStrings struct{ m map[string]string }

// Bounds of a sharedStrings: strings longer than maxSharedLen, or met once
// it holds maxShared, are not kept.
const (
	maxSharedLen = 64
	maxShared    = 1024
)

func newSharedStrings() *sharedStrings { return &sharedStrings{m: make(map[string]string)} }

// get returns b as a string, the copy held when there is one.
func (ss *sharedStrings) get(b []byte) string {
	if ss == nil || len(b) > maxSharedLen {
		return string(b)
	}
	if s, ok := ss.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(ss.m) < maxShared {
		ss.m[s] = s
	}
	return s
}

// decode is decodeOptString, a string without escapes taken from ss.
func (ss *sharedStrings) decode(value []byte) (string, bool, error) {
	if ss != nil && len(value) >= 2 && value[0] == '"' {
		if inner := value[1 : len(value)-1]; len(inner) <= maxSharedLen && verbatim(inner) {
			return ss.get(inner), true, nil
		}
	}
	return decodeOptString(value)
}
