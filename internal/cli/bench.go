package cli

import (
	"context"
	"fmt"
)

func benchCmd(_ context.Context, env Env, _ []string) int {
	fmt.Fprintln(env.Stderr, "streamlb bench: not available in this build")
	return exitError
}
