package ems

import (
	"fmt"
	"log/slog"
)

// Secret holds a credential such as an API proxy password. Its String,
// GoString, Format, LogValue and MarshalText methods return a fixed
// placeholder, so a Secret printed by fmt (with any verb), logged by slog or
// encoded as JSON never shows its value. Reveal returns it.
type Secret string

const redacted = "REDACTED"

// Reveal returns the secret value. Call it only where the value is sent to
// the member it belongs to.
func (s Secret) Reveal() string { return string(s) }

// String returns a placeholder, never the value; "" for an empty Secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString returns a placeholder, never the value.
func (s Secret) GoString() string { return fmt.Sprintf("ems.Secret(%q)", s.String()) }

// Format writes the placeholder for every verb, so that verbs fmt would not
// route through String (such as %d or %x) cannot print the value either.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// LogValue returns a placeholder, never the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText returns a placeholder, never the value, so a Secret inside a
// struct encoded as JSON does not leak.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
