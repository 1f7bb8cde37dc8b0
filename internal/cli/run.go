package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"streamlb/internal/app"
	"streamlb/internal/config"
)

// drainTimeout bounds how long a stopping daemon waits for work in flight.
const drainTimeout = 10 * time.Second

func runCmd(ctx context.Context, env Env, args []string) int {
	fs := newFlags(env, "run")
	cfgPath := fs.String("config", "", "config `FILE`: plugins.json, webconfig.json or the StreamLoadBalancer block")
	logFormat := fs.String("log-format", "text", "log `FORMAT`: text or json")
	logLevel := fs.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
	debugAddr := fs.String("debug-addr", "", "serve pprof on this `ADDR` (keep it on loopback)")
	if rc := fs.parse(args); rc >= 0 {
		return rc
	}
	if *cfgPath == "" {
		return fs.usageError("-config is required")
	}
	log, err := newLogger(env.Stderr, *logFormat, *logLevel)
	if err != nil {
		return fs.usageError("%v", err)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		stderrLines(env.Stderr, err)
		return exitError
	}
	a, err := app.New(app.Options{Config: cfg, Logger: log})
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitError
	}
	if err := a.Start(); err != nil {
		log.Error("cannot start", "err", err)
		return exitError
	}
	stopDebug, err := serveDebug(*debugAddr, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		_ = a.Stop(context.Background())
		return exitError
	}
	defer stopDebug()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			err := a.Stop(sctx)
			cancel()
			if err != nil {
				log.Error("stopped with errors", "err", err)
				return exitError
			}
			log.Info("stopped")
			return exitOK
		case <-env.Hangup:
			// A refused file is logged, and recorded in the status
			// document's last_reload and the reload metrics.
			_ = a.ReloadFile(*cfgPath)
		}
	}
}

// Sampling of the mutex and block profiles while pprof is served: cheap
// enough to leave on in a running daemon.
const (
	mutexProfileFraction = 100
	blockProfileRate     = int(time.Millisecond)
)

// serveDebug serves pprof on addr when it is set, with the mutex and block
// profiles on.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	// The mutex and block profiles sample one contention event in
	// mutexProfileFraction and blocking of about blockProfileRate ns.
	runtime.SetMutexProfileFraction(mutexProfileFraction)
	runtime.SetBlockProfileRate(blockProfileRate)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("debug server stopped", "err", err)
		}
	}()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return func() { srv.Close(); <-done }, nil
}
