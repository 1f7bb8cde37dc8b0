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
// progress line every second on large groups. It exits 0 only when every
// member was listed (its state after the pass is up) and every action
// succeeded; otherwise it names on stderr each member that could not be
// listed, with why, and exits 1.
func passCmd(ctx context.Context, env Env, args []string, name string,
	pass func(*controller.Controller, context.Context, bool, func(controller.Action)) []controller.Action) int {
	fs := newFlags(env, name)
	cfgPath := fs.String("config", "", "config `FILE`")
	dry := fs.Bool("dry-run", false, "print what would be done, change nothing")
	if rc := fs.parse(args); rc >= 0 {
		return rc
	}
	if *cfgPath == "" {
		return fs.usageError("-config is required")
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
	unlisted := 0
	for _, m := range ctl.Snapshot().Members {
		if m.State != controller.MemberUp {
			unlisted++
			why := m.State
			if m.LastError != "" {
				why += ": " + m.LastError
			}
			fmt.Fprintf(env.Stderr, "streamlb %s: member %s could not be listed: %s\n", name, printable(m.Name), printable(why))
		}
	}
	verb := "done"
	if *dry {
		verb = "would be done"
	}
	fmt.Fprintf(env.Stdout, "%d actions %s, %d failed\n", len(actions), verb, failed.Load())
	rc := exitOK
	if unlisted > 0 {
		fmt.Fprintf(env.Stderr, "streamlb %s: the streams and replicas of members that could not be listed were left as they are\n", name)
		rc = exitError
	}
	if n := failed.Load(); n > 0 {
		fmt.Fprintf(env.Stderr, "streamlb %s: %d actions failed\n", name, n)
		rc = exitError
	}
	if reported := done.Load(); reported < int64(len(actions)) {
		fmt.Fprintf(env.Stderr, "streamlb %s: %d actions were not finished\n", name, int64(len(actions))-reported)
		rc = exitError
	}
	if err := ctx.Err(); err != nil {
		fmt.Fprintf(env.Stderr, "streamlb %s: stopped: %v\n", name, err)
		rc = exitError
	}
	return rc
}

func printAction(w io.Writer, a controller.Action, dry bool) {
	prefix := ""
	if dry {
		prefix = "would "
	}
	line := fmt.Sprintf("%s%s %s on %s", prefix, a.Kind, printable(a.Stream), printable(a.Member))
	if a.Origin != "" {
		line += " from " + printable(a.Origin)
	}
	if a.ConfigID != 0 {
		line += fmt.Sprintf(" (config %d)", a.ConfigID)
	}
	if a.Reason != "" {
		line += ": " + printable(a.Reason)
	}
	if a.Err != "" {
		line += ": FAILED: " + printable(a.Err)
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
