// Command emsim runs emulated EvoStream Media Server members for tests,
// benchmarks and demonstrations of streamlb.
//
// Usage:
//
//	emsim [-ip 127.0.0.1] [-members 1] [-api-port 7777] [-ews-port 0]
//	      [-pseudo-domain apiproxy] [-user username] [-password password]
//	      [-events URL] [-enabled-events TYPE,...] [-state FILE] [-keep-alive]
//	      [-bitrate 2000000]
//	      [-log-format text|json] [-log-level info]
//
// Each member listens on its own address (consecutive from -ip) and the
// common API port. Control routes on the API port drive the emulated world:
//
//	POST /_emsim/publish?name=X
//	POST /_emsim/unpublish?name=X
//	POST /_emsim/faults?latency=50ms&error_rate=0.1&api_down=1&down=1
//	POST /_emsim/external?uri=U&available=0|1
//	POST /_emsim/viewers?name=X&protocol=rtmp|rtsp|hls&count=N
//
// SIGINT or SIGTERM stops it with exit status 0.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"streamlb/internal/emsim"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// run serves the emulator until SIGINT or SIGTERM.
func run(args []string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return emsim.Main(ctx, args, stderr)
}
