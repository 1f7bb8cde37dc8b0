package ems

// Helpers over raw JSON for the other decoders of EMS input (such as the
// event sink's), so that they share this package's scanner.

// ValidJSON reports whether b holds exactly one JSON value, with optional
// whitespace around it, by the rules of encoding/json.
func ValidJSON(b []byte) bool { return validJSON(b) }

// EachMember calls fn with the unescaped key and the raw value of every
// member of obj, a valid JSON object (check it with ValidJSON), in order;
// values are not decoded. key and value are valid only during the call. An
// error from fn stops the walk and is returned.
func EachMember(obj []byte, fn func(key, value []byte) error) error { return eachMember(obj, fn) }

// UnquoteString returns the text of s, a valid JSON string with its quotes.
func UnquoteString(s []byte) (string, error) { return unquote(s) }
