package emsim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Main runs the emulator as a program: it parses args (the flags of
// cmd/emsim), starts the members, reports each one on stderr and serves
// until ctx ends. It returns the process exit status: 0 after a clean stop,
// 1 when the members cannot start or stop, 2 for bad flags. Signals are the
// caller's business: cancel ctx to stop.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("emsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.IP, "ip", "127.0.0.1", "address of the first member (127.0.0.0/8)")
	fs.IntVar(&cfg.Members, "members", 1, "members in this process, on consecutive addresses from -ip")
	fs.IntVar(&cfg.APIPort, "api-port", 7777, "EMS HTTP API port of every member")
	fs.IntVar(&cfg.EWSPort, "ews-port", 0, "API proxy port of every member (0: off)")
	fs.StringVar(&cfg.PseudoDomain, "pseudo-domain", "apiproxy", "API proxy pseudo domain")
	fs.StringVar(&cfg.User, "user", "username", "API proxy user name")
	fs.StringVar(&cfg.Password, "password", "password", "API proxy password")
	fs.StringVar(&cfg.EventsURL, "events", "", "RPC sink URL every member posts its events to")
	enabled := fs.String("enabled-events", "", "comma-separated event types the sink gets, as the sink's enabledEvents in config.lua (empty: all)")
	fs.StringVar(&cfg.StatePath, "state", "", "file where keepAlive pull configurations persist")
	fs.IntVar(&cfg.Bitrate, "bitrate", DefaultBitrate, "bitrate of every stream in bits per second (getBandwidth, players)")
	fs.BoolVar(&cfg.KeepAlive, "keep-alive", false, "let clients reuse connections (EMS answers Connection: close)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
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
	if *enabled != "" {
		for typ := range strings.SplitSeq(*enabled, ",") {
			cfg.EnabledEvents = append(cfg.EnabledEvents, strings.TrimSpace(typ))
		}
		if err := checkEventTypes(cfg.EnabledEvents); err != nil {
			fmt.Fprintf(stderr, "emsim: -enabled-events: %v\n", err)
			return 2
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "emsim: -log-level: %q is not debug, info, warn or error\n", *logLevel)
		return 2
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(stderr, opts)
	case "json":
		h = slog.NewJSONHandler(stderr, opts)
	default:
		fmt.Fprintf(stderr, "emsim: -log-format: %q is not text or json\n", *logFormat)
		return 2
	}
	cfg.Logger = slog.New(h)

	c, err := Start(cfg)
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
