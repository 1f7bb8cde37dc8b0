package receiver

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds on what a stream event may carry before it is handed to the
// Sink. The sink is unauthenticated unless events_token or allowed_sources
// is set, so nothing an outsider sends may grow what the balancer holds or
// logs beyond these.
const (
	// MaxNameBytes bounds payload.name. A replica pull names the stream
	// twice (in its URI and as localStreamName) in one EMS command line,
	// which EMS caps at 16 KiB; a longer name can never be replicated.
	MaxNameBytes = 8 << 10
	// MaxPullURIBytes bounds payload.pullSettings.uri, for the same
	// reason.
	MaxPullURIBytes = 8 << 10
	// MaxVars bounds how many "_" user variables an event may carry;
	// streamlb's provenance tag uses two.
	MaxVars = 32
	// MaxVarBytes bounds one user variable, key and value together.
	MaxVarBytes = 1 << 10
	// maxIPBytes bounds payload.ip before it is parsed: the longest IPv6
	// text with a zone fits.
	maxIPBytes = 64
)

// Values of the result label for stream events acknowledged but not acted
// on because a field is out of bounds.
const (
	resultNameTooLong = "name_too_long" // payload.name past MaxNameBytes
	resultURITooLong  = "uri_too_long"  // pullSettings.uri past MaxPullURIBytes
	resultTooManyVars = "too_many_vars" // more than MaxVars user variables
	resultVarTooLong  = "var_too_long"  // a user variable past MaxVarBytes
)

// resultBadIP names the warnings about a payload.ip that is no IP address
// (counted by streamlb_events_invalid_ip_total; the event is accepted).
const resultBadIP = "invalid_ip"

// outOfBounds returns the result label of a stream event too large to act
// on, with a description for the log, or "" when s is within bounds.
func outOfBounds(s *StreamEvent) (result, why string) {
	switch {
	case len(s.Name) > MaxNameBytes:
		return resultNameTooLong, "payload.name is " + strconv.Itoa(len(s.Name)) + " bytes, more than " + strconv.Itoa(MaxNameBytes)
	case len(s.PullURI) > MaxPullURIBytes:
		return resultURITooLong, "payload.pullSettings.uri is " + strconv.Itoa(len(s.PullURI)) + " bytes, more than " + strconv.Itoa(MaxPullURIBytes)
	case len(s.Vars) > MaxVars:
		return resultTooManyVars, "payload.pullSettings holds more than " + strconv.Itoa(MaxVars) + " user variables"
	}
	for k, v := range s.Vars {
		if len(k)+len(v) > MaxVarBytes {
			return resultVarTooLong, "payload.pullSettings." + clip(k, 40) + " is " + strconv.Itoa(len(k)+len(v)) + " bytes, more than " + strconv.Itoa(MaxVarBytes)
		}
	}
	return "", ""
}

// validIP reports whether s is an IP address (a zone is allowed, as EMS
// may report one for a link-local peer).
func validIP(s string) bool {
	if len(s) > maxIPBytes {
		return false
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// clip returns s cut to at most n bytes, on a character boundary, with a
// marker saying how much was left out; invalid UTF-8 is replaced. Every
// string from a request goes through it before it reaches a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "\uFFFD") + "…(+" + strconv.Itoa(len(s)-cut) + " bytes)"
}
