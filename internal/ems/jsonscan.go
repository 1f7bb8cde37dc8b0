package ems

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// A strict JSON scanner for the large answers (listConfig, listInbound
// StreamNames): it accepts exactly what encoding/json accepts, finds the end
// of one value at a time without building anything, and lets a streamed
// body be decoded entry by entry with a small buffer.

// maxDepth is how deeply values may nest, as in encoding/json.
const maxDepth = 10000

// errShort reports that the input ended inside a value that more input
// could complete.
var errShort = errors.New("unexpected end of JSON input")

// syntaxError describes invalid JSON at an offset of the scanned bytes.
type syntaxError struct {
	msg string
	off int
}

func (e *syntaxError) Error() string { return fmt.Sprintf("invalid JSON at byte %d: %s", e.off, e.msg) }

func badByte(b []byte, i int, context string) error {
	return &syntaxError{msg: fmt.Sprintf("invalid character %q %s", b[i], context), off: i}
}

// scanValue returns the index just past the JSON value starting at b[i]
// (whitespace before it is skipped). With final false, input that ends
// where more bytes could continue the value gives errShort; with final
// true, b is all there is.
func scanValue(b []byte, i int, final bool) (int, error) {
	return scanDepth(b, skipSpace(b, i), final, 0)
}

func scanDepth(b []byte, i int, final bool, depth int) (int, error) {
	if i >= len(b) {
		return 0, errShort
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{':
		return scanObject(b, i, final, depth+1)
	case c == '[':
		return scanArray(b, i, final, depth+1)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(b, i, final)
	default:
		return 0, badByte(b, i, "looking for beginning of value")
	}
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	for k := 1; k < len(lit); k++ {
		if i+k >= len(b) {
			return 0, errShort
		}
		if b[i+k] != lit[k] {
			return 0, badByte(b, i+k, "in literal "+lit)
		}
	}
	return i + len(lit), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scanNumber scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?.
func scanNumber(b []byte, i int, final bool) (int, error) {
	j := i
	if b[j] == '-' {
		j++
	}
	// end reports a number that stops at j: at the end of the input, more
	// digits could still follow unless the input is final.
	end := func(j int, complete bool) (int, error) {
		switch {
		case j >= len(b) && (!final || !complete):
			return 0, errShort
		case !complete:
			return 0, badByte(b, j, "in numeric literal")
		}
		return j, nil
	}
	if j >= len(b) {
		return end(j, false)
	}
	switch {
	case b[j] == '0':
		j++
	case b[j] >= '1' && b[j] <= '9':
		for j++; j < len(b) && isDigit(b[j]); j++ {
		}
	default:
		return end(j, false)
	}
	if j < len(b) && b[j] == '.' {
		j++
		if j >= len(b) || !isDigit(b[j]) {
			return end(j, false)
		}
		for j++; j < len(b) && isDigit(b[j]); j++ {
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j >= len(b) || !isDigit(b[j]) {
			return end(j, false)
		}
		for j++; j < len(b) && isDigit(b[j]); j++ {
		}
	}
	return end(j, true)
}

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// scanString scans a string starting at the quote b[i]: no control
// characters, only the escapes \" \\ \/ \b \f \n \r \t \uXXXX. Other bytes,
// invalid UTF-8 included, pass (encoding/json replaces those when it
// decodes).
func scanString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, nil
		case c == '\\':
			j++
			if j >= len(b) {
				return 0, errShort
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for k := 1; k <= 4; k++ {
					if j+k >= len(b) {
						return 0, errShort
					}
					if !isHex(b[j+k]) {
						return 0, badByte(b, j+k, "in \\u hexadecimal character escape")
					}
				}
				j += 4
			default:
				return 0, badByte(b, j, "in string escape code")
			}
		case c < 0x20:
			return 0, badByte(b, j, "in string literal")
		}
	}
	return 0, errShort
}

func scanObject(b []byte, i int, final bool, depth int) (int, error) {
	if depth > maxDepth {
		return 0, &syntaxError{msg: "exceeded max depth", off: i}
	}
	j := skipSpace(b, i+1)
	if j >= len(b) {
		return 0, errShort
	}
	if b[j] == '}' {
		return j + 1, nil
	}
	for {
		if j >= len(b) {
			return 0, errShort
		}
		if b[j] != '"' {
			return 0, badByte(b, j, "looking for beginning of object key string")
		}
		end, err := scanString(b, j)
		if err != nil {
			return 0, err
		}
		j = skipSpace(b, end)
		if j >= len(b) {
			return 0, errShort
		}
		if b[j] != ':' {
			return 0, badByte(b, j, "after object key")
		}
		if j, err = scanDepth(b, skipSpace(b, j+1), final, depth); err != nil {
			return 0, err
		}
		j = skipSpace(b, j)
		if j >= len(b) {
			return 0, errShort
		}
		switch b[j] {
		case ',':
			j = skipSpace(b, j+1)
		case '}':
			return j + 1, nil
		default:
			return 0, badByte(b, j, "after object key:value pair")
		}
	}
}

func scanArray(b []byte, i int, final bool, depth int) (int, error) {
	if depth > maxDepth {
		return 0, &syntaxError{msg: "exceeded max depth", off: i}
	}
	j := skipSpace(b, i+1)
	if j >= len(b) {
		return 0, errShort
	}
	if b[j] == ']' {
		return j + 1, nil
	}
	for {
		var err error
		if j, err = scanDepth(b, j, final, depth); err != nil {
			return 0, err
		}
		j = skipSpace(b, j)
		if j >= len(b) {
			return 0, errShort
		}
		switch b[j] {
		case ',':
			j = skipSpace(b, j+1)
		case ']':
			return j + 1, nil
		default:
			return 0, badByte(b, j, "after array element")
		}
	}
}

// validJSON reports whether b is exactly one JSON value, with optional
// whitespace around it; it agrees with json.Valid.
func validJSON(b []byte) bool {
	end, err := scanValue(b, 0, true)
	return err == nil && skipSpace(b, end) == len(b)
}

// unquote returns the text of the JSON string s, a scanned string with its
// quotes.
func unquote(s []byte) (string, error) {
	if inner := s[1 : len(s)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), nil
	}
	var out string
	err := json.Unmarshal(s, &out)
	return out, err
}

// jsonStream reads JSON values one at a time from a body, keeping only the
// value being read in its buffer.
type jsonStream struct {
	r    io.Reader
	buf  []byte
	off  int // start of the unread bytes
	n    int // end of the bytes read
	eof  bool
	rerr error // a read error other than io.EOF
}

const streamBufSize = 32 << 10

func newJSONStream(r io.Reader) *jsonStream {
	return &jsonStream{r: r, buf: make([]byte, streamBufSize)}
}

// fill reads more input after the unread bytes, moving them to the front
// and growing the buffer when it is full. It reports false at the end of
// the input or on a read error (in s.rerr).
func (s *jsonStream) fill() bool {
	if s.eof || s.rerr != nil {
		return false
	}
	if s.off > 0 {
		s.n = copy(s.buf, s.buf[s.off:s.n])
		s.off = 0
	}
	if s.n == len(s.buf) {
		nb := make([]byte, 2*len(s.buf))
		copy(nb, s.buf[:s.n])
		s.buf = nb
	}
	for range 100 {
		k, err := s.r.Read(s.buf[s.n:])
		s.n += k
		switch {
		case err == io.EOF:
			s.eof = true
			return k > 0
		case err != nil:
			s.rerr = err
			return k > 0
		case k > 0:
			return true
		}
	}
	s.rerr = io.ErrNoProgress
	return false
}

// endErr is the error for input that ended too soon.
func (s *jsonStream) endErr() error {
	if s.rerr != nil {
		return s.rerr
	}
	return io.ErrUnexpectedEOF
}

// peek skips whitespace and returns the next byte without consuming it.
func (s *jsonStream) peek() (byte, error) {
	for {
		s.off = skipSpace(s.buf[:s.n], s.off)
		if s.off < s.n {
			return s.buf[s.off], nil
		}
		if !s.fill() {
			return 0, s.endErr()
		}
	}
}

// expect consumes the next non-space byte, which must be c.
func (s *jsonStream) expect(c byte) error {
	got, err := s.peek()
	if err != nil {
		return err
	}
	if got != c {
		return badByte(s.buf[:s.n], s.off, fmt.Sprintf("where %q was expected", c))
	}
	s.off++
	return nil
}

// value consumes the next value and returns its bytes, valid until the next
// call.
func (s *jsonStream) value() ([]byte, error) {
	if _, err := s.peek(); err != nil {
		return nil, err
	}
	for {
		end, err := scanValue(s.buf[:s.n], s.off, s.eof)
		if err == nil {
			v := s.buf[s.off:end]
			s.off = end
			return v, nil
		}
		if err != errShort {
			return nil, err
		}
		if !s.fill() {
			return nil, s.endErr()
		}
	}
}

// str consumes the next value, which must be a string, and returns its
// text.
func (s *jsonStream) str() (string, error) {
	v, err := s.value()
	if err != nil {
		return "", err
	}
	if v[0] != '"' {
		return "", &syntaxError{msg: "want a string", off: s.off - len(v)}
	}
	return unquote(v)
}

// open consumes null (reporting false) or the delimiter open ('{' or '[').
func (s *jsonStream) open(open byte) (bool, error) {
	c, err := s.peek()
	if err != nil {
		return false, err
	}
	if c == 'n' {
		v, err := s.value()
		if err != nil {
			return false, err
		}
		if string(v) != "null" {
			return false, errors.New("want null")
		}
		return false, nil
	}
	return true, s.expect(open)
}

// next is called after a container's opening delimiter or after one of its
// elements: it consumes the separator and reports whether another element
// follows, consuming the closing delimiter if not.
func (s *jsonStream) next(closing byte, first bool) (bool, error) {
	c, err := s.peek()
	if err != nil {
		return false, err
	}
	if c == closing {
		s.off++
		return false, nil
	}
	if first {
		return true, nil
	}
	if c != ',' {
		return false, badByte(s.buf[:s.n], s.off, fmt.Sprintf("where ',' or %q was expected", closing))
	}
	s.off++
	return true, nil
}

// members calls fn for each member of the object that comes next (or
// null), with the stream positioned at the member's value; fn must consume
// exactly that value.
func (s *jsonStream) members(fn func(key string) error) error {
	ok, err := s.open('{')
	if err != nil || !ok {
		return err
	}
	for first := true; ; first = false {
		more, err := s.next('}', first)
		if err != nil || !more {
			return err
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := fn(key); err != nil {
			return err
		}
	}
}

// elements calls fn with the bytes of each element of the array that comes
// next (or null); the bytes are valid during the call.
func (s *jsonStream) elements(fn func(v []byte) error) error {
	ok, err := s.open('[')
	if err != nil || !ok {
		return err
	}
	for first, i := true, 0; ; first, i = false, i+1 {
		more, err := s.next(']', first)
		if err != nil || !more {
			return err
		}
		v, err := s.value()
		if err != nil {
			return err
		}
		if err := fn(v); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
	}
}

// end checks that only whitespace is left.
func (s *jsonStream) end() error {
	_, err := s.peek()
	switch {
	case err == io.ErrUnexpectedEOF:
		return nil
	case err != nil:
		return err
	}
	return errors.New("data after the envelope")
}

// walkStream reads one envelope from s, calling data with s positioned at
// the data value (null included), which data must consume. Keys may come
// in any order; after the envelope only whitespace may follow. It is the
// streaming twin of walkEnvelope.
func walkStream(s *jsonStream, data func(*jsonStream) error) (envelopeMeta, error) {
	var meta envelopeMeta
	if c, err := s.peek(); err != nil {
		return meta, err
	} else if c != '{' {
		return meta, badByte(s.buf[:s.n], s.off, "where '{' was expected")
	}
	hasStatus := false
	err := s.members(func(key string) error {
		switch key {
		case "status", "description":
			v, err := s.value()
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			str, ok, err := decodeOptString(v)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if key == "description" {
				meta.Description = str
				return nil
			}
			if !ok {
				return errors.New("status: not a string")
			}
			meta.Status, hasStatus = str, true
		case "data":
			if err := data(s); err != nil {
				return fmt.Errorf("data: %w", err)
			}
		default:
			if _, err := s.value(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return meta, err
	}
	if err := s.end(); err != nil {
		return meta, err
	}
	if !hasStatus {
		return meta, errors.New("envelope has no status")
	}
	return meta, nil
}

// streamPullConfigs reads listConfig's data (an object with one array per
// configuration category, or null) and calls fn with each pull entry. pc is
// reused from one call to the next, its Vars map included.
func streamPullConfigs(s *jsonStream, fn func(pc *PullConfig) error, skip func(err error)) error {
	var pc PullConfig
	var vars map[string]string
	return s.members(func(key string) error {
		if key != "pull" {
			_, err := s.value()
			return err
		}
		return s.elements(func(v []byte) error {
			clear(vars)
			pc = PullConfig{Vars: vars}
			err := decodePullConfigBytes(v, &pc)
			if pc.Vars != nil {
				vars = pc.Vars
				if len(pc.Vars) == 0 {
					pc.Vars = nil
				}
			}
			if err != nil {
				if skip != nil {
					skip(err)
					return nil
				}
				return err
			}
			return fn(&pc)
		})
	})
}

// streamNames reads listInboundStreamNames' data (an array of {"name":...}
// objects, or null) and calls fn with each name's bytes, valid during the
// call.
func streamNames(s *jsonStream, fn func(name []byte) error) error {
	return s.elements(func(v []byte) error {
		var name []byte
		err := eachMember(v, func(key, value []byte) error {
			if string(key) != "name" || len(value) < 2 || value[0] != '"' {
				return nil
			}
			inner := value[1 : len(value)-1]
			if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
				name = inner
				return nil
			}
			str, err := unquote(value)
			if err != nil {
				return err
			}
			name = []byte(str)
			return nil
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
