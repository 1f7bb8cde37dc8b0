// Package emsim emulates a group of EvoStream Media Server (EMS) instances
// well enough to test, benchmark and demonstrate a stream balancer against
// them without the real server.
//
// A Cluster runs one or more members, each on its own loopback address and a
// common API port, so that a pull of rtmp://H/live/X reaches the member whose
// address is H. Every member answers the EMS HTTP API (GET or POST
// /COMMAND?params=BASE64) byte-faithfully to the recorded EMS answers: the
// same envelope, key order, number formatting and FAIL texts. It keeps pull
// configurations with their status codes and keepAlive semantics, posts
// stream events to an RPC sink from its own address (one new connection per
// event, the answer never waited for), optionally serves the EWS API proxy
// with Basic authentication, and persists keepAlive pull configurations
// across restarts.
//
// Players are modelled too: RTMP and RTSP players and the replica pulls a
// member serves are outbound streams (listStreams, clientsConnected,
// outStreamCreated and outStreamClosed), HLS players are web server
// sessions (httpClientsConnected), and all of them move the stream's
// bitrate (getBandwidth).
//
// Media is modelled, not carried: a pull from another member streams while
// the stream is an inbound stream there and the member is not down; a pull
// from any other host (an external camera) streams shortly after it is
// requested unless it was made unavailable. Upstream members of the same
// Cluster are checked in memory when their streams end or the member goes
// down, as a pull's connection would break at once; members in other
// processes are checked over HTTP with one GET /_emsim/media per upstream
// member per second, a route of the media plane that API faults do not
// touch.
//
// Faults of the API (latency, a share of HTTP 500 answers, connections
// closed unanswered), which pulls from the member outlive, a member that is
// down, and the emulated world (encoders publishing, external sources
// failing, players) are driven through Member methods or, for the standalone program cmd/emsim,
// through control routes under /_emsim/ on the API port.
//
// The package is loopback-only: it refuses to bind any address outside
// 127.0.0.0/8.
package emsim
