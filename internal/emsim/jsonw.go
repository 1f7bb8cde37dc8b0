package emsim

import (
	"fmt"
	"sort"
	"strconv"
)

// The JSON written here follows EMS's serializer: object keys sorted
// bytewise, '/' escaped as \/, doubles printed with four decimals, integers
// (uint64 included) printed exactly.

// jkv is one member of a JSON object.
type jkv struct {
	k string
	v any
}

// jobj is a JSON object; its members are sorted by key when written.
type jobj []jkv

// jraw is JSON text written as is.
type jraw []byte

// jfunc is JSON text written by appending it to the answer: for listings
// too large to build apart and then copy (a listConfig of 50,000 entries
// is about 39 MB).
type jfunc func(b []byte) []byte

func (o jobj) sorted() bool {
	for i := 1; i < len(o); i++ {
		if o[i-1].k > o[i].k {
			return false
		}
	}
	return true
}

// appendJSON appends the JSON text of v to b. Supported values: nil, bool,
// string, int, int64, uint64, float64 (as a double), jobj, jraw, jfunc, []any,
// []string, []uint64, []jobj, map[string]string.
func appendJSON(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		if x {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case string:
		return appendString(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case float64:
		return strconv.AppendFloat(b, x, 'f', 4, 64)
	case jraw:
		return append(b, x...)
	case jfunc:
		return x(b)
	case jobj:
		return appendObject(b, x)
	case []jobj:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendObject(b, e)
		}
		return append(b, ']')
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, e)
		}
		return append(b, ']')
	case []string:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, e)
		}
		return append(b, ']')
	case []uint64:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, e, 10)
		}
		return append(b, ']')
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, x[k])
		}
		return append(b, '}')
	default:
		panic(fmt.Sprintf("emsim: cannot write %T as JSON", v))
	}
}

// sortedCopy returns o when it is sorted, else a sorted copy.
func sortedCopy(o jobj) jobj {
	if o.sorted() {
		return o
	}
	c := make(jobj, len(o))
	copy(c, o)
	sort.SliceStable(c, func(i, j int) bool { return c[i].k < c[j].k })
	return c
}

func appendObject(b []byte, o jobj) []byte {
	o = sortedCopy(o)
	b = append(b, '{')
	for i, kv := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, kv.k)
		b = append(b, ':')
		b = appendJSON(b, kv.v)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as EMS does: backslash,
// quote and '/' with a backslash, the usual control characters by name, any
// other control character as \u00XX; other bytes are copied unchanged.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped appends the inside of s's JSON string: appendString without
// the quotes.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var esc string
		switch c {
		case '"':
			esc = `\"`
		case '\\':
			esc = `\\`
		case '/':
			esc = `\/`
		case '\b':
			esc = `\b`
		case '\f':
			esc = `\f`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case '\t':
			esc = `\t`
		default:
			if c >= 0x20 {
				continue
			}
		}
		b = append(b, s[start:i]...)
		if esc != "" {
			b = append(b, esc...)
		} else {
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	return append(b, s[start:]...)
}

// appendStringOf appends the concatenation of parts as one JSON string,
// as appendString would, without building it first: escaping goes byte by
// byte, so each part escapes alone.
func appendStringOf(b []byte, parts ...string) []byte {
	b = append(b, '"')
	for _, p := range parts {
		b = appendEscaped(b, p)
	}
	return append(b, '"')
}
