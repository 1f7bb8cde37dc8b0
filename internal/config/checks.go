package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Floors of the timings: a shorter one is refused, as surely a mistake.
const (
	// MinResyncInterval is the shortest resync_interval accepted: every
	// resync lists every member twice, and a down member is probed as
	// often.
	MinResyncInterval = time.Second
	// MinTeardownGrace is the shortest teardown_grace accepted: less
	// would tear replicas down on the blink of one listing.
	MinTeardownGrace = time.Second
)

// checkListen returns what is wrong with a listen address, or "".
func checkListen(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf(`want HOST:PORT such as "127.0.0.1:4000", got %q`, s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("want a port number from 0 to 65535, got %q", port)
	}
	if host != "" && checkHost(host) != "" {
		return fmt.Sprintf("want an IP address or host name before the port, got %q", host)
	}
	return ""
}

// checkHost returns what is wrong with a host name or IP address, or "".
func checkHost(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "want an IP address without a zone"
		}
		return ""
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return "want a host name or IP address, without scheme, port or path"
		}
	}
	return ""
}

// checkAddress returns what is wrong with a member's address, or "". The
// address is quoted in the message unless it may hold credentials.
//
// An IPv6 address is refused: other members pull from the address as
// rtmp://ADDRESS/APP/NAME, built without the brackets an IPv6 host needs.
func checkAddress(s string) string {
	problem := checkHost(s)
	if a, err := netip.ParseAddr(s); problem == "" && err == nil && a.Is6() {
		if a.Is4In6() {
			return fmt.Sprintf("want the IPv4 address %s rather than its IPv6-mapped form %q", a.Unmap(), s)
		}
		return fmt.Sprintf("IPv6 addresses are not supported (replica pull URIs, rtmp://ADDRESS/APP/NAME, are built for IPv4 addresses and host names): give an IPv4 address or a host name, got %q", s)
	}
	if problem == "" || s == "" {
		return problem
	}
	if strings.Contains(s, "@") {
		return problem
	}
	return fmt.Sprintf("%s, got %q", problem, s)
}

// addressKey returns the form of an address two members are compared by.
func addressKey(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return strings.ToLower(s)
}

// checkName returns what is wrong with a member name, or "".
func checkName(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case strings.TrimSpace(s) != s:
		return fmt.Sprintf("must not start or end with white space, got %q", s)
	case strings.ContainsRune(s, '/'):
		return fmt.Sprintf("must not contain '/', got %q", s)
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Sprintf("must not contain control characters, got %q", s)
	}
	return ""
}

// isToken reports whether s is a non-empty run of the characters that
// pass unescaped through EMS parameter strings and URL paths: letters,
// digits and . _ ~ -.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r == '~') {
			return false
		}
	}
	return true
}

// checkToken returns what is wrong with a value that must be a token, or
// "".
func checkToken(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if !isToken(s) {
		return fmt.Sprintf("use only letters, digits and . _ ~ -, got %q", s)
	}
	return ""
}

// checkAPI checks a host's api URL and returns it without a trailing
// slash, and its scheme. The URL is never quoted in the problem: it may
// hold credentials.
func checkAPI(s string) (base, scheme, problem string) {
	const want = `want an http or https URL such as "http://127.0.0.1:7777"`
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", "", want
	case u.User != nil:
		return "", "", "must not hold credentials: give them in userName and password (or passwordEnv, passwordFile)"
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Opaque != "":
		return "", "", want
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", "", "must not hold a query or fragment"
	}
	if checkHost(u.Hostname()) != "" {
		return "", "", want
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Sprintf("want a port number from 1 to 65535, got %q", port)
		}
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"), u.Scheme, ""
}
