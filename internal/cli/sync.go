package cli

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"streamlb/internal/controller"
)

func syncCmd(ctx context.Context, env Env, args []string) int {
	return passCmd(ctx, env, args, "sync", func(c *controller.Controller, ctx context.Context, dry bool, r func(controller.Action)) []controller.Action {
		return c.Sync(ctx, dry, r)
	})
}

func pruneCmd(ctx context.Context, env Env, args []string) int {
	return passCmd(ctx, env, args, "prune", func(c *controller.Controller, ctx context.Context, dry bool, r func(controller.Action)) []controller.Action {
		return c.Prune(ctx, dry, r)
	})
}

// passCmd runs one sync or prune pass and prints each action, with a
// progress line every second on large groups.
func passCmd(ctx context.Context, env Env, args []string, name string,
	pass func(*controller.Controller, context.Context, bool, func(controller.Action)) []controller.Action) int {
	fs := newFlags(env, name, name+" -config FILE [-dry-run]")
	cfgPath := fs.String("config", "", "config `file`")
	dry := fs.Bool("dry-run", false, "print what would be done, change nothing")
	if rc := parse(fs, args); rc >= 0 {
		return rc
	}
	if *cfgPath == "" {
		fmt.Fprintf(env.Stderr, "streamlb %s: -config is required\n", name)
		return exitUsage
	}
	ctl, _, err := newOneShot(*cfgPath)
	if err != nil {
		stderrLines(env.Stderr, err)
		return exitError
	}
	var done, failed atomic.Int64
	stop := progress(env.Stderr, name, &done)
	actions := pass(ctl, ctx, *dry, func(a controller.Action) {
		done.Add(1)
		if a.Err != "" {
			failed.Add(1)
		}
		printAction(env.Stdout, a, *dry)
	})
	stop()
	st := ctl.Snapshot()
	for _, m := range st.Members {
		if m.State != controller.MemberUp {
			fmt.Fprintf(env.Stderr, "member %s is %s: %s\n", m.Name, m.State, m.LastError)
		}
	}
	verb := "done"
	if *dry {
		verb = "would be done"
	}
	fmt.Fprintf(env.Stdout, "%d actions %s, %d failed\n", len(actions), verb, failed.Load())
	if failed.Load() > 0 || ctx.Err() != nil {
		return exitError
	}
	return exitOK
}

func printAction(w io.Writer, a controller.Action, dry bool) {
	prefix := ""
	if dry {
		prefix = "would "
	}
	line := fmt.Sprintf("%s%s %s on %s", prefix, a.Kind, a.Stream, a.Member)
	if a.Origin != "" {
		line += " from " + a.Origin
	}
	if a.ConfigID != 0 {
		line += fmt.Sprintf(" (config %d)", a.ConfigID)
	}
	if a.Reason != "" {
		line += ": " + a.Reason
	}
	if a.Err != "" {
		line += ": FAILED: " + a.Err
	}
	fmt.Fprintln(w, line)
}

// progress prints how many actions are done, every second, until stopped.
func progress(w io.Writer, name string, done *atomic.Int64) (stop func()) {
	t := time.NewTicker(time.Second)
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fmt.Fprintf(w, "%s: %d actions so far\n", name, done.Load())
			}
		}
	}()
	return func() { t.Stop(); close(quit); <-finished }
}
