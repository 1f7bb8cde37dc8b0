package receiver

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Values of the result label of streamlb_events_received_total.
const (
	resultAccepted     = "accepted"     // a stream event handed to the Sink
	resultIgnored      = "ignored"      // a well-formed event of another type
	resultMalformed    = "malformed"    // 400
	resultUnauthorized = "unauthorized" // 401
	resultForbidden    = "forbidden"    // 403
	resultTooLarge     = "too_large"    // 413
	resultTimeout      = "timeout"      // 408: the body did not arrive in time
	resultBusy         = "busy"         // 503: too many body bytes in flight
)

// typeUnknown is the type label of a request whose body was not decoded
// (rejected before decoding, or too broken to show a type).
const typeUnknown = "unknown"

// typeOther is the type label of an event type outside the known EMS list.
const typeOther = "other"

type metrics struct {
	events *prometheus.CounterVec
	// badIP counts stream events whose payload.ip is no IP address; they
	// are handed on as if it were absent.
	badIP prometheus.Counter
}

// newMetrics registers the receiver's metrics on reg; a nil reg registers
// nothing (the counters still count).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "streamlb_events_received_total",
			Help: "EMS event POSTs received, by event type and result " +
				"(accepted, ignored, malformed, unauthorized, forbidden, too_large, timeout, busy; " +
				"name_too_long, uri_too_long, too_many_vars, var_too_long: acknowledged, not acted on). " +
				"Types outside the known EMS list are \"other\"; requests rejected before " +
				"their type was read are \"unknown\".",
		}, []string{"type", "result"}),
		badIP: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "streamlb_events_invalid_ip_total",
			Help: "Stream events whose payload.ip is not an IP address; they are handled as if it were absent.",
		}),
	}
	// Create the series a dashboard looks for first, so they read 0
	// rather than being absent.
	for _, t := range []string{TypeInStreamCreated, TypeInStreamClosed} {
		m.events.WithLabelValues(t, resultAccepted)
		m.events.WithLabelValues(t, resultMalformed)
	}
	for _, r := range []string{resultMalformed, resultUnauthorized, resultForbidden, resultTooLarge, resultTimeout} {
		m.events.WithLabelValues(typeUnknown, r)
	}
	return m
}

func (m *metrics) count(typ, result string) {
	m.events.WithLabelValues(typeLabel(typ), result).Inc()
}

// typeLabel bounds the type label: the EMS event types of the protocol
// reference are kept, anything else is "other".
func typeLabel(t string) string {
	switch t {
	case typeUnknown,
		// Streams.
		"inStreamCreated", "outStreamCreated", "streamCreated",
		"inStreamClosed", "outStreamClosed", "streamClosed",
		"inStreamCodecsUpdated", "outStreamCodecsUpdated", "streamCodecsUpdated",
		"audioFeedStopped", "videoFeedStopped", "NoAudio", "NoVideo",
		// HLS, HDS, MSS, DASH and record chunks and playlists.
		"hlsChunkCreated", "hlsChunkClosed", "hlsChunkError", "hlsChildPlaylistUpdated", "hlsMasterPlaylistUpdated",
		"hdsChunkCreated", "hdsChunkClosed", "hdsChunkError", "hdsChildPlaylistUpdated", "hdsMasterPlaylistUpdated",
		"mssChunkCreated", "mssChunkClosed", "mssChunkError", "mssChildPlaylistUpdated", "mssMasterPlaylistUpdated",
		"dashChunkCreated", "dashChunkClosed", "dashChunkError", "dashChildPlaylistUpdated", "dashMasterPlaylistUpdated",
		"dashPlaylistUpdated",
		"recordChunkCreated", "recordChunkClosed", "recordChunkError",
		// EWS.
		"streamingSessionStarted", "streamingSessionEnded", "fileDownloaded",
		// API.
		"cliRequest", "cliResponse", "processStarted", "processStopped",
		"timerCreated", "timerTriggered", "timerClosed",
		// Connections.
		"protocolRegisteredToApp", "protocolUnregisteredFromApp", "carrierCreated", "carrierClosed",
		// Application.
		"applicationStart", "applicationStop", "serverStarted", "serverStopping",
		// Observed on real servers beyond the documented list.
		"outStreamFirstFrameSent", "playerJoinedRoom", "mediaFileDownloaded", "playlistItemStart",
		"webRtcCommandReceived", "webRtcServiceConnected", "webRtcServiceStarted", "webRtcServiceStopped",
		"pullStreamFailed":
		return t
	}
	return typeOther
}
