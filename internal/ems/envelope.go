package ems

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Envelope statuses.
const (
	statusSuccess = "SUCCESS"
	statusFail    = "FAIL"
)

// excerptLen bounds the body excerpt kept in decode and HTTP errors.
const excerptLen = 120

// envelope is an EMS answer: {"data":...,"description":"...","status":"..."}.
type envelope struct {
	Status      string
	Description string
	// Data is the raw data, nil when it is null or absent.
	Data json.RawMessage
}

// decodeEnvelope decodes a whole answer body. It tolerates surrounding
// whitespace (EMS appends "\r\n\r\n") and a byte order mark. Keys are
// matched exactly, as walkEnvelope does; when one repeats, the last wins.
func decodeEnvelope(body []byte) (envelope, error) {
	b := bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	if len(b) == 0 {
		return envelope{}, errors.New("empty body")
	}
	if b[0] != '{' {
		return envelope{}, errors.New("body is not a JSON object")
	}
	if !validJSON(b) {
		// Unmarshal tells where the JSON breaks.
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return envelope{}, err
		}
		return envelope{}, errors.New("invalid JSON")
	}
	var env envelope
	hasStatus := false
	err := eachMember(b, func(key, value []byte) error {
		switch string(key) {
		case "status":
			s, ok, err := decodeOptString(value)
			if err != nil || !ok {
				return fmt.Errorf("status: not a string: %.24s", value)
			}
			env.Status, hasStatus = s, true
		case "description":
			s, _, err := decodeOptString(value)
			if err != nil {
				return fmt.Errorf("description: %w", err)
			}
			env.Description = s
		case "data":
			env.Data = nil
			if string(value) != "null" {
				env.Data = json.RawMessage(value)
			}
		}
		return nil
	})
	if err != nil {
		return envelope{}, err
	}
	if !hasStatus {
		return envelope{}, errors.New("envelope has no status")
	}
	return env, nil
}

// envelopeMeta is what a streamed envelope says besides its data.
type envelopeMeta struct {
	Status      string
	Description string
}

// walkEnvelope reads one envelope from dec, passing the decoder to data when
// it reaches the data value (null included), and checks that only
// whitespace follows. Keys may come in any order.
func walkEnvelope(dec *json.Decoder, data func(*json.Decoder) error) (envelopeMeta, error) {
	var meta envelopeMeta
	if err := expectDelim(dec, '{'); err != nil {
		return meta, err
	}
	hasStatus := false
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return meta, err
		}
		switch key {
		case "status":
			var s optString
			if err := dec.Decode(&s); err != nil {
				return meta, fmt.Errorf("status: %w", err)
			}
			if !s.ok {
				return meta, errors.New("status: not a string")
			}
			meta.Status, hasStatus = s.s, true
		case "description":
			var s optString
			if err := dec.Decode(&s); err != nil {
				return meta, fmt.Errorf("description: %w", err)
			}
			meta.Description = s.s
		case "data":
			if err := data(dec); err != nil {
				return meta, fmt.Errorf("data: %w", err)
			}
		default:
			if err := skip(dec); err != nil {
				return meta, err
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return meta, err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the envelope")
		}
		return meta, err
	}
	if !hasStatus {
		return meta, errors.New("envelope has no status")
	}
	return meta, nil
}

// expectDelim reads one token and checks that it is the delimiter d.
func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return fmt.Errorf("got %s, want %q", describeToken(tok), rune(d))
	}
	return nil
}

// openValue reads the first token of a value that must be an object or an
// array (open) or null. It reports false for null.
func openValue(dec *json.Decoder, open json.Delim) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, err
	}
	if tok == nil {
		return false, nil
	}
	if got, ok := tok.(json.Delim); !ok || got != open {
		return false, fmt.Errorf("got %s, want %q or null", describeToken(tok), rune(open))
	}
	return true, nil
}

// objectKey reads an object key.
func objectKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("got %s, want an object key", describeToken(tok))
	}
	return key, nil
}

func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", rune(v))
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}

// skipValue discards a JSON value without building anything.
type skipValue struct{}

// UnmarshalJSON discards data.
func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// skip discards the next value of dec.
func skip(dec *json.Decoder) error {
	var s skipValue
	return dec.Decode(&s)
}

// optString decodes a JSON string and ignores any other value.
type optString struct {
	s  string
	ok bool
}

// UnmarshalJSON keeps data if it is a string.
func (o *optString) UnmarshalJSON(data []byte) error {
	if len(data) == 0 || data[0] != '"' {
		*o = optString{}
		return nil
	}
	o.ok = true
	return json.Unmarshal(data, &o.s)
}

// excerpt returns at most excerptLen bytes of b, valid UTF-8 with control
// characters turned into spaces, for error messages.
func excerpt(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > excerptLen {
		b = b[:excerptLen]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	s := strings.ToValidUTF8(string(b), "?")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// bodyTooLargeError reports an answer longer than the client accepts.
type bodyTooLargeError struct{ limit int64 }

func (e *bodyTooLargeError) Error() string {
	return fmt.Sprintf("response body exceeds %d bytes", e.limit)
}

// cappedReader reads at most limit bytes from r, failing with
// *bodyTooLargeError beyond, and keeps the first excerptLen bytes read and
// the first error of r other than io.EOF.
type cappedReader struct {
	r       io.Reader
	limit   int64
	left    int64
	head    []byte
	readErr error
}

func newCappedReader(r io.Reader, limit int64) *cappedReader {
	return &cappedReader{r: r, limit: limit, left: limit}
}

// Read implements io.Reader.
func (c *cappedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.left <= 0 {
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			c.readErr = &bodyTooLargeError{limit: c.limit}
			return 0, c.readErr
		}
		c.noteErr(err)
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if room := excerptLen - len(c.head); room > 0 && n > 0 {
		c.head = append(c.head, p[:min(room, n)]...)
	}
	c.noteErr(err)
	return n, err
}

func (c *cappedReader) noteErr(err error) {
	if err != nil && err != io.EOF && c.readErr == nil {
		c.readErr = err
	}
}
