package controller

import "time"

// Holders returns the names of the members that hold stream name
// streaming and can serve it now (up, not paused): its origin first, then
// the members where its replica is present, in configuration order. It
// returns nil for a stream that is a source nowhere. Safe for concurrent
// use; it reads state under the controller's lock and changes nothing.
func (c *Controller) Holders(name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holdersLocked(name)
}

func (c *Controller) holdersLocked(name string) []string {
	now := time.Now()
	v := c.viewLocked(name, now) // once, not per member: this is every play request's path
	w := v.w
	if w == nil || w.health.state != MemberUp {
		return nil
	}
	var out []string
	if !w.work.paused {
		out = append(out, w.spec.Name)
	}
	for _, m := range c.members {
		if m == w || m.health.state != MemberUp || m.work.paused {
			continue
		}
		if a := c.planViewLocked(m, &v, now); a.desired && a.state == StatePresent {
			out = append(out, m.spec.Name)
		}
	}
	return out
}
