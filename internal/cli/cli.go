// Package cli implements the streamlb command line: one function per
// subcommand, each writing to injected writers, so that tests run them as a
// user would.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"streamlb/internal/buildinfo"
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
	// name is the subcommand; synopsis its usage line after "streamlb ";
	// short the one line of the general usage; doc what "help COMMAND"
	// says of it.
	name, synopsis, short, doc string
	run                        func(ctx context.Context, env Env, args []string) int
}

func commands() []command {
	return []command{
		{"run", "run -config FILE [-log-format text|json] [-log-level LEVEL] [-debug-addr ADDR]",
			"run the balancer daemon",
			"Run the balancer daemon. SIGHUP reloads the config (a config that does not load is refused\n" +
				"and the running one stays); SIGINT and SIGTERM stop it, draining work in flight.", runCmd},
		{"check", "check -config FILE",
			"validate a config file",
			"Validate a config file. Exit 0 when it is valid, else 1 with one FILE:LINE:COL: message\n" +
				"line per problem on stderr.", checkCmd},
		{"status", "status (-config FILE | -server URL) [-json]",
			"show streams × members; exit 0 converged, 3 not, 1 error",
			"Show every member and the streams × members matrix, asked of every member of a config\n" +
				"directly (-config) or of a running daemon (-server). Exit 0 when the group is converged,\n" +
				"3 when it is not, 1 on error.", statusCmd},
		{"sync", "sync -config FILE [-dry-run]",
			"run one resync pass and print what it does",
			"Run one resync pass: list every member, then make the pulls and removals the group needs,\n" +
				"printing each. Exit 0 when every member was listed and every action succeeded, else 1,\n" +
				"with the members that could not be listed on stderr.", syncCmd},
		{"prune", "prune -config FILE [-dry-run]",
			"remove this group's replicas whose origin is no longer a member",
			"Remove this group's replicas whose origin is no longer a member of the config (a member\n" +
				"removed from the config leaves its replicas behind on purpose). Exit status as for sync.", pruneCmd},
		{"demo", "demo [-members N] [-listen ADDR] [-ip IP] [-log-level LEVEL]",
			"run a simulated EMS group with the balancer and its dashboard",
			"Run emulated EMS members on loopback addresses, the balancer wired to them and its\n" +
				"dashboard, with sample sources coming and going. Ctrl-C stops it.", demoCmd},
		{"bench", "bench [flags]",
			"measure the balancer against emulated members",
			"Measure the balancer against emulated members and print a table (or, with -json, one JSON\n" +
				"object on one line). BENCHMARKS.md describes the scenarios.", benchCmd},
		{"version", "version [-json]",
			"print the version",
			"Print the version, the VCS revision and time and the Go release this binary was built\n" +
				"from (-json: as one JSON object).", versionCmd},
	}
}

// lookup finds a command of the usage list or a hidden one.
func lookup(name string) (command, bool) {
	for _, c := range append(commands(), hiddenCommands()...) {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// Main runs the command line args (without the program name) and returns
// the process exit status.
func Main(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		usage(env.Stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(env.Stdout)
		return exitOK
	case "-version", "--version":
		return versionCmd(ctx, env, args[1:])
	case "help":
		return helpCmd(ctx, env, args[1:])
	}
	if c, ok := lookup(args[0]); ok {
		return c.run(ctx, env, args[1:])
	}
	fmt.Fprintf(env.Stderr, "streamlb: unknown command %q\n\n", args[0])
	usage(env.Stderr)
	return exitUsage
}

// helpCmd prints the general usage, or one command's, on stdout.
func helpCmd(ctx context.Context, env Env, args []string) int {
	switch len(args) {
	case 0:
		usage(env.Stdout)
		return exitOK
	case 1:
		if args[0] == "help" {
			usage(env.Stdout)
			return exitOK
		}
		if c, ok := lookup(args[0]); ok {
			// Every command prints its usage on stdout for -h before it
			// does anything else.
			return c.run(ctx, env, []string{"-h"})
		}
		fmt.Fprintf(env.Stderr, "streamlb help: unknown command %q\n\n", args[0])
	default:
		fmt.Fprintln(env.Stderr, "streamlb help: give at most one command")
	}
	usage(env.Stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "streamlb keeps a group of EvoStream Media Servers holding the same source streams.")
	fmt.Fprintln(w, "\nUsage: streamlb COMMAND [flags]\n\nCommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.short)
	}
	fmt.Fprintf(tw, "  %s\t%s\n", "help", "print a command's usage and flags")
	tw.Flush()
	fmt.Fprintln(w, "\nRun \"streamlb help COMMAND\" or \"streamlb COMMAND -h\" for a command's flags.")
	fmt.Fprintln(w, "Exit status: 0 ok, 1 error, 2 usage error, 3 not converged (status).")
}

// flags is a subcommand's FlagSet. Parse errors and usage errors go to
// stderr with the command's usage; -h and -help print it on stdout.
type flags struct {
	*flag.FlagSet
	env Env
	cmd command
}

// newFlags returns the FlagSet of the named subcommand.
func newFlags(env Env, name string) *flags {
	c, ok := lookup(name)
	if !ok {
		c = command{name: name, synopsis: name}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// parse prints errors and usage itself, each to the right stream.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flags{FlagSet: fs, env: env, cmd: c}
}

// parse parses args and rejects positional arguments. It returns the exit
// status to use when the command should not go on (help printed, or a
// usage error), or -1.
func (f *flags) parse(args []string) int {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.printHelp(f.env.Stdout)
			return exitOK
		}
		return f.usageError("%v", err)
	}
	if f.NArg() > 0 {
		return f.usageError("unexpected argument %q", f.Arg(0))
	}
	return -1
}

// usageError prints "streamlb NAME: message" and the usage on stderr and
// returns the usage exit status.
func (f *flags) usageError(format string, args ...any) int {
	fmt.Fprintf(f.env.Stderr, "streamlb %s: %s\n", f.cmd.name, fmt.Sprintf(format, args...))
	f.printUsage(f.env.Stderr)
	return exitUsage
}

// printHelp prints the usage line, what the command does, and its flags.
func (f *flags) printHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: streamlb %s\n", f.cmd.synopsis)
	if f.cmd.doc != "" {
		fmt.Fprintf(w, "\n%s\n", f.cmd.doc)
	}
	if f.hasFlags() {
		fmt.Fprintln(w, "\nFlags:")
		f.printFlags(w)
	}
}

// printUsage prints the usage line and the flags.
func (f *flags) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: streamlb %s\n", f.cmd.synopsis)
	if f.hasFlags() {
		f.printFlags(w)
	}
}

func (f *flags) hasFlags() bool {
	n := 0
	f.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// printFlags lists the flags in two aligned columns: the flag with its
// argument, and its meaning with its default.
func (f *flags) printFlags(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	f.VisitAll(func(fl *flag.Flag) {
		arg, meaning := flag.UnquoteUsage(fl)
		name := "-" + fl.Name
		if arg != "" {
			name += " " + arg
		}
		if !zeroDefault(fl.DefValue) {
			meaning += fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, meaning)
	})
	tw.Flush()
}

// zeroDefault reports whether a flag's default is its type's zero value,
// which the flag list leaves out.
func zeroDefault(v string) bool {
	switch v {
	case "", "0", "false", "0s":
		return true
	}
	return false
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

func versionCmd(_ context.Context, env Env, args []string) int {
	fs := newFlags(env, "version")
	asJSON := fs.Bool("json", false, "print the fields as one JSON object")
	if rc := fs.parse(args); rc >= 0 {
		return rc
	}
	info := buildinfo.Get()
	if *asJSON {
		if err := json.NewEncoder(env.Stdout).Encode(info); err != nil {
			fmt.Fprintf(env.Stderr, "streamlb version: %v\n", err)
			return exitError
		}
		return exitOK
	}
	fmt.Fprintln(env.Stdout, info)
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
