// Package cli implements the streamlb command line: one function per
// subcommand, each writing to injected writers, so that tests run them as a
// user would.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
)

// Env is what a command gets from the process: its output streams and the
// signals main forwards.
type Env struct {
	Stdout, Stderr io.Writer
	// Hangup delivers SIGHUP (reload the config) to a running daemon.
	Hangup <-chan struct{}
}

// Exit codes.
const (
	exitOK           = 0
	exitError        = 1
	exitUsage        = 2
	exitNotConverged = 3
)

type command struct {
	name, usage, help string
	run               func(ctx context.Context, env Env, args []string) int
}

func commands() []command {
	return []command{
		{"run", "run -config FILE [-log-format text|json] [-log-level LEVEL] [-debug-addr ADDR]", "run the balancer daemon", runCmd},
		{"check", "check -config FILE", "validate a config file", checkCmd},
		{"status", "status (-config FILE | -server URL) [-json]", "show streams × members; exit 0 converged, 3 not, 1 error", statusCmd},
		{"sync", "sync -config FILE [-dry-run]", "run one resync pass and print what it does", syncCmd},
		{"prune", "prune -config FILE [-dry-run]", "remove this group's replicas whose origin is no longer a member", pruneCmd},
		{"demo", "demo [-members N] [-listen ADDR]", "run a simulated EMS group with the balancer and its dashboard", demoCmd},
		{"bench", benchUsage, "measure the balancer against emulated members", benchCmd},
		{"version", "version", "print the version", versionCmd},
	}
}

// Main runs the command line args (without the program name) and returns
// the process exit status.
func Main(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range append(commands(), hiddenCommands()...) {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(env.Stderr, "streamlb: unknown command %q\n", args[0])
	usage(env.Stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "streamlb keeps a group of EvoStream Media Servers holding the same source streams.")
	fmt.Fprintln(w, "\nUsage:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  streamlb %-62s %s\n", c.usage, c.help)
	}
}

// newFlags returns a FlagSet for a subcommand that prints its errors and
// usage to stderr.
func newFlags(env Env, name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: streamlb %s\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and rejects positional arguments. It returns the exit
// status to use when parsing failed, or -1.
func parse(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "streamlb %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage
	}
	return -1
}

// newLogger builds the logger for a command: human text, or JSON.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// Version is the module version the binary was built from.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func versionCmd(_ context.Context, env Env, args []string) int {
	fs := newFlags(env, "version", "version")
	if rc := parse(fs, args); rc >= 0 {
		return rc
	}
	goVer := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVer = bi.GoVersion
	}
	fmt.Fprintf(env.Stdout, "streamlb %s (%s)\n", Version(), goVer)
	return exitOK
}

// stderrLines writes each line of err's message as its own line.
func stderrLines(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			fmt.Fprintln(w, line)
		}
	}
}
