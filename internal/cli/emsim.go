package cli

import (
	"context"
	"fmt"
	"log/slog"

	"streamlb/internal/emsim"
)

// hiddenCommands are run by Main but left out of the usage text: helpers
// that other commands start as child processes.
func hiddenCommands() []command {
	return []command{
		// emsim runs emulated EMS members, as cmd/emsim does, for bench;
		// -debug-addr ADDR, given first, also serves pprof.
		{"emsim", "emsim [-debug-addr ADDR] [emsim flags]", "run emulated EMS members", "", emsimCmd},
	}
}

func emsimCmd(ctx context.Context, env Env, args []string) int {
	if len(args) >= 2 && args[0] == "-debug-addr" {
		stop, err := serveDebug(args[1], slog.New(slog.DiscardHandler))
		if err != nil {
			fmt.Fprintf(env.Stderr, "emsim: %v\n", err)
			return exitError
		}
		defer stop()
		args = args[2:]
	}
	return emsim.Main(ctx, args, env.Stderr)
}
