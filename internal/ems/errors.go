package ems

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Kind classifies an *Error.
type Kind int

// The kinds of failure a Client reports.
const (
	// KindTransport: the request did not get an HTTP answer (connection
	// refused or reset, timeout, cancelled context).
	KindTransport Kind = iota + 1
	// KindHTTP: an HTTP status other than 2xx, except an API proxy's 401.
	KindHTTP
	// KindUnauthorized: an API proxy answered 401, i.e. it refused the
	// credentials (or, a quirk of the EMS web server, could not reach EMS).
	KindUnauthorized
	// KindFail: EMS answered with a FAIL envelope.
	KindFail
	// KindDecode: the answer is not a well-formed EMS envelope, or its data
	// does not have the shape the command returns.
	KindDecode
	// KindRequest: the request was refused before anything was sent
	// (invalid endpoint, command or parameters).
	KindRequest
)

// String returns a short lowercase name, suitable as a metric label.
func (k Kind) String() string {
	switch k {
	case KindTransport:
		return "transport"
	case KindHTTP:
		return "http"
	case KindUnauthorized:
		return "unauthorized"
	case KindFail:
		return "fail"
	case KindDecode:
		return "decode"
	case KindRequest:
		return "request"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the error every Client method returns. Its text names the member
// and the command and never contains credentials.
type Error struct {
	Member, Command string
	Kind            Kind
	// StatusCode is the HTTP status when there was an answer, else 0.
	StatusCode int
	// Description is a FAIL envelope's description, or a short excerpt
	// (at most 120 bytes) of a body that could not be decoded.
	Description string
	// Err is the underlying error, if any.
	Err error
}

// Error returns e.g. `ems member "b": pullStream: FAIL: Stream name x already taken`.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ems member %q: %s: ", e.Member, e.Command)
	switch e.Kind {
	case KindFail:
		b.WriteString("FAIL: ")
		b.WriteString(e.Description)
	case KindUnauthorized:
		fmt.Fprintf(&b, "wrong credentials for member %q (API proxy answered %d)", e.Member, e.StatusCode)
	case KindHTTP:
		fmt.Fprintf(&b, "HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
		if e.Description != "" {
			fmt.Fprintf(&b, ": %q", e.Description)
		}
	case KindDecode:
		b.WriteString("decode response")
		if e.Err != nil {
			b.WriteString(": ")
			b.WriteString(e.Err.Error())
		}
		if e.Description != "" {
			fmt.Fprintf(&b, " (body starts %q)", e.Description)
		}
	case KindRequest:
		b.WriteString("invalid request")
		if e.Err != nil {
			b.WriteString(": ")
			b.WriteString(e.Err.Error())
		}
	default:
		if e.Err != nil {
			b.WriteString(e.Err.Error())
		} else {
			b.WriteString(e.Kind.String())
		}
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the same call may succeed later: true for
// transport failures and 5xx answers; false for an API proxy's 401, FAIL
// envelopes, undecodable answers, other HTTP statuses and invalid requests.
func (e *Error) Retryable() bool {
	switch e.Kind {
	case KindTransport:
		return true
	case KindHTTP:
		return e.StatusCode >= 500 && e.StatusCode <= 599
	default:
		return false
	}
}

// Reason returns a bounded label for metrics: the kind, and for HTTP
// errors the status class ("http_5xx").
func (e *Error) Reason() string {
	if e.Kind == KindHTTP && e.StatusCode >= 100 && e.StatusCode <= 599 {
		return fmt.Sprintf("http_%dxx", e.StatusCode/100)
	}
	return e.Kind.String()
}

// IsRetryable reports whether err is an *Error that is Retryable.
func IsRetryable(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Retryable()
}

// IsUnauthorized reports whether err is an API proxy's 401: the member's
// credentials are wrong, so retrying will not help until they change.
func IsUnauthorized(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Kind == KindUnauthorized
}

// IsAlreadyTaken reports whether err is EMS's FAIL "Stream name X already
// taken": the name is held by an inbound stream or by a pull configuration.
func IsAlreadyTaken(err error) bool {
	desc, ok := IsFail(err)
	if !ok {
		return false
	}
	return strings.HasPrefix(desc, "Stream name ") && strings.HasSuffix(desc, " already taken")
}

// IsFail returns the description of a FAIL envelope and reports whether err
// is one.
func IsFail(err error) (description string, ok bool) {
	e, ok := errors.AsType[*Error](err)
	if !ok || e.Kind != KindFail {
		return "", false
	}
	return e.Description, true
}
