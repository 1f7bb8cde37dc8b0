package ems

import (
	"bytes"
	"encoding/json"
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
