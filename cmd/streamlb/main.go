// Command streamlb keeps a group of EvoStream Media Servers holding the
// same source streams. Run "streamlb help" for the list of subcommands.
//
// Packagers set the version a build reports at link time:
//
//	go build -ldflags "-X streamlb/internal/buildinfo.version=1.2.3" ./cmd/streamlb
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"streamlb/internal/cli"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return cli.Main(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Hangup: reload})
}
