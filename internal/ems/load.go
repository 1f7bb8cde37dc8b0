package ems

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// Load command names, as sent.
const (
	cmdGetBandwidth             = "getBandwidth"
	cmdHTTPClientsConnected     = "httpClientsConnected"
	cmdClientsConnected         = "clientsConnected"
	cmdGetConnectionsCount      = "getConnectionsCount"
	cmdGetConnectionsCountLimit = "getConnectionsCountLimit"
)

// StreamEntry is the part of one listStreams entry that tells viewers
// apart: an outbound network stream (Type "ONR" for RTMP, "ONP" for RTSP,
// ...) is a player or another server's pull; an inbound one ("INR", ...)
// is a source or a replica.
type StreamEntry struct {
	// Name is the local stream name.
	Name string
	// Type is the short type, e.g. "ONR", "INR", "OFHLS".
	Type string
	// FarIP is the address of the other end ("" for internal streams).
	FarIP string
	// UserAgent is the other end's user agent, for outbound RTMP streams:
	// a pull's emulateUserAgent.
	UserAgent string
	// Bitrate is video.currVideoBitRate plus audio.currAudioBitRate, in
	// bits per second (EMS 2.0); 0 when EMS does not report them.
	Bitrate float64
}

// Protocol names of the players a StreamEntry can be.
const (
	ProtocolRTMP = "rtmp"
	ProtocolRTSP = "rtsp"
	ProtocolHLS  = "hls"
	// ProtocolOther covers the other outbound network streams (MPEG-TS,
	// WebSocket fMP4, ...).
	ProtocolOther = "other"
)

// PlayerProtocol returns the protocol of an outbound network stream ("rtmp"
// for ONR..., "rtsp" for ONP..., "other" for the other ON types) and true,
// or "", false for anything else: inbound streams and the file writers
// (OFHLS, OFDASH, OFMP4), which are not viewers.
func (e StreamEntry) PlayerProtocol() (string, bool) {
	switch {
	case !strings.HasPrefix(e.Type, "ON"):
		return "", false
	case strings.HasPrefix(e.Type, "ONR"):
		return ProtocolRTMP, true
	case strings.HasPrefix(e.Type, "ONP"):
		return ProtocolRTSP, true
	}
	return ProtocolOther, true
}

// EachStream runs listStreams and calls fn with each entry as it is
// decoded, so that a listing of thousands of players needs no more memory
// than one entry. *e is reused from one call to the next. An error from fn
// stops the listing and is returned as a KindDecode error.
func (c *Client) EachStream(ctx context.Context, fn func(e *StreamEntry) error) error {
	return c.call(ctx, cmdListStreams, nil, func(dec *jsontext.Decoder) error {
		return streamEntries(dec, fn)
	}, nil)
}

// streamEntries reads listStreams' data (an array of stream objects, or
// null) and calls fn with each entry; *e is reused.
func streamEntries(dec *jsontext.Decoder, fn func(e *StreamEntry) error) error {
	var e StreamEntry
	return array(dec, func(int) error {
		e = StreamEntry{}
		var video, audio float64
		err := object(dec, false, func(key []byte) error {
			var err error
			switch string(key) {
			case "name":
				e.Name, err = readOptString(dec)
			case "type":
				e.Type, err = readOptString(dec)
			case "farIp":
				e.FarIP, err = readOptString(dec)
			case "userAgent":
				e.UserAgent, err = readOptString(dec)
			case "video":
				if video, err = bitrateIn(dec, "currVideoBitRate"); err != nil {
					err = fmt.Errorf("video: %w", err)
				}
			case "audio":
				if audio, err = bitrateIn(dec, "currAudioBitRate"); err != nil {
					err = fmt.Errorf("audio: %w", err)
				}
			default:
				err = dec.SkipValue()
			}
			return err
		})
		if err != nil {
			return err
		}
		e.Bitrate = video + audio
		return fn(&e)
	})
}

// bitrateIn reads a media block of a stream entry and returns the number
// under key when it is above 0; anything else gives 0. When key repeats,
// the last one counts.
func bitrateIn(dec *jsontext.Decoder, key string) (float64, error) {
	if dec.PeekKind() != '{' {
		return 0, dec.SkipValue()
	}
	var rate float64
	err := object(dec, false, func(k []byte) error {
		if string(k) != key {
			return dec.SkipValue()
		}
		return readValue(dec, func(value []byte) error {
			rate = 0
			if len(value) == 0 || (value[0] != '-' && (value[0] < '0' || value[0] > '9')) {
				return nil
			}
			f, err := strconv.ParseFloat(string(value), 64)
			if err != nil {
				return shapef("%s: %v", key, err)
			}
			rate = max(f, 0)
			return nil
		})
	})
	return rate, err
}

// Bandwidth is what getBandwidth answers, in bytes per second. Current is
// measured over the time since the previous read by anyone (EMS resets
// its window on every read) and leaves out the web server's HLS/DASH
// traffic; a Max of 0 means no limit.
type Bandwidth struct {
	CurrentIn, CurrentOut float64
	MaxIn, MaxOut         float64
}

// GetBandwidth returns the member's bandwidth use and limits.
func (c *Client) GetBandwidth(ctx context.Context) (Bandwidth, error) {
	var w struct {
		Current struct {
			In  float64 `json:"in"`
			Out float64 `json:"out"`
		} `json:"current"`
		Max struct {
			In  float64 `json:"in"`
			Out float64 `json:"out"`
		} `json:"max"`
	}
	if err := c.callInto(ctx, cmdGetBandwidth, nil, &w); err != nil {
		return Bandwidth{}, err
	}
	return Bandwidth{CurrentIn: w.Current.In, CurrentOut: w.Current.Out, MaxIn: w.Max.In, MaxOut: w.Max.Out}, nil
}

// HTTPClientsConnected returns the number of HLS/DASH (EvoStream Web
// Server) streaming sessions, of groupName when it is not empty. EMS ends
// a session after six chunk lengths without a request, so departures show
// late.
func (c *Client) HTTPClientsConnected(ctx context.Context, groupName string) (int, error) {
	var params Params
	if groupName != "" {
		params = Params{{"groupName", groupName}}
	}
	var w struct {
		Count flexInt `json:"httpStreamingSessionsCount"`
	}
	if err := c.callInto(ctx, cmdHTTPClientsConnected, params, &w); err != nil {
		return 0, err
	}
	return int(w.Count), nil
}

// ClientsConnected returns the number of outbound network streams (RTMP,
// RTSP, MPEG-TS players, and other servers' pulls), of localStreamName
// when it is not empty.
func (c *Client) ClientsConnected(ctx context.Context, localStreamName string) (int, error) {
	var params Params
	if localStreamName != "" {
		params = Params{{"localStreamName", localStreamName}}
	}
	var w struct {
		Count flexInt `json:"outboundCount"`
	}
	if err := c.callInto(ctx, cmdClientsConnected, params, &w); err != nil {
		return 0, err
	}
	return int(w.Count), nil
}

// GetConnectionsCount returns the number of connections EMS manages (API
// connections and RTP ports included, the web server's excluded): not a
// viewer count.
func (c *Client) GetConnectionsCount(ctx context.Context) (int, error) {
	var w struct {
		Count flexInt `json:"count"`
	}
	if err := c.callInto(ctx, cmdGetConnectionsCount, nil, &w); err != nil {
		return 0, err
	}
	return int(w.Count), nil
}

// ConnectionsLimit is what getConnectionsCountLimit answers. A Limit of 0
// means none.
type ConnectionsLimit struct {
	Current, Limit int
}

// GetConnectionsCountLimit returns the member's connection count and the
// limit above which it drops new connections.
func (c *Client) GetConnectionsCountLimit(ctx context.Context) (ConnectionsLimit, error) {
	var w struct {
		Current flexInt `json:"current"`
		Limit   flexInt `json:"limit"`
	}
	if err := c.callInto(ctx, cmdGetConnectionsCountLimit, nil, &w); err != nil {
		return ConnectionsLimit{}, err
	}
	return ConnectionsLimit{Current: int(w.Current), Limit: int(w.Limit)}, nil
}
