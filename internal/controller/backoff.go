package controller

import (
	"math/rand/v2"
	"time"
)

// backoff returns the wait before attempt n+1 after n failed attempts:
// exponential from base, capped at max, with ±50% jitter so that many
// replicas failing together do not retry together.
func backoff(n int, base, max time.Duration) time.Duration {
	if n < 1 {
		n = 1
	}
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d)
}
