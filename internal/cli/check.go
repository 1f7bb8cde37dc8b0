package cli

import (
	"context"
	"fmt"

	"streamlb/internal/config"
)

func checkCmd(_ context.Context, env Env, args []string) int {
	fs := newFlags(env, "check")
	cfgPath := fs.String("config", "", "config `FILE` to validate")
	if rc := fs.parse(args); rc >= 0 {
		return rc
	}
	if *cfgPath == "" {
		return fs.usageError("-config is required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		stderrLines(env.Stderr, err)
		return exitError
	}
	fmt.Fprintf(env.Stdout, "%s: ok: group %q, %d members\n", *cfgPath, cfg.Group, len(cfg.Members))
	return exitOK
}
