package emsim

import (
	"encoding/base64"
	"sort"
	"strconv"
	"strings"
)

// pval is one parameter value: a string, or an array when the value held
// unescaped commas.
type pval struct {
	s     string
	arr   []string
	isArr bool
}

// text returns the value as one string; array items are joined with commas.
func (v pval) text() string {
	if v.isArr {
		return strings.Join(v.arr, ",")
	}
	return v.s
}

// param is one parsed parameter with its key as given.
type param struct {
	key string
	val pval
}

// params holds the parameters of one API call. Keys are case-insensitive,
// except user-defined variables (keys starting with '_'), which are kept
// verbatim. When a key repeats, the last occurrence wins.
type params struct {
	m map[string]param
}

// normKey returns the lookup key of k.
func normKey(k string) string {
	if strings.HasPrefix(k, "_") {
		return k
	}
	return strings.ToLower(k)
}

// len returns the number of distinct parameters.
func (p *params) len() int { return len(p.m) }

// get returns the parameter named name (case-insensitive).
func (p *params) get(name string) (pval, bool) {
	if p.m == nil {
		return pval{}, false
	}
	v, ok := p.m[normKey(name)]
	return v.val, ok
}

// vars returns the user-defined variables sorted by key.
func (p *params) vars() []variable {
	var out []variable
	for _, pr := range p.m {
		if !strings.HasPrefix(pr.key, "_") {
			continue
		}
		v := variable{Key: pr.key}
		if pr.val.isArr {
			v.IsArray = true
			v.Values = append([]string(nil), pr.val.arr...)
		} else {
			v.Value = pr.val.s
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// unit is one character of a parameter string after escape processing;
// esc marks characters that came from an escape sequence and so are never
// separators.
type unit struct {
	c   byte
	esc bool
}

// parseParams parses the decoded parameter string of an API call:
// tokens separated by single spaces (empty tokens skipped), each split at its
// first '=' into key and value, with the escapes \\ \<space> \= \, and values
// holding unescaped commas turned into arrays.
func parseParams(s string) *params {
	p := &params{}
	if s == "" {
		return p
	}
	units := make([]unit, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch n := s[i+1]; n {
			case '\\', ' ', '=', ',':
				units = append(units, unit{c: n, esc: true})
				i++
				continue
			}
		}
		units = append(units, unit{c: c})
	}
	start := 0
	for i := 0; i <= len(units); i++ {
		if i < len(units) && (units[i].c != ' ' || units[i].esc) {
			continue
		}
		if i > start {
			p.addToken(units[start:i])
		}
		start = i + 1
	}
	return p
}

// addToken adds one key=value token.
func (p *params) addToken(tok []unit) {
	eq := -1
	for i, u := range tok {
		if u.c == '=' && !u.esc {
			eq = i
			break
		}
	}
	var key string
	var val pval
	if eq < 0 {
		key = unitString(trimUnits(tok))
	} else {
		key = unitString(trimUnits(tok[:eq]))
		val = parseValue(tok[eq+1:])
	}
	if key == "" {
		return
	}
	if p.m == nil {
		p.m = make(map[string]param)
	}
	p.m[normKey(key)] = param{key: key, val: val}
}

// parseValue turns the units of a value into a string or, when they hold
// unescaped commas, an array of trimmed non-empty items.
func parseValue(us []unit) pval {
	comma := false
	for _, u := range us {
		if u.c == ',' && !u.esc {
			comma = true
			break
		}
	}
	if !comma {
		return pval{s: unitString(trimUnits(us))}
	}
	v := pval{isArr: true, arr: []string{}}
	start := 0
	for i := 0; i <= len(us); i++ {
		if i < len(us) && (us[i].c != ',' || us[i].esc) {
			continue
		}
		if item := unitString(trimUnits(us[start:i])); item != "" {
			v.arr = append(v.arr, item)
		}
		start = i + 1
	}
	return v
}

// trimUnits removes unescaped white space at both ends.
func trimUnits(us []unit) []unit {
	isSpace := func(u unit) bool {
		return !u.esc && (u.c == ' ' || u.c == '\t' || u.c == '\r' || u.c == '\n' || u.c == '\v' || u.c == '\f')
	}
	for len(us) > 0 && isSpace(us[0]) {
		us = us[1:]
	}
	for len(us) > 0 && isSpace(us[len(us)-1]) {
		us = us[:len(us)-1]
	}
	return us
}

func unitString(us []unit) string {
	b := make([]byte, len(us))
	for i, u := range us {
		b[i] = u.c
	}
	return string(b)
}

// paramsFromRawQuery returns the decoded parameter string of a request: the
// standard base64 (with padding) of the first query value, read from the raw
// query without percent-decoding. As EMS keeps the query in a sorted map,
// "first" is the value of the bytewise smallest key (the last one when a key
// repeats). An undecodable value yields no parameters.
func paramsFromRawQuery(raw string) string {
	if raw == "" {
		return ""
	}
	var bestKey, bestVal string
	found := false
	for piece := range strings.SplitSeq(raw, "&") {
		if piece == "" {
			continue
		}
		k, v, _ := strings.Cut(piece, "=")
		if !found || k <= bestKey {
			bestKey, bestVal, found = k, v, true
		}
	}
	if !found || bestVal == "" {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(bestVal)
	if err != nil {
		return ""
	}
	return string(b)
}

// cAtoi parses like C's atoi: optional leading white space and sign, then
// digits up to the first non-digit; 0 when there are none.
func cAtoi(s string) int64 {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\v' || s[i] == '\f') {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var n int64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int64(s[i]-'0')
		if n > 1<<40 {
			break // large enough to be non-zero; avoids overflow
		}
	}
	if neg {
		return -n
	}
	return n
}

// paramError is a FAIL answer caused by a parameter.
type paramError struct{ msg string }

func (e *paramError) Error() string { return e.msg }

func invalidParam(name string) *paramError {
	return &paramError{msg: "Syntax error. Parameter " + name + " is invalid"}
}

// optBool reads a boolean parameter (atoi(value) != 0).
func (p *params) optBool(name string, def bool) (bool, *paramError) {
	v, ok := p.get(name)
	if !ok {
		return def, nil
	}
	if v.isArr {
		return false, invalidParam(name)
	}
	return cAtoi(v.s) != 0, nil
}

// optString reads a string parameter; arrays are invalid.
func (p *params) optString(name, def string) (string, *paramError) {
	v, ok := p.get(name)
	if !ok {
		return def, nil
	}
	if v.isArr {
		return "", invalidParam(name)
	}
	return v.s, nil
}

// optInt reads an integer parameter that must re-format to exactly the text
// given and lie within [lo, hi].
func (p *params) optInt(name string, def, lo, hi int64) (int64, *paramError) {
	v, ok := p.get(name)
	if !ok {
		return def, nil
	}
	if v.isArr {
		return 0, invalidParam(name)
	}
	n, err := strconv.ParseInt(v.s, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != v.s {
		return 0, invalidParam(name)
	}
	if n < lo || n > hi {
		return 0, &paramError{msg: "Syntax error. Parameter " + name + " is invalid. Range: " +
			strconv.FormatInt(lo, 10) + " - " + strconv.FormatInt(hi, 10)}
	}
	return n, nil
}

// optUint reads an unsigned integer parameter that must re-format exactly.
func (p *params) optUint(name string) (uint64, bool, *paramError) {
	v, ok := p.get(name)
	if !ok {
		return 0, false, nil
	}
	if v.isArr {
		return 0, true, invalidParam(name)
	}
	n, err := strconv.ParseUint(v.s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != v.s {
		return 0, true, invalidParam(name)
	}
	return n, true, nil
}
