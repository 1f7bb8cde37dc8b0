package ems

// PullRequest holds the parameters of a pullStream command. Only URI is
// required; a field left at its zero value is not sent, so EMS applies its
// default (documented per field).
type PullRequest struct {
	// URI is the stream to pull, e.g. "rtmp://10.0.0.5/live/cam1". Required.
	URI string
	// LocalStreamName names the stream on this member (EMS default: a
	// random name). EMS refuses a name held by an inbound stream or by
	// another pull configuration ("Stream name X already taken").
	LocalStreamName string
	// KeepAlive: reconnect every second after a loss (EMS default true).
	// With false, EMS deletes the configuration when the connection ends.
	KeepAlive *bool
	// ForceTCP: RTSP over TCP (EMS default false).
	ForceTCP *bool

	TcURL, PageURL, SwfURL, EmulateUserAgent, SSMIP, HTTPProxy string
	AudioCodecBytes, SPSBytes, PPSBytes                        string

	TTL, TOS, RTCPDetectionInterval, RangeStart, RangeEnd *int

	IsAudio, SendRenewStream *bool

	// Vars are user variables: EMS stores them with the configuration and
	// echoes them in listConfig, pullSettings and events. Every key must
	// begin with "_". They are sent after the fixed parameters, sorted by key.
	Vars map[string]string
}

// PullResult is what EMS answers to a successful pullStream. SUCCESS means
// the pull is queued, not that the stream is connected.
type PullResult struct {
	ConfigID        uint64
	LocalStreamName string
	// URI is the pulled URI as EMS parsed it (originalUri, else fullUri).
	URI       string
	KeepAlive bool
}

// PullConfig is a stored pull configuration, as listed by listConfig or
// getConfigInfo, or carried in a stream's pullSettings.
type PullConfig struct {
	ConfigID        uint64
	LocalStreamName string
	URI             string
	KeepAlive       bool
	// Status is the configuration's current status; the zero value (with
	// an empty Description) when EMS did not report one.
	Status PullStatus
	// Vars holds the user variables: keys beginning with "_" whose value is
	// a string. Nil when there are none.
	Vars map[string]string
}

// PullStatus is the current state of a pull configuration.
type PullStatus struct {
	// Code is one of the PullStatus* constants.
	Code        int
	Description string
	// Timestamp is the time of the last change, in Unix seconds.
	Timestamp int64
}

// Pull configuration status codes, as in status.current.code.
const (
	PullStatusStreaming        = 0
	PullStatusConnecting       = 1
	PullStatusWaiting          = 2
	PullStatusConnected        = 3
	PullStatusDisconnected     = 4
	PullStatusConnectionFailed = 5
)

// StreamInfo describes one active stream, as listed by listStreams or
// getStreamInfo.
type StreamInfo struct {
	// UniqueID is the stream id: edge/instance id in the upper 32 bits,
	// local id in the lower 32.
	UniqueID uint64
	// Name is the local stream name.
	Name string
	// Type is the short type, e.g. "INR" (inbound network RTMP), "ONR4TS".
	Type string
	// IP is the member's own address on the stream's connection ("" for
	// file and internal streams).
	IP          string
	TypeNumeric uint64
	// ConnectionType is how the stream came to be: 0 published by a third
	// party, 1 pulled, 2 pushed, 3 HLS, ... (the operationType values).
	ConnectionType int
	// PullSettings is the pull configuration of a pulled stream, else nil.
	PullSettings *PullConfig
	// Created is the stream's creationTimestamp as its EMS reports it:
	// milliseconds since the Unix epoch, 0 when not reported.
	Created float64
}

// Connection types of StreamInfo.ConnectionType.
const (
	ConnectionPublished = 0
	ConnectionPulled    = 1
	ConnectionPushed    = 2
)

// Version is what the version command answers.
type Version struct {
	Banner, BranchName, BuildDate, BuildNumber, CodeName, Hash, ReleaseNumber string
}
