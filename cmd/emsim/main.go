// Command emsim runs emulated EvoStream Media Server members for tests,
// benchmarks and demonstrations of streamlb.
//
// Usage:
//
//	emsim [-ip 127.0.0.1] [-members 1] [-api-port 7777] [-ews-port 0]
//	      [-pseudo-domain apiproxy] [-user username] [-password password]
//	      [-events URL] [-state FILE] [-keep-alive] [-log-format text|json]
//
// Each member listens on its own address (consecutive from -ip) and the
// common API port. Control routes on the API port drive the emulated world:
//
//	POST /_emsim/publish?name=X
//	POST /_emsim/unpublish?name=X
//	POST /_emsim/faults?latency=50ms&error_rate=0.1&down=1
//	POST /_emsim/external?uri=U&available=0|1
//
// SIGINT or SIGTERM stops it with exit status 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"streamlb/internal/emsim"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// run parses flags, starts the emulator and serves until a signal arrives.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("emsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg emsim.Config
	fs.StringVar(&cfg.IP, "ip", "127.0.0.1", "address of the first member (127.0.0.0/8)")
	fs.IntVar(&cfg.Members, "members", 1, "members in this process, on consecutive addresses from -ip")
	fs.IntVar(&cfg.APIPort, "api-port", 7777, "EMS HTTP API port of every member")
	fs.IntVar(&cfg.EWSPort, "ews-port", 0, "API proxy port of every member (0: off)")
	fs.StringVar(&cfg.PseudoDomain, "pseudo-domain", "apiproxy", "API proxy pseudo domain")
	fs.StringVar(&cfg.User, "user", "username", "API proxy user name")
	fs.StringVar(&cfg.Password, "password", "password", "API proxy password")
	fs.StringVar(&cfg.EventsURL, "events", "", "RPC sink URL every member posts its events to")
	fs.StringVar(&cfg.StatePath, "state", "", "file where keepAlive pull configurations persist")
	fs.BoolVar(&cfg.KeepAlive, "keep-alive", false, "let clients reuse connections (EMS answers Connection: close)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "emsim: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(stderr, nil)
	case "json":
		h = slog.NewJSONHandler(stderr, nil)
	default:
		fmt.Fprintf(stderr, "emsim: -log-format: %q is not text or json\n", *logFormat)
		return 2
	}
	cfg.Logger = slog.New(h)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := emsim.Start(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "emsim: %v\n", err)
		return 1
	}
	for _, m := range c.Members() {
		if p := m.ProxyURL(); p != "" {
			fmt.Fprintf(stderr, "member %s api %s proxy %s\n", m.IP(), m.APIURL(), p)
		} else {
			fmt.Fprintf(stderr, "member %s api %s\n", m.IP(), m.APIURL())
		}
	}
	<-ctx.Done()
	if err := c.Close(); err != nil {
		fmt.Fprintf(stderr, "emsim: %v\n", err)
		return 1
	}
	return 0
}
