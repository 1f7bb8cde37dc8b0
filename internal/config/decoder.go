package config

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tailscale/hujson"
)

// decoder walks the HuJSON tree of one file, collecting every problem it
// finds as an *Error.
type decoder struct {
	src  *source
	dir  string // the config file's directory, for relative paths
	errs []*Error
}

// errorf records a problem at offset off of the parsed buffer.
func (d *decoder) errorf(off int, path, format string, args ...any) {
	p := d.src.pos(off)
	// One problem, one line: a file name from the config could hold a
	// line break.
	msg := strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(fmt.Sprintf(format, args...))
	d.errs = append(d.errs, &Error{File: d.src.name, Line: p.line, Col: p.col, Path: path, Msg: msg})
}

// err returns every recorded problem joined, ordered by position, or nil.
func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// child returns the path of key inside the object at path.
func child(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index returns the path of element i of the array at path.
func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// kindName names a value's JSON type for messages.
func kindName(v *hujson.Value) string {
	switch v.Value.Kind() {
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "nothing"
}

// typeError records that the value at path is not of the wanted type.
func (d *decoder) typeError(path string, v *hujson.Value, want string) {
	d.errorf(v.StartOffset, path, "want %s, got %s", want, kindName(v))
}

// object is a JSON object being decoded: its known keys' values, by key.
type object struct {
	d     *decoder
	path  string
	start int                      // offset of its opening brace
	vals  map[string]*hujson.Value // known keys present
	keyAt map[string]int           // offset of each known key's name
}

// object returns the object v at path, recording an error for each
// unknown or repeated key, or nil (and an error) when v is no object.
func (d *decoder) object(path string, v *hujson.Value, known []string) *object {
	obj, ok := v.Value.(*hujson.Object)
	if !ok {
		d.typeError(path, v, "an object")
		return nil
	}
	o := &object{d: d, path: path, start: v.StartOffset, vals: map[string]*hujson.Value{}, keyAt: map[string]int{}}
	for i := range obj.Members {
		m := &obj.Members[i]
		key := keyName(m)
		switch prev, dup := o.keyAt[key]; {
		case !slices.Contains(known, key):
			d.errorf(m.Name.StartOffset, path, "unknown key %q%s", key, suggest(key, known))
		case dup:
			d.errorf(m.Name.StartOffset, path, "duplicate key %q (also at %s)", key, d.src.pos(prev))
		default:
			o.vals[key] = &m.Value
			o.keyAt[key] = m.Name.StartOffset
		}
	}
	return o
}

// keyName returns an object member's name, unquoted.
func keyName(m *hujson.ObjectMember) string {
	if lit, ok := m.Name.Value.(hujson.Literal); ok {
		return lit.String()
	}
	return ""
}

// suggest returns ` (did you mean "K"?)` for the known key K closest to
// key, when one is close enough to be a likely misspelling, else "".
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
		if dist := editDistance(strings.ToLower(key), strings.ToLower(k)); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" || bestDist*3 > len(key) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance returns the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// has reports whether key is present.
func (o *object) has(key string) bool { _, ok := o.vals[key]; return ok }

// at returns the offset of key's value, or of the object when key is
// absent.
func (o *object) at(key string) int {
	if v, ok := o.vals[key]; ok {
		return v.StartOffset
	}
	return o.start
}

// errorf records a problem with key's value (or with the missing key).
func (o *object) errorf(key, format string, args ...any) {
	o.d.errorf(o.at(key), child(o.path, key), format, args...)
}

// literal returns key's value when present and of the given kind; a
// value of another kind is recorded as an error.
func (o *object) literal(key string, kind hujson.Kind, want string) (hujson.Literal, bool) {
	v, ok := o.vals[key]
	if !ok {
		return nil, false
	}
	lit, ok := v.Value.(hujson.Literal)
	if !ok || lit.Kind() != kind && !(kind == 't' && lit.Kind() == 'f') {
		o.d.typeError(child(o.path, key), v, want)
		return nil, false
	}
	return lit, true
}

// str returns key's string value, and whether it is present and a string.
func (o *object) str(key string) (string, bool) {
	lit, ok := o.literal(key, '"', "a string")
	if !ok {
		return "", false
	}
	return lit.String(), true
}

// boolean returns key's value, and whether it is present and a boolean.
func (o *object) boolean(key string) (bool, bool) {
	lit, ok := o.literal(key, 't', "a boolean")
	if !ok {
		return false, false
	}
	return lit.Bool(), true
}

// number returns key's value, and whether it is present and a finite
// number.
func (o *object) number(key string) (float64, bool) {
	lit, ok := o.literal(key, '0', "a number")
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		o.errorf(key, "number %s is out of range", lit)
		return 0, false
	}
	return f, true
}

// integer returns key's value, and whether it is present and a whole
// number from lo to hi; a hi of math.MaxInt32 means no practical bound.
func (o *object) integer(key string, lo, hi int) (int, bool) {
	f, ok := o.number(key)
	if !ok {
		return 0, false
	}
	text := string(o.vals[key].Value.(hujson.Literal))
	switch {
	case f != math.Trunc(f):
		o.errorf(key, "want a whole number, got %s", text)
		return 0, false
	case f < float64(lo) && hi == math.MaxInt32:
		o.errorf(key, "want %d or more, got %s", lo, text)
		return 0, false
	case f < float64(lo) || f > float64(hi):
		o.errorf(key, "want %d to %d, got %s", lo, hi, text)
		return 0, false
	}
	return int(f), true
}

// port returns key's value as a TCP port, or def when key is absent or
// wrong.
func (o *object) port(key string, def int) int {
	if p, ok := o.integer(key, 1, 65535); ok {
		return p
	}
	return def
}

// durationAtLeast returns key's value, a Go duration string of at least
// floor, and whether it is present and valid.
func (o *object) durationAtLeast(key string, floor time.Duration) (time.Duration, bool) {
	dur, ok := o.duration(key)
	if ok && dur < floor {
		o.errorf(key, "want at least %v, got %q", floor, o.vals[key].Value.(hujson.Literal).String())
		return 0, false
	}
	return dur, ok
}

// duration returns key's value, a Go duration string above zero, and
// whether it is present and valid.
func (o *object) duration(key string) (time.Duration, bool) {
	v, ok := o.vals[key]
	if !ok {
		return 0, false
	}
	lit, isLit := v.Value.(hujson.Literal)
	if !isLit || lit.Kind() != '"' {
		o.d.typeError(child(o.path, key), v, `a duration such as "30s"`)
		return 0, false
	}
	s := lit.String()
	dur, err := time.ParseDuration(s)
	if err != nil {
		o.errorf(key, "invalid duration %q: %s", s, durationProblem(err))
		return 0, false
	}
	if dur <= 0 {
		o.errorf(key, "want a duration above 0, got %q", s)
		return 0, false
	}
	return dur, true
}

// durationProblem says what time.ParseDuration found wrong, without
// repeating the input.
func durationProblem(err error) string {
	msg := strings.TrimPrefix(err.Error(), "time: ")
	switch {
	case strings.HasPrefix(msg, "missing unit"):
		return "missing unit"
	case strings.HasPrefix(msg, "unknown unit"):
		if unit, _, ok := strings.Cut(strings.TrimPrefix(msg, "unknown unit "), " in duration"); ok {
			return "unknown unit " + unit + ` (want ns, us, ms, s, m or h)`
		}
		return "unknown unit"
	}
	return `want a number and a unit, such as "30s" or "1m30s"`
}

// listItem is one string of an array, with its index and offset.
type listItem struct {
	s   string
	i   int
	off int
}

// stringList returns key's value, an array of strings; elements that are
// not strings are recorded as errors and left out.
func (o *object) stringList(key string) []listItem {
	v, present := o.vals[key]
	if !present {
		return nil
	}
	arr, isArr := v.Value.(*hujson.Array)
	if !isArr {
		o.d.typeError(child(o.path, key), v, "an array of strings")
		return nil
	}
	var items []listItem
	for i := range arr.Elements {
		e := &arr.Elements[i]
		lit, isLit := e.Value.(hujson.Literal)
		if !isLit || lit.Kind() != '"' {
			o.d.typeError(index(child(o.path, key), i), e, "a string")
			continue
		}
		items = append(items, listItem{s: lit.String(), i: i, off: e.StartOffset})
	}
	return items
}

// isArray reports whether key is present and an array.
func (o *object) isArray(key string) bool {
	v, ok := o.vals[key]
	if !ok {
		return false
	}
	_, ok = v.Value.(*hujson.Array)
	return ok
}

// array returns key's value when present and an array.
func (o *object) array(key string) (*hujson.Array, bool) {
	v, ok := o.vals[key]
	if !ok {
		return nil, false
	}
	arr, ok := v.Value.(*hujson.Array)
	if !ok {
		o.d.typeError(child(o.path, key), v, "an array")
		return nil, false
	}
	return arr, true
}

// oneOf returns key's value, a string among allowed, or def when key is
// absent or wrong.
func (o *object) oneOf(key, def string, allowed ...string) string {
	s, ok := o.str(key)
	if !ok {
		return def
	}
	if !slices.Contains(allowed, s) {
		quoted := make([]string, len(allowed))
		for i, a := range allowed {
			quoted[i] = strconv.Quote(a)
		}
		o.errorf(key, "want %s, got %q", strings.Join(quoted, " or "), s)
		return def
	}
	return s
}
