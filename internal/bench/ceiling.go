package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ceiling measures what the emulator can take: the burst's pullStream
// calls, made by a plain HTTP client with the balancer's concurrency (the
// chosen max_inflight per destination) against a fresh group whose events
// go to a sink that discards them.
func (r *runner) ceiling(ctx context.Context) error {
	o := r.o
	k := r.res.MaxInflight
	sink, err := startDiscardSink()
	if err != nil {
		return err
	}
	defer sink.close()
	g, err := startEmsim(ctx, o.Exe, o.Members, o.Separate, o.KeepAlive, sink.url, r.prof)
	if err != nil {
		return err
	}
	defer g.close()
	if err := g.publishMany(ctx, 0, burstPrefix, o.Streams); err != nil {
		return err
	}
	r.progress("ceiling: %d pullStream calls by a plain client, %d in flight per member", o.Streams*(o.Members-1), k)
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: !o.KeepAlive, MaxIdleConnsPerHost: k}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	origin := g.ips[0]
	var failures atomic.Int64
	var wg sync.WaitGroup
	r.prof.cpu("ceiling", map[string]string{"emsim": g.debug})
	start := time.Now()
	for d := 1; d < len(g.ips); d++ {
		var next atomic.Int64
		base := g.base(d) + "/pullStream?params="
		for range k {
			wg.Go(func() {
				for ctx.Err() == nil {
					i := int(next.Add(1)) - 1
					if i >= o.Streams {
						return
					}
					if !plainPull(ctx, client, base, origin, burstPrefix+strconv.Itoa(i)) {
						failures.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	r.prof.wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	calls := o.Streams * (o.Members - 1)
	r.res.CeilingSeconds = Seconds(elapsed.Seconds())
	r.res.CeilingCallsPerS = Rate(float64(calls) / elapsed.Seconds())
	r.res.CeilingFailures = failures.Load()
	r.progress("ceiling: %.3f s, %.0f calls/s, %d failures", elapsed.Seconds(), float64(r.res.CeilingCallsPerS), failures.Load())
	if f := failures.Load(); f > int64(calls)/100 {
		return fmt.Errorf("%d of %d pullStream calls failed", f, calls)
	}
	return nil
}

// plainPull makes the pullStream call the balancer makes for a replica of
// name from origin, and reports whether EMS answered SUCCESS.
func plainPull(ctx context.Context, client *http.Client, base, origin, name string) bool {
	params := "uri=rtmp://" + origin + "/live/" + name + " localStreamName=" + name +
		" keepAlive=1 _streamlb_group=bench _streamlb_origin=" + origin
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+base64.StdEncoding.EncodeToString([]byte(params)), nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return err == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"status":"SUCCESS"`)
}
