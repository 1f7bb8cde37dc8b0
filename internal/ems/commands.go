package ems

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// EMS command names, as sent.
const (
	cmdVersion                = "version"
	cmdPullStream             = "pullStream"
	cmdListConfig             = "listConfig"
	cmdListInboundStreamNames = "listInboundStreamNames"
	cmdListStreams            = "listStreams"
	cmdListStreamsIDs         = "listStreamsIds"
	cmdGetStreamInfo          = "getStreamInfo"
	cmdIsStreamRunning        = "isStreamRunning"
	cmdShutdownStream         = "shutdownStream"
	cmdRemoveConfig           = "removeConfig"
	cmdGetConfigInfo          = "getConfigInfo"
)

// Version returns the member's version information.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var w struct {
		Banner        flexString `json:"banner"`
		BranchName    flexString `json:"branchName"`
		BuildDate     flexString `json:"buildDate"`
		BuildNumber   flexString `json:"buildNumber"`
		CodeName      flexString `json:"codeName"`
		Hash          flexString `json:"hash"`
		ReleaseNumber flexString `json:"releaseNumber"`
	}
	if err := c.callInto(ctx, cmdVersion, nil, &w); err != nil {
		return Version{}, err
	}
	return Version{
		Banner:        string(w.Banner),
		BranchName:    string(w.BranchName),
		BuildDate:     string(w.BuildDate),
		BuildNumber:   string(w.BuildNumber),
		CodeName:      string(w.CodeName),
		Hash:          string(w.Hash),
		ReleaseNumber: string(w.ReleaseNumber),
	}, nil
}

// PullStream asks the member to pull req.URI. SUCCESS only means the pull
// is queued. A name already in use gives a KindFail error for which
// IsAlreadyTaken reports true.
func (c *Client) PullStream(ctx context.Context, req PullRequest) (PullResult, error) {
	params, err := req.Params()
	if err != nil {
		return PullResult{}, c.errorf(cmdPullStream, KindRequest, err)
	}
	var res PullResult
	err = c.call(ctx, cmdPullStream, params, nil, func(data []byte) error {
		var err error
		res, err = decodePullResult(data)
		return err
	})
	if err != nil {
		return PullResult{}, err
	}
	return res, nil
}

// decodePullResult reads the fields PullResult has from pullStream's data,
// valid JSON or nil, without decoding the others. Keys match without
// regard to case, as encoding/json matches them.
func decodePullResult(data []byte) (PullResult, error) {
	var res PullResult
	if data == nil {
		return res, nil
	}
	dec := getDecoder(bytes.NewBuffer(data))
	defer putDecoder(dec)
	err := object(dec, true, func(key []byte) error {
		var err error
		var field string
		switch {
		case bytes.EqualFold(key, []byte("configId")):
			field = "configId"
			err = readValue(dec, func(v []byte) error { return decodeUint(v, &res.ConfigID) })
		case bytes.EqualFold(key, []byte("localStreamName")):
			field = "localStreamName"
			res.LocalStreamName, err = readOptString(dec)
		case bytes.EqualFold(key, []byte("uri")):
			field = "uri"
			res.URI, err = readURI(dec)
		case bytes.EqualFold(key, []byte("keepAlive")):
			field = "keepAlive"
			err = readValue(dec, func(v []byte) error {
				var b flexBool
				err := b.UnmarshalJSON(v)
				res.KeepAlive = bool(b)
				return err
			})
		default:
			err = dec.SkipValue()
		}
		if err != nil && field != "" {
			return fmt.Errorf("%s: %w", field, err)
		}
		return nil
	})
	return res, err
}

// ListConfig returns the member's pull configurations (listConfig's "pull"
// category; the other categories are skipped). The answer, which may be
// several megabytes, is decoded as it arrives.
func (c *Client) ListConfig(ctx context.Context) ([]PullConfig, error) {
	out := []PullConfig{}
	err := c.EachPullConfig(ctx, func(pc *PullConfig) error {
		cp := *pc
		if pc.Vars != nil {
			cp.Vars = maps.Clone(pc.Vars)
		}
		out = append(out, cp)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EachPullConfig runs listConfig and calls fn with each pull configuration
// as it is decoded, so that a listing of any size needs no more memory than
// its largest entry. *pc, its Vars map included, is reused from one call to
// the next: fn must copy what it keeps. An error from fn stops the listing
// and is returned as a KindDecode error.
func (c *Client) EachPullConfig(ctx context.Context, fn func(pc *PullConfig) error) error {
	return c.EachPullConfigSkipping(ctx, fn, nil)
}

// EachPullConfigSkipping is EachPullConfig, but an entry that is valid
// JSON and does not decode as a pull configuration (a key of the wrong
// type, say) is skipped, and skip is called with why, instead of failing
// the whole listing. A listing that is not valid JSON still fails.
func (c *Client) EachPullConfigSkipping(ctx context.Context, fn func(pc *PullConfig) error, skip func(err error)) error {
	return c.call(ctx, cmdListConfig, nil, func(dec *jsontext.Decoder) error {
		return streamPullConfigs(dec, fn, skip)
	}, nil)
}

// ListInboundStreamNames returns the names of the member's inbound streams,
// empty when there are none (EMS answers data:null).
func (c *Client) ListInboundStreamNames(ctx context.Context) ([]string, error) {
	out := []string{}
	err := c.EachInboundStreamName(ctx, func(name []byte) error {
		out = append(out, string(name))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EachInboundStreamName runs listInboundStreamNames and calls fn with each
// name as it is decoded. name is valid only during the call. An error from
// fn stops the listing and is returned as a KindDecode error.
func (c *Client) EachInboundStreamName(ctx context.Context, fn func(name []byte) error) error {
	return c.call(ctx, cmdListInboundStreamNames, nil, func(dec *jsontext.Decoder) error {
		return streamNames(dec, fn)
	}, nil)
}

// ListStreams returns the member's active streams, empty when there are
// none (EMS answers data:null).
func (c *Client) ListStreams(ctx context.Context) ([]StreamInfo, error) {
	var w []wireStream
	if err := c.callInto(ctx, cmdListStreams, nil, &w); err != nil {
		return nil, err
	}
	out := make([]StreamInfo, 0, len(w))
	for _, s := range w {
		out = append(out, s.info())
	}
	return out, nil
}

// ListStreamsIDs returns the unique ids of the member's active streams,
// empty when there are none.
func (c *Client) ListStreamsIDs(ctx context.Context) ([]uint64, error) {
	out := []uint64{}
	if err := c.callInto(ctx, cmdListStreamsIDs, nil, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = []uint64{}
	}
	return out, nil
}

// GetStreamInfo returns the active stream named localStreamName. EMS
// answers FAIL "Stream NAME not found" when there is none.
func (c *Client) GetStreamInfo(ctx context.Context, localStreamName string) (StreamInfo, error) {
	if localStreamName == "" {
		return StreamInfo{}, c.errorf(cmdGetStreamInfo, KindRequest, errors.New("empty stream name"))
	}
	var w wireStream
	if err := c.callInto(ctx, cmdGetStreamInfo, Params{{"localStreamName", localStreamName}}, &w); err != nil {
		return StreamInfo{}, err
	}
	return w.info(), nil
}

// IsStreamRunning reports whether a stream named localStreamName is
// active. EMS answers false, not FAIL, for an unknown name.
func (c *Client) IsStreamRunning(ctx context.Context, localStreamName string) (bool, error) {
	if localStreamName == "" {
		return false, c.errorf(cmdIsStreamRunning, KindRequest, errors.New("empty stream name"))
	}
	var w struct {
		Running flexBool `json:"Running"`
	}
	if err := c.callInto(ctx, cmdIsStreamRunning, Params{{"localStreamName", localStreamName}}, &w); err != nil {
		return false, err
	}
	return bool(w.Running), nil
}

// ShutdownStream closes the inbound stream named localStreamName. With
// permanently, EMS also removes its configuration; otherwise a keepAlive
// pull reconnects. EMS answers FAIL "Stream no longer available" when there
// is no such stream.
func (c *Client) ShutdownStream(ctx context.Context, localStreamName string, permanently bool) error {
	if localStreamName == "" {
		return c.errorf(cmdShutdownStream, KindRequest, errors.New("empty stream name"))
	}
	params := Params{{"localStreamName", localStreamName}, {"permanently", boolParam(permanently)}}
	_, err := c.Call(ctx, cmdShutdownStream, params)
	return err
}

// RemoveConfig removes the configuration configID and stops its stream if
// one is active. EMS answers SUCCESS even for an unknown id.
func (c *Client) RemoveConfig(ctx context.Context, configID uint64) error {
	if configID == 0 {
		return c.errorf(cmdRemoveConfig, KindRequest, errors.New("config id 0"))
	}
	_, err := c.Call(ctx, cmdRemoveConfig, Params{{"id", strconv.FormatUint(configID, 10)}})
	return err
}

// GetConfigInfo returns the configuration configID, read as a pull
// configuration. EMS answers FAIL "Config ID not found" for an unknown id.
func (c *Client) GetConfigInfo(ctx context.Context, configID uint64) (PullConfig, error) {
	if configID == 0 {
		return PullConfig{}, c.errorf(cmdGetConfigInfo, KindRequest, errors.New("config id 0"))
	}
	var w wirePullConfig
	if err := c.callInto(ctx, cmdGetConfigInfo, Params{{"id", strconv.FormatUint(configID, 10)}}, &w); err != nil {
		return PullConfig{}, err
	}
	return w.pc, nil
}

// callInto runs command and decodes the SUCCESS data into v; null data
// leaves v unchanged.
func (c *Client) callInto(ctx context.Context, command string, params Params, v any) error {
	return c.call(ctx, command, params, nil, func(data []byte) error {
		if data == nil {
			return nil
		}
		return json.Unmarshal(data, v)
	})
}

// wireStream is the part of a stream-info object StreamInfo keeps.
type wireStream struct {
	UniqueID       uint64          `json:"uniqueId"`
	Name           optString       `json:"name"`
	Type           optString       `json:"type"`
	IP             optString       `json:"ip"`
	TypeNumeric    uint64          `json:"typeNumeric"`
	ConnectionType int             `json:"connectionType"`
	PullSettings   *wirePullConfig `json:"pullSettings"`
	// CreationTimestamp is in milliseconds since the Unix epoch, printed
	// with four decimals by EMS.
	CreationTimestamp float64 `json:"creationTimestamp"`
}

func (w wireStream) info() StreamInfo {
	s := StreamInfo{
		UniqueID:       w.UniqueID,
		Name:           w.Name.s,
		Type:           w.Type.s,
		IP:             w.IP.s,
		TypeNumeric:    w.TypeNumeric,
		ConnectionType: w.ConnectionType,
		Created:        w.CreationTimestamp,
	}
	if w.PullSettings != nil {
		pc := w.PullSettings.pc
		s.PullSettings = &pc
	}
	return s
}

// Params returns the pullStream parameters for r: uri, localStreamName,
// keepAlive, forceTcp, tcUrl, pageUrl, swfUrl, emulateUserAgent, ssmIp,
// httpProxy, audioCodecBytes, spsBytes, ppsBytes, ttl, tos,
// rtcpDetectionInterval, rangeStart, rangeEnd, isAudio, sendRenewStream,
// each only when set, then the user variables sorted by key. It fails when
// URI is empty or a variable's key does not begin with "_".
func (r PullRequest) Params() (Params, error) {
	if r.URI == "" {
		return nil, errors.New("pull request without uri")
	}
	p := make(Params, 0, 8+len(r.Vars))
	str := func(k, v string) {
		if v != "" {
			p = append(p, Param{k, v})
		}
	}
	boolean := func(k string, v *bool) {
		if v != nil {
			p = append(p, Param{k, boolParam(*v)})
		}
	}
	integer := func(k string, v *int) {
		if v != nil {
			p = append(p, Param{k, strconv.Itoa(*v)})
		}
	}
	str("uri", r.URI)
	str("localStreamName", r.LocalStreamName)
	boolean("keepAlive", r.KeepAlive)
	boolean("forceTcp", r.ForceTCP)
	str("tcUrl", r.TcURL)
	str("pageUrl", r.PageURL)
	str("swfUrl", r.SwfURL)
	str("emulateUserAgent", r.EmulateUserAgent)
	str("ssmIp", r.SSMIP)
	str("httpProxy", r.HTTPProxy)
	str("audioCodecBytes", r.AudioCodecBytes)
	str("spsBytes", r.SPSBytes)
	str("ppsBytes", r.PPSBytes)
	integer("ttl", r.TTL)
	integer("tos", r.TOS)
	integer("rtcpDetectionInterval", r.RTCPDetectionInterval)
	integer("rangeStart", r.RangeStart)
	integer("rangeEnd", r.RangeEnd)
	boolean("isAudio", r.IsAudio)
	boolean("sendRenewStream", r.SendRenewStream)

	seen := make(map[string]string, len(r.Vars))
	for _, k := range slices.Sorted(maps.Keys(r.Vars)) {
		if len(k) < 2 || k[0] != '_' {
			return nil, fmt.Errorf("user variable %q: key must begin with \"_\"", k)
		}
		// EMS compares keys without regard to case: two such keys would
		// silently collapse into one.
		if prev, ok := seen[strings.ToLower(k)]; ok {
			return nil, fmt.Errorf("user variables %q and %q differ only in case", prev, k)
		}
		seen[strings.ToLower(k)] = k
		p = append(p, Param{k, r.Vars[k]})
	}
	return p, nil
}

func boolParam(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
