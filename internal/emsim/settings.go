package emsim

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

const (
	defaultPullUserAgent = "EvoStream Media Server (www.evostream.com) player"
	emsServerHeader      = "EvoStream Media Server (www.evostream.com)"
)

// variable is a user-defined variable (a parameter whose name starts with
// '_'), stored with the configuration and echoed back.
type variable struct {
	Key     string   `json:"key"`
	Value   string   `json:"value,omitempty"`
	Values  []string `json:"values,omitempty"`
	IsArray bool     `json:"isArray,omitempty"`
}

func (v variable) jsonValue() any {
	if v.IsArray {
		if v.Values == nil {
			return []string{}
		}
		return v.Values
	}
	return v.Value
}

// settings are the stored settings of one pull configuration (EMS 2.0
// field set). They never change after creation.
type settings struct {
	ConfigID              uint64     `json:"configId"`
	URI                   string     `json:"uri"`
	LocalStreamName       string     `json:"localStreamName"`
	KeepAlive             bool       `json:"keepAlive"`
	ForceTCP              bool       `json:"forceTcp"`
	TCURL                 string     `json:"tcUrl"`
	PageURL               string     `json:"pageUrl"`
	SWFURL                string     `json:"swfUrl"`
	TTL                   int64      `json:"ttl"`
	TOS                   int64      `json:"tos"`
	RTCPDetectionInterval int64      `json:"rtcpDetectionInterval"`
	EmulateUserAgent      string     `json:"emulateUserAgent"`
	IsAudio               bool       `json:"isAudio"`
	AudioCodecBytes       string     `json:"audioCodecBytes"`
	SPSBytes              string     `json:"spsBytes"`
	PPSBytes              string     `json:"ppsBytes"`
	SSMIP                 string     `json:"ssmIp"`
	HTTPProxy             string     `json:"httpProxy"`
	RangeStart            int64      `json:"rangeStart"`
	RangeEnd              int64      `json:"rangeEnd"`
	SendRenewStream       bool       `json:"sendRenewStream"`
	HTTPStreamType        string     `json:"httpStreamType"`
	SaveToConfig          bool       `json:"saveToConfig"`
	SendDummyPayload      bool       `json:"sendDummyPayload"`
	VideoSourceIndex      string     `json:"videoSourceIndex"`
	Vars                  []variable `json:"vars,omitempty"`
}

// persistent reports whether the configuration survives a restart.
func (s *settings) persistent() bool { return s.KeepAlive && s.SaveToConfig }

// pullSettingsFromParams validates the parameters of pullStream and returns
// the settings (without configId) and the parsed URI.
func pullSettingsFromParams(p *params) (*settings, uriInfo, *paramError) {
	uv, ok := p.get("uri")
	if !ok || uv.isArr || uv.s == "" {
		return nil, uriInfo{}, invalidParam("uri")
	}
	u, ok := parseURI(uv.s)
	if !ok {
		return nil, uriInfo{}, &paramError{msg: "Invalid URI: " + uv.s}
	}
	s := &settings{URI: uv.s}
	var err *paramError
	boolp := func(dst *bool, name string, def bool) {
		if err == nil {
			*dst, err = p.optBool(name, def)
		}
	}
	strp := func(dst *string, name, def string) {
		if err == nil {
			*dst, err = p.optString(name, def)
		}
	}
	intp := func(dst *int64, name string, def, lo, hi int64) {
		if err == nil {
			*dst, err = p.optInt(name, def, lo, hi)
		}
	}
	boolp(&s.KeepAlive, "keepAlive", true)
	strp(&s.LocalStreamName, "localStreamName", "")
	boolp(&s.ForceTCP, "forceTcp", false)
	strp(&s.TCURL, "tcUrl", "")
	strp(&s.PageURL, "pageUrl", "")
	strp(&s.SWFURL, "swfUrl", "")
	intp(&s.TTL, "ttl", 256, 0, 256)
	intp(&s.TOS, "tos", 256, 0, 256)
	intp(&s.RTCPDetectionInterval, "rtcpDetectionInterval", 10, 0, 60)
	strp(&s.EmulateUserAgent, "emulateUserAgent", defaultPullUserAgent)
	boolp(&s.IsAudio, "isAudio", true)
	strp(&s.AudioCodecBytes, "audioCodecBytes", "")
	strp(&s.SPSBytes, "spsBytes", "")
	strp(&s.PPSBytes, "ppsBytes", "")
	strp(&s.SSMIP, "ssmIp", "")
	strp(&s.HTTPProxy, "httpProxy", "")
	intp(&s.RangeStart, "rangeStart", -2, -1<<62, 1<<62)
	intp(&s.RangeEnd, "rangeEnd", -1, -1<<62, 1<<62)
	boolp(&s.SendRenewStream, "sendRenewStream", false)
	strp(&s.HTTPStreamType, "httpStreamType", "ts")
	boolp(&s.SaveToConfig, "saveToConfig", true)
	boolp(&s.SendDummyPayload, "sendDummyPayload", false)
	strp(&s.VideoSourceIndex, "videoSourceIndex", "high")
	if err != nil {
		return nil, uriInfo{}, err
	}
	for _, r := range [2]int64{s.RangeStart, s.RangeEnd} {
		if r < -2 {
			return nil, uriInfo{}, &paramError{msg: "rangeStart and rangeEnd can only have positive values, -2 or -1"}
		}
	}
	s.EmulateUserAgent = expandUserAgent(s.EmulateUserAgent)
	if s.LocalStreamName == "" {
		s.LocalStreamName = randomStreamName()
	}
	s.Vars = p.vars()
	return s, u, nil
}

// expandUserAgent expands the documented emulateUserAgent shorthands.
func expandUserAgent(ua string) string {
	switch strings.ToLower(ua) {
	case "evo":
		return defaultPullUserAgent
	case "fmle":
		return "FMLE/3.0 (compatible; FMSc/1.0)"
	case "wirecast":
		return "Wirecast/FM 1.0 (compatible; FMSc/1.0)"
	case "flash":
		return "WIN 11,1,102,55"
	}
	return ua
}

// randomStreamName returns "stream_" and 8 random letters and digits, as
// EMS names a pull given no localStreamName.
func randomStreamName() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := []byte("stream_00000000")
	for i := 7; i < len(b); i++ {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

// settingsView selects how settings are rendered.
type settingsView int

const (
	viewStored   settingsView = iota // uri as a string (getConfigInfo, state)
	viewListed                       // uri as a string plus "_callback":null (listConfig, listStreams, events)
	viewResponse                     // uri as the parsed object (pullStream answer)
)

// object renders the settings; uri is used for viewResponse.
func (s *settings) object(view settingsView, u *uriInfo) jobj {
	o := make(jobj, 0, 32+len(s.Vars))
	var uri any = s.URI
	if view == viewResponse && u != nil {
		uri = u.object()
	}
	if view == viewListed && !s.hasVar("_callback") {
		o = append(o, jkv{"_callback", nil})
	}
	for _, v := range s.Vars {
		o = append(o, jkv{v.Key, v.jsonValue()})
	}
	o = append(o,
		jkv{"audioCodecBytes", s.AudioCodecBytes},
		jkv{"configId", s.ConfigID},
		jkv{"emulateUserAgent", s.EmulateUserAgent},
		jkv{"forceTcp", s.ForceTCP},
		jkv{"httpProxy", s.HTTPProxy},
		jkv{"httpStreamType", s.HTTPStreamType},
		jkv{"isAudio", s.IsAudio},
		jkv{"keepAlive", s.KeepAlive},
		jkv{"localStreamName", s.LocalStreamName},
		jkv{"operationType", 1},
		jkv{"pageUrl", s.PageURL},
		jkv{"ppsBytes", s.PPSBytes},
		jkv{"rangeEnd", s.RangeEnd},
		jkv{"rangeStart", s.RangeStart},
		jkv{"rtcpDetectionInterval", s.RTCPDetectionInterval},
		jkv{"saveToConfig", s.SaveToConfig},
		jkv{"sendDummyPayload", s.SendDummyPayload},
		jkv{"sendRenewStream", s.SendRenewStream},
		jkv{"spsBytes", s.SPSBytes},
		jkv{"ssmIp", s.SSMIP},
		jkv{"swfUrl", s.SWFURL},
		jkv{"tcUrl", s.TCURL},
		jkv{"tos", s.TOS},
		jkv{"ttl", s.TTL},
		jkv{"uri", uri},
		jkv{"videoSourceIndex", s.VideoSourceIndex},
	)
	return o
}

func (s *settings) hasVar(key string) bool {
	for _, v := range s.Vars {
		if v.Key == key {
			return true
		}
	}
	return false
}

// varsMap returns the user-defined variables; array values are joined with
// commas.
func (s *settings) varsMap() map[string]string {
	m := make(map[string]string, len(s.Vars))
	for _, v := range s.Vars {
		if v.IsArray {
			m[v.Key] = strings.Join(v.Values, ",")
		} else {
			m[v.Key] = v.Value
		}
	}
	return m
}

// appendJSON appends what appendObject(b, s.object(view, u)) appends, with
// no object built on the way: each pull renders its settings twice. User
// variables start with '_', which sorts before every other key; the other
// keys are written in their sorted order. Variables out of order take
// object's way.
func (s *settings) appendJSON(b []byte, view settingsView, u *uriInfo) []byte {
	if !slices.IsSortedFunc(s.Vars, func(a, b variable) int { return strings.Compare(a.Key, b.Key) }) {
		return appendObject(b, s.object(view, u))
	}
	b = append(b, '{')
	callback := view == viewListed && !s.hasVar("_callback") // "_callback":null, in its place
	for _, v := range s.Vars {
		if callback && v.Key > "_callback" {
			b = append(b, `"_callback":null,`...)
			callback = false
		}
		b = append(appendString(b, v.Key), ':')
		if v.IsArray {
			b = appendJSON(b, v.Values) // nil too is written [], as jsonValue gives
		} else {
			b = appendString(b, v.Value)
		}
		b = append(b, ',')
	}
	if callback {
		b = append(b, `"_callback":null,`...)
	}
	str := func(k, v string) { b = append(appendString(append(appendString(b, k), ':'), v), ',') }
	num := func(k string, v uint64) { b = append(strconv.AppendUint(append(appendString(b, k), ':'), v, 10), ',') }
	signed := func(k string, v int64) { b = append(strconv.AppendInt(append(appendString(b, k), ':'), v, 10), ',') }
	flag := func(k string, v bool) { b = append(strconv.AppendBool(append(appendString(b, k), ':'), v), ',') }
	str("audioCodecBytes", s.AudioCodecBytes)
	num("configId", s.ConfigID)
	str("emulateUserAgent", s.EmulateUserAgent)
	flag("forceTcp", s.ForceTCP)
	str("httpProxy", s.HTTPProxy)
	str("httpStreamType", s.HTTPStreamType)
	flag("isAudio", s.IsAudio)
	flag("keepAlive", s.KeepAlive)
	str("localStreamName", s.LocalStreamName)
	num("operationType", 1)
	str("pageUrl", s.PageURL)
	str("ppsBytes", s.PPSBytes)
	signed("rangeEnd", s.RangeEnd)
	signed("rangeStart", s.RangeStart)
	signed("rtcpDetectionInterval", s.RTCPDetectionInterval)
	flag("saveToConfig", s.SaveToConfig)
	flag("sendDummyPayload", s.SendDummyPayload)
	flag("sendRenewStream", s.SendRenewStream)
	str("spsBytes", s.SPSBytes)
	str("ssmIp", s.SSMIP)
	str("swfUrl", s.SWFURL)
	str("tcUrl", s.TCURL)
	signed("tos", s.TOS)
	signed("ttl", s.TTL)
	b = append(appendString(b, "uri"), ':')
	if view == viewResponse && u != nil {
		b = u.appendJSON(b)
	} else {
		b = appendString(b, s.URI)
	}
	b = append(b, ',')
	b = appendString(append(appendString(b, "videoSourceIndex"), ':'), s.VideoSourceIndex)
	return append(b, '}')
}
