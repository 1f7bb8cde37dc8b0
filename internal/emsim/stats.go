package emsim

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Stats are a member's counters, for benchmarks and the /_emsim/stats
// control route.
type Stats struct {
	// Streams and PullConfigs count the inbound streams and the pull
	// configurations the member holds.
	Streams, PullConfigs int
	// Calls counts the EMS API calls answered, by lowercased command.
	Calls map[string]int64
	// LastPull is when the latest successful pullStream was answered; zero
	// before the first.
	LastPull time.Time
	// EventsSent, EventsFailed and EventsDropped count the member's events:
	// posted and answered, posted without an answer, and dropped because
	// its queue was full.
	EventsSent, EventsFailed, EventsDropped int64
	// MediaChecks counts the media-plane checks (GET /_emsim/media) the
	// member answered for emulators in other processes.
	MediaChecks int64
}

// Stats returns m's counters.
func (m *Member) Stats() Stats {
	m.mu.Lock()
	s := Stats{Streams: len(m.streams), PullConfigs: len(m.configs), LastPull: m.lastPull}
	m.mu.Unlock()
	s.Calls = m.calls.all()
	s.MediaChecks = m.mediaChecks.Load()
	if m.ev != nil {
		s.EventsSent, s.EventsFailed, s.EventsDropped = m.ev.sent.Load(), m.ev.failed.Load(), m.ev.dropped.Load()
	}
	return s
}

// PullTime is when a pullStream creating the configuration named Name was
// answered.
type PullTime struct {
	Name string
	At   time.Time
}

// PullTimes returns, for every pull configuration m holds that a
// pullStream created after since, when that pullStream was answered.
// Configurations restored from the state file are not included.
func (m *Member) PullTimes(since time.Time) []PullTime {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []PullTime
	for _, c := range m.configs {
		if !c.pulledAt.IsZero() && c.pulledAt.After(since) {
			out = append(out, PullTime{Name: c.set.LocalStreamName, At: c.pulledAt})
		}
	}
	return out
}

// PublishMany makes encoders start publishing prefix0 … prefix(count-1) on
// m at once, as Publish does for each; names already taken are skipped. It
// returns how many streams it started.
func (m *Member) PublishMany(prefix string, count int) (int, error) {
	if count < 0 {
		return 0, errors.New("publish: negative count")
	}
	if prefix == "" && count > 0 {
		return 0, errors.New("publish: empty prefix")
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for i := range count {
		if m.publishLocked(prefix+strconv.Itoa(i), now) == nil {
			n++
		}
	}
	return n, nil
}

// Restart makes m restart as an EMS without saved state would: every
// inbound stream and pull configuration is dropped without events (pulls
// from m elsewhere lose their source), and configIds and stream ids start
// over; then m posts serverStarted, as EMS does once it has started, its
// payload the version fields. Its API keeps answering; call counters are
// not reset.
func (m *Member) Restart() {
	now := time.Now()
	m.mu.Lock()
	wasDown := m.faults.Down
	m.faults.Down = true // a stopping server sends nothing
	for _, c := range m.configs {
		m.deleteConfigLocked(c, now)
	}
	for _, st := range m.streams {
		m.closeStreamLocked(st, now)
	}
	m.faults.Down = wasDown
	m.due = nil
	m.byID = nil
	limit := m.out.connLimit
	m.pendMu.Lock()
	m.out = newOutView()
	m.pendMu.Unlock()
	m.out.connLimit = limit
	m.lastConfigID, m.lastStreamID, m.eventID = 0, 0, 0
	m.lastPull = time.Time{}
	m.changedLocked()
	if m.sendsLocked("serverStarted") {
		payload := append(versionFields(), jkv{"PID", m.pid}, jkv{"customData", nil})
		m.emitPayloadLocked("serverStarted", payload, now)
	}
	m.mu.Unlock()
	m.log.Info("restarted without saved state")
}

// appendStatsJSON writes s as the /_emsim/stats answer.
func appendStatsJSON(b []byte, ip string, s Stats) []byte {
	calls := make(jobj, 0, len(s.Calls))
	for k, v := range s.Calls {
		calls = append(calls, jkv{k, v})
	}
	var last int64
	if !s.LastPull.IsZero() {
		last = s.LastPull.UnixNano()
	}
	return appendJSON(b, jobj{
		{"calls", calls},
		{"events_dropped", s.EventsDropped},
		{"events_failed", s.EventsFailed},
		{"events_sent", s.EventsSent},
		{"ip", ip},
		{"last_pull_unix_nano", last},
		{"media_checks", s.MediaChecks},
		{"pull_configs", s.PullConfigs},
		{"streams", s.Streams},
	})
}

// appendPullTimesJSON writes the /_emsim/pulls answer: an object of stream
// name to the answer's time in Unix nanoseconds.
func appendPullTimesJSON(b []byte, ts []PullTime) []byte {
	o := make(jobj, 0, len(ts))
	for _, t := range ts {
		o = append(o, jkv{t.Name, t.At.UnixNano()})
	}
	return appendJSON(b, o)
}

// parseCount reads a non-negative count parameter.
func parseCount(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 10_000_000 {
		return 0, fmt.Errorf("count %q is not a number from 0 to 10000000", v)
	}
	return n, nil
}
