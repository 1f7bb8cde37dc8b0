package play

import "time"

// stickyKey is one client asking for one stream.
type stickyKey struct{ client, stream string }

type stickyEntry struct {
	member string
	until  time.Time
}

// stickyMap remembers the member given to each (client, stream) for ttl,
// in two generations of at most max/2 entries each: when the current one
// is full or older than ttl, it becomes the old one and the old one is
// dropped. So it never holds more than max entries, and an entry lives
// for ttl unless max/2 newer ones push it out first. Not safe for
// concurrent use.
type stickyMap struct {
	ttl      time.Duration
	max      int
	cur, old map[stickyKey]stickyEntry
	started  time.Time // of cur
}

func newStickyMap(ttl time.Duration, max int) *stickyMap {
	return &stickyMap{ttl: ttl, max: max, cur: map[stickyKey]stickyEntry{}}
}

// get returns the member given to k, if its entry has not expired.
func (m *stickyMap) get(k stickyKey, now time.Time) (string, bool) {
	e, ok := m.cur[k]
	if !ok {
		e, ok = m.old[k]
	}
	if !ok || now.After(e.until) {
		return "", false
	}
	return e.member, true
}

// put remembers member for k until now+ttl.
func (m *stickyMap) put(k stickyKey, member string, now time.Time) {
	if len(m.cur) >= m.max/2 || now.Sub(m.started) >= m.ttl {
		m.old, m.cur, m.started = m.cur, make(map[stickyKey]stickyEntry, len(m.cur)), now
	}
	m.cur[k] = stickyEntry{member: member, until: now.Add(m.ttl)}
}

// len returns the number of entries held, expired ones included.
func (m *stickyMap) len() int { return len(m.cur) + len(m.old) }
