package controller

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"streamlb/internal/receiver"
)

// HandleStreamEvent takes an inStreamCreated or inStreamClosed event as a
// hint: the stream is confirmed on its origin (one listing per origin
// serves every event that arrived meanwhile) before anything is pulled. It
// never blocks: the event waits in an inbox of its own, so the sink answers
// EMS without waiting for the controller's lock.
func (c *Controller) HandleStreamEvent(ev receiver.StreamEvent) {
	if !c.inbox.put(ev) {
		c.met.events.WithLabelValues("dropped").Inc()
		c.TriggerResync()
	}
}

// HandleServerStarted takes a serverStarted event: the member that posted
// it has started, and what it was last listed holding may be gone. The
// member is listed in full as soon as its lister may list it; the listing
// decides, as any listing does. A forged one costs no more than that
// listing. It never blocks: the start waits in the inbox as a StreamEvent
// of its type, in its place among the stream events.
func (c *Controller) HandleServerStarted(peer netip.Addr, received time.Time) {
	c.HandleStreamEvent(receiver.StreamEvent{Type: receiver.TypeServerStarted, Peer: peer, Received: received})
}

// eventLoop hands the inbox's events to the controller. An event's origin
// is looked up when it is handled: one queued just before a reload that
// removes its member is then from an unknown origin.
func (c *Controller) eventLoop(ctx context.Context) {
	var batch []receiver.StreamEvent
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.inbox.wake:
		}
		batch = c.inbox.take(batch)
		// A backlog is handled a chunk at a time, so that workers and
		// status readers get the lock in between.
		for chunk := range slices.Chunk(batch, eventChunk) {
			c.mu.Lock()
			for _, ev := range chunk {
				c.handleEventLocked(ev)
			}
			c.mu.Unlock()
		}
		clear(batch) // keep no event's strings alive
		if cap(batch) > inboxKeep {
			batch = nil // a burst is over: give its memory back
		}
	}
}

// eventChunk is how many events eventLoop handles under one hold of the
// controller's lock.
const eventChunk = 1024

// inbox holds stream events between the sink and eventLoop.
type inbox struct {
	mu   sync.Mutex
	evs  []receiver.StreamEvent
	wake chan struct{}
}

// inboxSize bounds the events waiting in the inbox. It fills only if the
// controller stalls; the events beyond it are dropped and a resync, which
// repairs whatever events missed, is asked for.
const inboxSize = 1 << 16

func newInbox() *inbox { return &inbox{wake: make(chan struct{}, 1)} }

// put adds ev and reports false if the inbox was full.
func (in *inbox) put(ev receiver.StreamEvent) bool {
	in.mu.Lock()
	full := len(in.evs) >= inboxSize
	if !full {
		in.evs = append(in.evs, ev)
	}
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
	return !full
}

// inboxKeep is the most events' room the inbox and eventLoop keep between
// bursts.
const inboxKeep = 4096

// take returns the waiting events and leaves spare, emptied, to hold the
// next ones: the two swap, so the sink never waits for a copy.
func (in *inbox) take(spare []receiver.StreamEvent) []receiver.StreamEvent {
	in.mu.Lock()
	defer in.mu.Unlock()
	evs := in.evs
	in.evs = spare[:0]
	return evs
}

// handleEventLocked acts on one stream event, or a member's start.
func (c *Controller) handleEventLocked(ev receiver.StreamEvent) {
	o := c.byAddr[ev.IP]
	if o == nil && ev.Peer.IsValid() {
		o = c.byAddr[ev.Peer.Unmap().String()]
	}
	if o == nil {
		o = c.hostLocked()
	}
	if o != nil && ev.Type == receiver.TypeServerStarted {
		c.met.events.WithLabelValues("restart").Inc()
		// A member that is down is listed in full when it returns.
		if o.health.state == MemberUp {
			o.work.needList = true
			c.wakeLocked(o)
		}
		return
	}
	if o == nil {
		c.met.events.WithLabelValues("unknown_origin").Inc()
		// What an outsider sends is kept and logged only bounded.
		key := clip(ev.IP, 64) + "|" + ev.Peer.String()
		if _, seen := c.unknown[key]; !seen && len(c.unknown) < maxUnknownOrigins {
			c.unknown[key] = struct{}{}
			c.log.Warn("event from an unknown origin; acknowledged, not acted on",
				"payload_ip", clip(ev.IP, 64), "peer", ev.Peer.String(), "stream", clip(ev.Name, 128))
		}
		return
	}
	replica := false
	if _, ok := ev.Vars[tagGroup]; ok {
		replica = true
	} else if _, ok := c.byAddr[uriHost(ev.PullURI)]; ok && ev.PullURI != "" {
		replica = true
	}
	if replica {
		c.met.events.WithLabelValues("replica").Inc()
		c.replicaEventLocked(o, ev)
		return
	}
	if o.health.state != MemberUp || len(o.work.confirm) >= maxConfirm {
		// A down member is listed in full when it returns, and a full
		// listing answers every name: nothing needs keeping meanwhile.
		c.met.events.WithLabelValues("dropped").Inc()
		if o.health.state == MemberUp {
			o.work.needList = true
			c.wakeLocked(o)
		}
		return
	}
	c.met.events.WithLabelValues("confirm").Inc()
	if _, ok := o.work.confirm[ev.Name]; !ok {
		at := ev.Received // the wait in the inbox counts
		if at.IsZero() {
			at = time.Now()
		}
		o.work.confirm[ev.Name] = at
	}
	c.dispatchConfirmsLocked(o)
}

// maxConfirm bounds the names waiting for confirmation on one origin;
// past it, one full listing answers them all. maxUnknownOrigins bounds the
// unknown event origins remembered (each is logged once).
const (
	maxConfirm        = 4096
	maxUnknownOrigins = 1024
)

// replicaEventLocked takes a replica's event on member m as a hint about
// its pull: inStreamCreated says it streams, inStreamClosed that it does
// not (and, with keepAlive=0, that EMS deleted its config). A hint changes
// only what is shown until the next listing of m, which is asked for when
// the event says the replica stopped: nothing is removed on an event's
// word.
func (c *Controller) replicaEventLocked(m *member, ev receiver.StreamEvent) {
	c.dirtyLocked(ev.Name)
	for i := range m.obs.configs[ev.Name] {
		cfg := &m.obs.configs[ev.Name][i]
		if cfg.uri != ev.PullURI {
			continue
		}
		if ev.Type == "inStreamCreated" {
			if cfg.pulledAt != 0 {
				cfg.pulledAt, cfg.hinted = 0, true
			}
			delete(m.obs.stalled, cfg.id)
		} else if _, ok := m.obs.stalled[cfg.id]; !ok {
			m.obs.stalled[cfg.id] = time.Now()
		}
	}
	if ev.Type != "inStreamCreated" {
		m.work.needList = true
		c.wakeLocked(m)
	}
}

// clip returns s cut to at most n bytes, with a marker saying how much was
// cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…(+" + strconv.Itoa(len(s)-n) + " bytes)"
}

// hostLocked returns the sidecar's local member, or nil.
func (c *Controller) hostLocked() *member {
	for _, m := range c.members {
		if m.spec.Host {
			return m
		}
	}
	return nil
}
