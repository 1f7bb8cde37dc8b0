package ems

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Param is one key=value pair of an EMS command's parameter string.
type Param struct {
	Key, Value string
}

// Params is an EMS command's parameter string as an ordered list of pairs.
// Encode writes them in this order. The zero value is an empty list.
//
// EMS looks keys up case-insensitively and, when a key repeats, keeps the
// last occurrence. Keys beginning with "_" are user variables that EMS
// stores with a configuration and echoes back.
type Params []Param

// maxCommandLine is the length EMS accepts for "<command> <params>"; a longer
// line makes it drop the connection without an answer.
const maxCommandLine = 16*1024 - 1

// Encode returns the parameter string "k1=v1 k2=v2" in the order of p.
// Space, comma, '=' and backslash are escaped with a backslash in keys and
// values alike, so every value reaches EMS as one literal string: an
// unescaped comma would turn it into a list, an unescaped space would end it.
// Encode is deterministic and DecodeParams is its inverse.
func (p Params) Encode() string {
	var b strings.Builder
	b.Grow(p.encodedLen())
	for i, kv := range p {
		if i > 0 {
			b.WriteByte(' ')
		}
		writeEscaped(&b, kv.Key)
		b.WriteByte('=')
		writeEscaped(&b, kv.Value)
	}
	return b.String()
}

func (p Params) encodedLen() int {
	n := 0
	for _, kv := range p {
		n += len(kv.Key) + len(kv.Value) + 2
	}
	return n + n/8
}

func writeEscaped(b *strings.Builder, s string) {
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', ',', '=', '\\':
			b.WriteString(s[start:i])
			b.WriteByte('\\')
			b.WriteByte(s[i])
			start = i + 1
		}
	}
	b.WriteString(s[start:])
}

// Wire returns the form EMS expects after "params=": the standard base64
// encoding, with padding, of Encode(). EMS does no percent-decoding, so the
// result goes into the URL as is, '+', '/' and '=' included.
func (p Params) Wire() string {
	return base64.StdEncoding.EncodeToString([]byte(p.Encode()))
}

// Get returns the value of the last pair whose key equals key, ignoring
// case as EMS does, and whether there is one.
func (p Params) Get(key string) (string, bool) {
	for i := len(p) - 1; i >= 0; i-- {
		if strings.EqualFold(p[i].Key, key) {
			return p[i].Value, true
		}
	}
	return "", false
}

// Validate reports whether EMS can receive p unchanged. It rejects empty
// keys, the key "cmd" (EMS would take it for the command name), and control
// characters (EMS ends a command at a line break and trims tabs from the
// ends of values).
func (p Params) Validate() error {
	for i, kv := range p {
		if kv.Key == "" {
			return fmt.Errorf("parameter %d: empty key", i)
		}
		if strings.EqualFold(kv.Key, "cmd") {
			return fmt.Errorf("parameter %q: reserved key", kv.Key)
		}
		if hasControl(kv.Key) {
			return fmt.Errorf("parameter %q: control character in key", kv.Key)
		}
		if hasControl(kv.Value) {
			return fmt.Errorf("parameter %q: control character in value", kv.Key)
		}
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// errLineBreak is returned by DecodeParams for input EMS would split into
// two commands.
var errLineBreak = errors.New("line break in parameter string")

// DecodeParams parses a parameter string as EMS does and returns its pairs
// in order, duplicates kept. Tokens are separated by unescaped spaces (empty
// tokens are skipped, so a trailing space is harmless); each splits at its
// first unescaped '='; a token without '=' is a key with an empty value; keys
// and values are trimmed of unescaped blanks. The escapes \\ \  \= \, stand
// for the escaped character; a backslash before any other character stays,
// as in EMS. An unescaped comma is kept in the value (EMS would make a list
// of it). DecodeParams fails only on a line break, which EMS would treat as
// the end of the command. DecodeParams(p.Encode()) equals p for every p.
func DecodeParams(s string) (Params, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errLineBreak
	}
	var (
		out    Params
		key    strings.Builder
		val    strings.Builder
		inVal  bool
		inTok  bool
		keyEnd int // length of key without trailing unescaped blanks
		valEnd int
	)
	cur := func() *strings.Builder {
		if inVal {
			return &val
		}
		return &key
	}
	flush := func() {
		if !inTok {
			return
		}
		out = append(out, Param{Key: key.String()[:keyEnd], Value: val.String()[:valEnd]})
		key.Reset()
		val.Reset()
		inVal, inTok, keyEnd, valEnd = false, false, 0, 0
	}
	// mark records the end of the significant text after writing a byte
	// that is not a trimmable blank.
	mark := func() {
		if inVal {
			valEnd = val.Len()
		} else {
			keyEnd = key.Len()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ':
			flush()
		case c == '\\' && i+1 < len(s) && strings.IndexByte(` ,=\`, s[i+1]) >= 0:
			inTok = true
			cur().WriteByte(s[i+1])
			mark()
			i++
		case c == '=' && !inVal:
			inTok, inVal = true, true
		case c == '\t':
			// A leading tab is trimmed; an inner one kept.
			inTok = true
			b := cur()
			if b.Len() > 0 {
				b.WriteByte(c)
			}
		default:
			inTok = true
			cur().WriteByte(c)
			mark()
		}
	}
	flush()
	return out, nil
}
