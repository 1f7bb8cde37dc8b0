package ems

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
)

// Endpoint says how to reach one EMS member's HTTP API: directly on its API
// port, or through the API proxy of its EvoStream Web Server.
type Endpoint struct {
	// Member is the member's name, used in error messages.
	Member string
	// BaseURL is "http://ADDRESS:7777" for the API itself, or
	// "http://ADDRESS:8888/PSEUDODOMAIN" for an API proxy. The scheme may
	// be https.
	BaseURL string
	// Proxy reports whether BaseURL is an API proxy: requests then carry
	// HTTP Basic credentials in a header, and a 401 answer is terminal.
	Proxy    bool
	User     string
	Password Secret
	// EncodedQuery selects EMS 1.7's API proxy form, COMMAND%3fparams=...,
	// where the proxy only forwards a question mark that was sent encoded.
	EncodedQuery bool
}

// String describes the endpoint without its password: the member name and
// the base URL, with any credentials in it redacted.
func (e Endpoint) String() string {
	s := "member " + strconv.Quote(e.Member) + " at " + redactURL(e.BaseURL)
	if e.Proxy {
		s += " (API proxy"
		if e.User != "" {
			s += ", user " + strconv.Quote(e.User)
		}
		if e.EncodedQuery {
			s += ", encoded query"
		}
		s += ")"
	}
	return s
}

// GoString describes the endpoint as Go syntax, with the password and any
// credentials in BaseURL redacted.
func (e Endpoint) GoString() string {
	return fmt.Sprintf("ems.Endpoint{Member:%q, BaseURL:%q, Proxy:%t, User:%q, Password:%#v, EncodedQuery:%t}",
		e.Member, redactURL(e.BaseURL), e.Proxy, e.User, e.Password, e.EncodedQuery)
}

// Format prints String for every verb, and GoString for %#v, so no verb
// prints credentials held in BaseURL.
func (e Endpoint) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(e.GoString()))
		return
	}
	_, _ = f.Write([]byte(e.String()))
}

// MarshalJSON encodes the endpoint with the password and any credentials
// in BaseURL redacted.
func (e Endpoint) MarshalJSON() ([]byte, error) {
	type plain Endpoint
	p := plain(e)
	p.BaseURL = redactURL(e.BaseURL)
	return json.Marshal(p)
}

// LogValue groups the endpoint's fields for slog, without the password.
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("member", e.Member),
		slog.String("base_url", redactURL(e.BaseURL)),
		slog.Bool("proxy", e.Proxy),
		slog.String("user", e.User),
	)
}

// redactURL returns raw with any user information replaced by a
// placeholder, or a placeholder when raw does not parse.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	return u.String()
}
