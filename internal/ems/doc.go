// Package ems is a typed client for the EvoStream Media Server HTTP API,
// reached directly or through the API proxy of the EvoStream Web Server.
//
// A Client talks to one member:
//
//	c := ems.New(ems.Endpoint{Member: "b", BaseURL: "http://10.0.0.6:7777"}, nil)
//	res, err := c.PullStream(ctx, ems.PullRequest{
//		URI:             "rtmp://10.0.0.5/live/cam1",
//		LocalStreamName: "cam1",
//		KeepAlive:       &keepAlive,
//		Vars:            map[string]string{"_origin": "a"},
//	})
//	switch {
//	case ems.IsAlreadyTaken(err): // the member already has the name
//	case ems.IsUnauthorized(err): // API proxy refused the credentials
//	case ems.IsRetryable(err):    // transport failure or 5xx: try later
//	}
//
// On the wire, a command is a GET of BASE/COMMAND?params=BASE64, where
// BASE64 is the standard base64 encoding of a parameter string
// "k1=v1 k2=v2" (see Params), sent without percent-encoding. Through an
// API proxy the request carries HTTP Basic credentials in a header (never in
// the URL), and EMS 1.7 proxies need the form BASE/COMMAND%3fparams=BASE64
// (Endpoint.EncodedQuery). EMS answers every command, successful or not,
// with HTTP 200 and an envelope {"data":...,"description":...,"status":
// "SUCCESS"|"FAIL"}; the Client returns the data of a SUCCESS and turns
// everything else into an *Error whose Kind tells transport failures, HTTP
// statuses, proxy 401s, FAIL envelopes and undecodable answers apart.
//
// Every answer is decoded as it arrives by one streaming JSON decoder
// (github.com/go-json-experiment/json's jsontext), keeping only the fields
// a method returns, with 64-bit integers exact. ListConfig, EachPullConfig,
// EachInboundStreamName and EachStream hand out one entry at a time, so a
// listing of any length needs no more memory than its largest entry.
//
// The HTTP client (NewHTTPClient) has no timeout of its own: a call ends
// at its context's deadline, DefaultTimeout when the context has none.
package ems
