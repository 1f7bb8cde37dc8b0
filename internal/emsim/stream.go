package emsim

import (
	"time"
)

// tag returns EMS's 64-bit type tag of up to eight ASCII characters, as in
// typeNumeric ("INR") and codecNumeric ("AAAC").
func tag(s string) uint64 {
	var v uint64
	for i := 0; i < 8; i++ {
		v <<= 8
		if i < len(s) {
			v |= uint64(s[i])
		}
	}
	return v
}

// stream is one inbound stream of a member: published by an encoder, or
// pulled by a pull configuration.
type stream struct {
	id        uint64
	name      string
	cfg       *pullConfig // nil for a published stream
	created   time.Time
	farIP     string
	farPort   int
	nearPort  int
	typ       string
	serverUA  string // server agent of the upstream (pulls)
	publisher string // user agent of the encoder (published streams)
}

// connectionType is EMS's operation type of the stream's origin: 0 for a
// stream published by a third party, 1 for a pulled one.
func (s *stream) connectionType() int {
	if s.cfg != nil {
		return 1
	}
	return 0
}

// infoOpts selects the variant of a stream-info object.
type infoOpts struct {
	edgePid  bool         // listStreams adds edgePid
	event    bool         // events add PID and customData
	fresh    bool         // codecs not yet known (AUNK/VUNK, zero counters)
	settings settingsView // how pullSettings are rendered
}

func msFloat(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e6
}

// info returns the stream-info object of s as member m reports it.
func (s *stream) info(m *Member, now time.Time, o infoOpts) jobj {
	up := now.Sub(s.created)
	if up < time.Millisecond {
		up = time.Millisecond
	}
	upMs := float64(up.Nanoseconds()) / 1e6
	secs := up.Seconds()
	fresh := o.fresh || up < time.Second
	audio, video := mediaBlocks(fresh, secs, m.c.cfg.Bitrate)
	info := make(jobj, 0, 40)
	info = append(info,
		jkv{"appName", "evostreamms"},
		jkv{"audio", audio},
		jkv{"bandwidth", 0},
		jkv{"connectionType", s.connectionType()},
		jkv{"creationTimestamp", msFloat(s.created)},
		jkv{"farIp", s.farIP},
		jkv{"farPort", s.farPort},
		jkv{"ip", m.ip},
		jkv{"name", s.name},
		jkv{"nearIp", m.ip},
		jkv{"nearPort", s.nearPort},
		jkv{"outStreamsUniqueIds", m.outIDsLocked(s.name)},
		jkv{"port", s.nearPort},
		jkv{"processId", m.pid},
		jkv{"processType", "origin"},
		jkv{"queryTimestamp", msFloat(now)},
		jkv{"type", s.typ},
		jkv{"typeNumeric", tag(s.typ)},
		jkv{"uniqueId", s.id},
		jkv{"upTime", upMs},
		jkv{"video", video},
	)
	if o.edgePid {
		info = append(info, jkv{"edgePid", 0})
	}
	if o.event {
		info = append(info, jkv{"PID", m.pid}, jkv{"customData", nil})
	}
	if s.cfg != nil {
		uri := s.cfg.set.URI
		info = append(info,
			jkv{"pageUrl", ""},
			jkv{"pullSettings", s.cfg.set.object(o.settings, nil)},
			jkv{"serverAgent", s.serverUA},
			jkv{"swfUrl", uri},
			jkv{"tcUrl", uri},
		)
	} else {
		info = append(info,
			jkv{"pageUrl", ""},
			jkv{"swfUrl", ""},
			jkv{"tcUrl", "rtmp://" + m.ip + "/live"},
			jkv{"userAgent", s.publisher},
		)
	}
	return info
}

// mediaBlocks returns the audio and video objects of a stream of bitrate
// bits per second that has been up for secs seconds: unknown codecs and
// zero counters while fresh, then AAC and H.264 whose rates add up to
// bitrate, with counters growing at that rate.
func mediaBlocks(fresh bool, secs float64, bitrate int) (jobj, jobj) {
	if fresh {
		audio := jobj{
			{"aveAudioBitRate", 0}, {"bytesCount", 0}, {"codec", "AUNK"},
			{"codecNumeric", tag("AUNK")}, {"currAudioBitRate", 0},
			{"droppedBytesCount", 0}, {"droppedPacketsCount", 0}, {"packetsCount", 0},
		}
		video := jobj{
			{"aveFrameRate", 0}, {"aveKeyFramesPerSec", 0}, {"aveVideoBitRate", 0},
			{"bytesCount", 0}, {"codec", "VUNK"}, {"codecNumeric", tag("VUNK")},
			{"currFrameRate", 0}, {"currKeyFramesPerSec", 0}, {"currVideoBitRate", 0},
			{"droppedBytesCount", 0}, {"droppedPacketsCount", 0}, {"height", 0},
			{"level", 0}, {"packetsCount", 0}, {"profile", 0}, {"width", 0},
		}
		return audio, video
	}
	aRate := min(64000.0, float64(bitrate)/10) // bits per second
	vRate := float64(bitrate) - aRate
	audio := jobj{
		{"aveAudioBitRate", aRate}, {"bytesCount", int64(secs * aRate / 8)}, {"codec", "AAAC"},
		{"codecNumeric", tag("AAAC")}, {"currAudioBitRate", aRate},
		{"droppedBytesCount", 0}, {"droppedPacketsCount", 0}, {"packetsCount", int64(secs * 43)},
	}
	video := jobj{
		{"aveFrameRate", 25.0}, {"aveKeyFramesPerSec", 0.5}, {"aveVideoBitRate", vRate},
		{"bytesCount", int64(secs * vRate / 8)}, {"codec", "VH264"}, {"codecNumeric", tag("VH264")},
		{"currFrameRate", 25.0}, {"currKeyFramesPerSec", 0.5}, {"currVideoBitRate", vRate},
		{"droppedBytesCount", 0}, {"droppedPacketsCount", 0}, {"height", 720},
		{"level", 31}, {"packetsCount", int64(secs * 25)}, {"profile", 100}, {"width", 1280},
	}
	return audio, video
}
