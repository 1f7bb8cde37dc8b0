package controller

import (
	"streamlb/internal/receiver"
)

// HandleStreamEvent takes an inStreamCreated or inStreamClosed event as a
// hint: the stream is confirmed on its origin (one listing per origin
// serves every event that arrived meanwhile) before anything is pulled. It
// never blocks.
func (c *Controller) HandleStreamEvent(ev receiver.StreamEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.byAddr[ev.IP]
	if o == nil && ev.Peer.IsValid() {
		o = c.byAddr[ev.Peer.Unmap().String()]
	}
	if o == nil {
		o = c.hostLocked()
	}
	if o == nil {
		c.met.events.WithLabelValues("unknown_origin").Inc()
		key := ev.IP + "|" + ev.Peer.String()
		if _, seen := c.unknown[key]; !seen && len(c.unknown) < 1024 {
			c.unknown[key] = struct{}{}
			c.log.Warn("event from an unknown origin; acknowledged, not acted on", "payload_ip", ev.IP, "peer", ev.Peer.String(), "stream", ev.Name)
		}
		return
	}
	replica := false
	if _, ok := ev.Vars[tagGroup]; ok {
		replica = true
	} else if _, ok := c.byAddr[uriHost(ev.PullURI)]; ok && ev.PullURI != "" {
		replica = true
	}
	if replica && ev.Type == "inStreamCreated" {
		c.met.events.WithLabelValues("replica").Inc()
		return
	}
	if replica {
		// A replica ended on o; with keepAlive=0 its config is gone.
		c.met.events.WithLabelValues("replica").Inc()
		if !c.opts.KeepAlive {
			o.needList = true
			c.wakeLocked(o)
		}
		return
	}
	c.met.events.WithLabelValues("confirm").Inc()
	o.confirm[ev.Name] = struct{}{}
	c.wakeLocked(o)
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
