package cli

import (
	"context"
	"fmt"

	"streamlb/internal/config"
)

func checkCmd(_ context.Context, env Env, args []string) int {
	fs := newFlags(env, "check", "check -config FILE")
	cfgPath := fs.String("config", "", "config `file` to validate")
	if rc := parse(fs, args); rc >= 0 {
		return rc
	}
	if *cfgPath == "" {
		fmt.Fprintln(env.Stderr, "streamlb check: -config is required")
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		stderrLines(env.Stderr, err)
		return exitError
	}
	fmt.Fprintf(env.Stdout, "%s: ok: group %q, %d members\n", *cfgPath, cfg.Group, len(cfg.Members))
	return exitOK
}
