package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"streamlb/internal/config"
	"streamlb/internal/controller"
	"streamlb/internal/ems"
	"streamlb/internal/play"
)

// playWiring is the viewer placement service and its public listener,
// when the config has a play block.
type playWiring struct {
	svc  *play.Service
	ln   net.Listener
	srv  *http.Server
	addr string
}

// newPlay builds the placement service from the config's play block, if
// any, with an EMS client of its own per member.
func (a *App) newPlay() error {
	cfg := a.cfg
	if cfg.Play == nil {
		return nil
	}
	members, err := playMembers(cfg)
	if err != nil {
		return err
	}
	ctl := a.ctl
	svc, err := play.New(play.Options{
		Config: cfg.Play, AppName: cfg.AppName, Members: members, Holders: ctl,
		Registerer: a.reg, Logger: a.log,
		// Replication on demand follows the members' load.
		OnSample: func(member string, at time.Time, utilization float64, viewers map[string]int) {
			ctl.ObserveLoad(member, controller.LoadSample{At: at, Utilization: utilization, Viewers: viewers})
		},
	})
	if err != nil {
		return err
	}
	a.pl.svc = svc
	return nil
}

// playMembers returns the members of cfg as placement sees them, each
// with an EMS client of its own.
func playMembers(cfg *config.Config) ([]play.Member, error) {
	var members []play.Member
	for _, m := range cfg.Members {
		hc, err := httpClient(m)
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", m.Name, err)
		}
		members = append(members, play.Member{Name: m.Name, Address: m.Address, Placement: m.Placement, Client: ems.New(m.Endpoint, hc)})
	}
	return members, nil
}

// reloadPlay gives placement the members of a reloaded config; the play
// block's own settings take effect at the next restart (see playChanged).
func (a *App) reloadPlay(cfg *config.Config) {
	if a.pl.svc == nil || cfg.Play == nil {
		return
	}
	members, err := playMembers(cfg)
	if err == nil {
		err = a.pl.svc.SetMembers(members)
	}
	if err != nil {
		a.log.Error("reload: placement keeps its members", "err", err)
	}
}

// registerLoad serves GET /api/v1/load on the admin mux.
func (a *App) registerLoad(admin *http.ServeMux) {
	if a.pl.svc != nil {
		admin.Handle("GET /api/v1/load", a.pl.svc.LoadHandler())
	}
}

// bindPlay binds the public play listener.
func (a *App) bindPlay() error {
	if a.pl.svc == nil {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.Play.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (play): %w", a.cfg.Play.Listen, err)
	}
	a.pl.ln, a.pl.addr = ln, ln.Addr().String()
	a.pl.srv = a.pl.svc.NewServer(a.log)
	return nil
}

// runPlay runs the load pollers and the play listener until ctx ends,
// then shuts the listener down.
func (a *App) runPlay(ctx context.Context) {
	if a.pl.svc == nil {
		return
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := a.pl.srv.Serve(a.pl.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("play server stopped", "addr", a.pl.addr, "err", err)
		}
	}()
	a.log.Info("viewer placement started", "listen", a.pl.addr)
	_ = a.pl.svc.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.pl.srv.Shutdown(sctx); err != nil {
		a.pl.srv.Close()
	}
	<-served
}

// PlayAddr returns the play listener's address (host:port) once started,
// or "" without a play block.
func (a *App) PlayAddr() string { return a.pl.addr }

// Play returns the placement service, or nil without a play block.
func (a *App) Play() *play.Service { return a.pl.svc }

// playChanged reports whether the play block's settings (its listen
// address aside) differ, or it appears or goes: those take effect at the
// next restart. Its members and their placement keys apply at once.
func playChanged(running, next *config.Config) bool {
	if (running.Play == nil) != (next.Play == nil) {
		return true
	}
	if running.Play == nil {
		return false
	}
	a, b := *running.Play, *next.Play
	a.Listen, b.Listen = "", ""
	return a != b
}
