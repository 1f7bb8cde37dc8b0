package config

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"
)

// Error is one problem found in a config file.
type Error struct {
	// File is the file name as given to Load or Parse.
	File string
	// Line and Col locate the problem, both counting from 1; Col counts
	// bytes from the start of the line.
	Line, Col int
	// Path is the key path inside the StreamLoadBalancer block, such as
	// "parameters.destination_ems_apiproxies[1].ewsPort", or empty when
	// the problem concerns the file as a whole.
	Path string
	// Msg says what is wrong. It never holds a password or token.
	Msg string
}

// Error returns "FILE:LINE:COL: PATH: MSG", or "FILE:LINE:COL: MSG" when
// Path is empty.
func (e *Error) Error() string {
	s := e.File + ":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Col) + ": "
	if e.Path != "" {
		s += e.Path + ": "
	}
	return s + e.Msg
}

// position is a line and column in the user's file.
type position struct{ line, col int }

// String returns "LINE:COL".
func (p position) String() string { return strconv.Itoa(p.line) + ":" + strconv.Itoa(p.col) }

// source is a config file's content, parsed as HuJSON, and the means to
// turn offsets into the parsed buffer back into positions in the file.
type source struct {
	name  string
	text  []byte // the file's content
	buf   []byte // what was parsed: text, wrapped in braces for the fragment form
	shift int    // bytes added in front of text in buf
	lines []int  // offsets in text where each line starts
	root  hujson.Value
}

// utf8BOM is the byte order mark some editors write at the start of a file.
var utf8BOM = []byte("\xef\xbb\xbf")

// newSource recognises the file's form and parses it. A file that is not
// HuJSON, or is none of the accepted forms, gives one *Error.
func newSource(name string, data []byte) (*source, *Error) {
	s := &source{name: name, text: data}
	if bytes.HasPrefix(data, utf8BOM) {
		// Blank the mark out rather than cut it, so offsets stay put.
		s.text = slices.Concat([]byte("   "), data[len(utf8BOM):])
	}
	s.lines = lineStarts(s.text)

	i := skipExtra(s.text)
	switch {
	case i == len(s.text):
		return nil, s.errorAt(0, "", `no configuration: want a JSON object holding a "StreamLoadBalancer" block, or the "StreamLoadBalancer": {...} fragment`)
	case s.text[i] == '{':
		// A newline at the end lets a last line comment end there.
		s.buf = slices.Concat(s.text, []byte("\n"))
	case s.text[i] == '"':
		s.buf = slices.Concat([]byte("{"), s.text, []byte("\n}"))
		s.shift = 1
	default:
		return nil, s.errorAt(i, "", fmt.Sprintf(`want a JSON object holding a "StreamLoadBalancer" block, or the "StreamLoadBalancer": {...} fragment; got %s`, describeByte(s.text[i:])))
	}

	root, err := hujson.Parse(s.buf)
	if err != nil {
		return nil, s.syntaxError(err)
	}
	s.root = root
	return s, nil
}

// skipExtra returns the offset of the first byte of b that is neither
// white space nor inside a comment, or len(b).
func skipExtra(b []byte) int {
	n := 0
	for n < len(b) {
		switch {
		case b[n] == ' ' || b[n] == '\t' || b[n] == '\r' || b[n] == '\n':
			n++
		case bytes.HasPrefix(b[n:], []byte("//")):
			i := bytes.IndexByte(b[n:], '\n')
			if i < 0 {
				return len(b)
			}
			n += i + 1
		case bytes.HasPrefix(b[n:], []byte("/*")):
			i := bytes.Index(b[n+2:], []byte("*/"))
			if i < 0 {
				return n // unterminated: the parser reports it
			}
			n += 2 + i + 2
		default:
			return n
		}
	}
	return n
}

// describeByte names the character at the start of b for a message.
func describeByte(b []byte) string {
	r := []rune(string(b[:min(len(b), 4)]))
	if len(r) > 0 && strconv.IsPrint(r[0]) {
		return "invalid character " + strconv.QuoteRune(r[0])
	}
	return fmt.Sprintf("invalid character '\\x%02x'", b[0])
}

// lineStarts returns the offsets where each line of b starts.
func lineStarts(b []byte) []int {
	starts := []int{0}
	for i, c := range b {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// textPos returns the position of offset off of text.
func (s *source) textPos(off int) position {
	off = max(0, min(off, len(s.text)))
	// The line is the last one starting at or before off.
	i := sort.Search(len(s.lines), func(i int) bool { return s.lines[i] > off }) - 1
	return position{line: i + 1, col: off - s.lines[i] + 1}
}

// pos returns the position in the file of offset off of the parsed buffer.
func (s *source) pos(off int) position { return s.textPos(off - s.shift) }

// errorAt returns an *Error at offset off of text.
func (s *source) errorAt(off int, path, msg string) *Error {
	p := s.textPos(off)
	return &Error{File: s.name, Line: p.line, Col: p.col, Path: path, Msg: msg}
}

// hujsonError matches the position hujson.Parse puts in its errors.
var hujsonError = regexp.MustCompile(`(?s)^hujson: line (\d+), column (\d+): (.*)$`)

// missingComma matches hujson's message for a value that follows another
// with no comma between them, capturing the character found.
var missingComma = regexp.MustCompile(`^invalid character '(.+)' after (?:object|array) value \(expecting ',' or '[}\]]'\)$`)

// significantEnd returns the offset just past the last byte of b that is
// neither white space nor part of a comment: the end of the last value or
// token.
func significantEnd(b []byte) int {
	end := 0
	for i := 0; i < len(b); {
		switch {
		case b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n':
			i++
		case bytes.HasPrefix(b[i:], []byte("//")):
			n := bytes.IndexByte(b[i:], '\n')
			if n < 0 {
				return end
			}
			i += n + 1
		case bytes.HasPrefix(b[i:], []byte("/*")):
			n := bytes.Index(b[i+2:], []byte("*/"))
			if n < 0 {
				return end
			}
			i += 2 + n + 2
		case b[i] == '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			i = min(i+1, len(b))
			end = i
		default:
			i++
			end = i
		}
	}
	return end
}

// syntaxError turns a hujson.Parse error into an *Error located in the
// user's file. Literals are left out of the message: a malformed one may be
// a password.
func (s *source) syntaxError(err error) *Error {
	msg := err.Error()
	off := len(s.buf)
	if m := hujsonError.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		starts := lineStarts(s.buf)
		if line >= 1 && line <= len(starts) {
			off = starts[line-1] + col - 1
		}
		msg = m[3]
	}
	if m := missingComma.FindStringSubmatch(msg); m != nil && strings.ContainsAny(m[1][:1], "\"{[-0123456789tfn") {
		// The parser stops at the next value; the comma belongs after
		// the previous one, which is where the user has to type it.
		end := significantEnd(s.buf[:min(off, len(s.buf))])
		return s.errorAt(end-s.shift, "", fmt.Sprintf("syntax error: missing ',' after this value (the next one starts at %s)", s.pos(off)))
	}
	if lit, ok := strings.CutPrefix(msg, "invalid literal: "); ok {
		msg = "invalid literal"
		if strings.HasPrefix(lit, `"`) {
			msg = "invalid string (a bad escape, a control character or invalid UTF-8)"
		}
	}
	return s.errorAt(off-s.shift, "", "syntax error: "+msg)
}
