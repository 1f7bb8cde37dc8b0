package emsim

import (
	"fmt"
	"testing"
)

// BenchmarkExecutePullStream measures one pullStream answered in process,
// without its connection, as a balancer makes it: the source is published
// on another member of the cluster, and the pull then streams. What it
// allocates feeds the collector, whose cycles slow the emulated members'
// answers.
func BenchmarkExecutePullStream(b *testing.B) {
	c, err := Start(Config{IP: RandomLoopbackIPs(2)[0], Members: 2, APIPort: testPort})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	origin, m := c.Members()[0], c.Members()[1]
	queries := make([]string, b.N)
	for i := range queries {
		if err := origin.Publish(fmt.Sprintf("e%d", i)); err != nil {
			b.Fatal(err)
		}
		queries[i] = "params=" + b64(fmt.Sprintf("uri=rtmp://%s/live/e%d localStreamName=e%d keepAlive=1 emulateUserAgent=streamlb _streamlbGroup=g _streamlbOrigin=%s ",
			origin.IP(), i, i, origin.IP()))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var out []byte
	for i := range b.N {
		out = m.execute(out[:0], "pullStream", queries[i])
	}
}
