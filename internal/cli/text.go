package cli

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// printable returns s as it stands when a terminal shows it as it is, and
// else as a Go-quoted string ("cam\x1b[31m"): names and errors come from
// encoders and from members' answers, and may carry control characters,
// terminal escapes, invisible format runes or broken UTF-8. The text output
// of status, sync and prune passes every such string through it; -json
// output stays exact. An empty string, and one that begins with a quote,
// are quoted too, so that the two forms cannot be confused.
func printable(s string) string {
	if s == "" || strings.HasPrefix(s, `"`) {
		return strconv.Quote(s)
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return strconv.Quote(s)
			}
		}
		if !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
