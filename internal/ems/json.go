package ems

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Every answer is read by one streaming decoder, jsontext's, which checks
// the syntax as it goes, hands out one token or raw value at a time, and
// keeps in memory only the value being read. It is set to accept what
// encoding/json accepts: repeated keys (the last one wins where a field is
// kept) and invalid UTF-8 inside strings (read as U+FFFD).

// decodeOptions are the options of every decoder of this package.
var decodeOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// newDecoder returns a decoder of r with decodeOptions.
func newDecoder(r io.Reader) *jsontext.Decoder { return jsontext.NewDecoder(r, decodeOptions...) }

// decoders keeps the decoders of small answers for reuse: most answers
// are a few hundred bytes, for which building a decoder and growing its
// buffer would cost more than the decoding.
var decoders sync.Pool // *jsontext.Decoder

// maxPooledInput is the most input a decoder may have read to be kept:
// its buffer is then at most about twice that.
const maxPooledInput = 64 << 10

// getDecoder returns a decoder of r, reused when one is free.
func getDecoder(r io.Reader) *jsontext.Decoder {
	if dec, ok := decoders.Get().(*jsontext.Decoder); ok {
		dec.Reset(r, decodeOptions...)
		return dec
	}
	return newDecoder(r)
}

// putDecoder keeps dec for reuse if it read little.
func putDecoder(dec *jsontext.Decoder) {
	if dec.InputOffset() <= maxPooledInput {
		dec.Reset(eof{}, decodeOptions...) // drop the reference to the body
		decoders.Put(dec)
	}
}

// eof is an empty reader.
type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

// shapeError is valid JSON that does not have the shape a command answers
// (a number where a string belongs, say). The decoder is still usable
// after one: the value can be skipped.
type shapeError struct{ msg string }

func (e *shapeError) Error() string { return e.msg }

func shapef(format string, args ...any) error {
	return &shapeError{msg: fmt.Sprintf(format, args...)}
}

// isShape reports whether err is a shapeError, however wrapped.
func isShape(err error) bool {
	_, ok := errors.AsType[*shapeError](err)
	return ok
}

// kindName names a JSON kind for error messages.
func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "nothing"
}

// peek returns the kind of the next value, or the error that stops the
// decoder.
func peek(dec *jsontext.Decoder) (jsontext.Kind, error) {
	if k := dec.PeekKind(); k != 0 {
		return k, nil
	}
	_, err := dec.ReadToken()
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return 0, err
}

// object reads the object that comes next, calling fn with each key,
// unescaped, and the decoder positioned at the member's value, which fn
// must read or skip. key is valid only until fn reads from dec. With nullOK, null
// is read as an object without members; any other value is a shapeError,
// skipped.
func object(dec *jsontext.Decoder, nullOK bool, fn func(key []byte) error) error {
	k, err := peek(dec)
	if err != nil {
		return err
	}
	if k != '{' {
		if err := dec.SkipValue(); err != nil {
			return err
		}
		if k == 'n' && nullOK {
			return nil
		}
		return shapef("got %s, want an object", kindName(k))
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for {
		k, err := peek(dec)
		if err != nil {
			return err
		}
		if k == '}' {
			_, err := dec.ReadToken()
			return err
		}
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		key := raw[1 : len(raw)-1]
		if !verbatim(key) && (bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key)) {
			s, _, err := decodeOptString(raw)
			if err != nil {
				return err
			}
			key = []byte(s)
		}
		if err := fn(key); err != nil {
			return err
		}
	}
}

// array reads the array (or null, read as an empty array) that comes
// next, calling fn with the decoder positioned at each element, which fn
// must read or skip. Any other value is a shapeError, skipped.
func array(dec *jsontext.Decoder, fn func(i int) error) error {
	k, err := peek(dec)
	if err != nil {
		return err
	}
	if k != '[' {
		if err := dec.SkipValue(); err != nil {
			return err
		}
		if k == 'n' {
			return nil
		}
		return shapef("got %s, want an array", kindName(k))
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for i := 0; ; i++ {
		k, err := peek(dec)
		if err != nil {
			return err
		}
		if k == ']' {
			_, err := dec.ReadToken()
			return err
		}
		if err := fn(i); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
	}
}

// skipRest reads what is left of the values the decoder is inside of,
// down to depth (a StackDepth taken before a value was begun), after a
// shapeError left it partway.
func skipRest(dec *jsontext.Decoder, depth int) error {
	for dec.StackDepth() > depth {
		if dec.PeekKind() == '}' || dec.PeekKind() == ']' {
			if _, err := dec.ReadToken(); err != nil {
				return err
			}
			continue
		}
		if err := dec.SkipValue(); err != nil {
			return err
		}
	}
	return nil
}

// verbatim reports whether s, the inside of a JSON string, is ASCII without
// a backslash: text that reads as it is written. It is one pass over the
// few bytes of a key or value, where bytes.IndexByte and utf8.Valid are
// two calls (either says more when verbatim is false).
func verbatim(s []byte) bool {
	for _, c := range s {
		if c >= utf8.RuneSelf || c == '\\' {
			return false
		}
	}
	return true
}

// unquoteTo appends the text of raw, a JSON string as the decoder returned
// it, to dst. Strings without escapes (nearly all) are copied as they are.
func unquoteTo(dst, raw []byte) ([]byte, error) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, shapef("got %.20s, want a string", raw)
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return append(dst, inner...), nil
	}
	s, _, err := decodeOptString(raw)
	return append(dst, s...), err
}

// envelopeMeta is what an envelope says besides its data.
type envelopeMeta struct {
	Status      string
	Description string
}

// walkEnvelope reads one envelope {"data":...,"description":"...",
// "status":"..."} from r, calling data with the decoder positioned at the
// data value (null included), which data must read. Keys match exactly and
// may come in any order. A byte order mark may come before the envelope,
// and whitespace, Unicode's included (EMS's documentation shows a
// no-break space), after it.
func walkEnvelope(r io.Reader, data func(*jsontext.Decoder) error) (envelopeMeta, error) {
	var meta envelopeMeta
	r = skipBOM(r)
	dec := getDecoder(r)
	defer putDecoder(dec)
	k, err := peek(dec)
	switch {
	case err == io.ErrUnexpectedEOF:
		return meta, errors.New("empty body")
	case err != nil:
		return meta, fmt.Errorf("body is not a JSON object: %w", err)
	case k != '{':
		return meta, fmt.Errorf("body is not a JSON object but %s", kindName(k))
	}
	hasStatus := false
	err = object(dec, false, func(key []byte) error {
		switch field := string(key); field {
		case "status", "description":
			v, err := dec.ReadValue()
			if err != nil {
				return err
			}
			s, ok, err := decodeOptString(v)
			if err != nil {
				return fmt.Errorf("%s: %w", field, err)
			}
			if field == "description" {
				meta.Description = s
				return nil
			}
			if !ok {
				return errors.New("status: not a string")
			}
			meta.Status, hasStatus = s, true
		case "data":
			if err := data(dec); err != nil {
				return fmt.Errorf("data: %w", err)
			}
		default:
			return dec.SkipValue()
		}
		return nil
	})
	if err != nil {
		return meta, err
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		return meta, err
	}
	if rest = bytes.TrimSpace(append(bytes.Clone(dec.UnreadBuffer()), rest...)); len(rest) > 0 {
		if strings.IndexByte(`{["-0123456789tfn`, rest[0]) >= 0 {
			return meta, errors.New("data after the envelope")
		}
		return meta, fmt.Errorf("invalid character %q after the envelope", rest[0])
	}
	if !hasStatus {
		return meta, errors.New("envelope has no status")
	}
	return meta, nil
}

// skipBOM returns r without the byte order mark it may begin with.
func skipBOM(r io.Reader) io.Reader {
	if b, ok := r.(*bytes.Buffer); ok {
		// Kept a *bytes.Buffer, which the decoder reads in place.
		if bytes.HasPrefix(b.Bytes(), []byte{0xef, 0xbb, 0xbf}) {
			b.Next(3)
		}
		return b
	}
	var head [3]byte
	n, _ := io.ReadFull(r, head[:])
	if n == 3 && head == [3]byte{0xef, 0xbb, 0xbf} {
		return r
	}
	return io.MultiReader(bytes.NewReader(head[:n]), r)
}
