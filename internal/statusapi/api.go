package statusapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"streamlb/internal/controller"
)

// Controller is what the status API needs from the balancer.
type Controller interface {
	Snapshot() controller.Status
	Pause(name string) error
	Resume(name string) error
	Ready() <-chan struct{}
}

var _ Controller = (*controller.Controller)(nil)

// API serves the status routes of DESIGN.md §4.
type API struct {
	Controller Controller
	Logger     *slog.Logger
}

// Register adds the routes to mux. The state-changing ones (POST) refuse
// cross-site browser requests (see CrossOriginProtection).
func (a *API) Register(mux *http.ServeMux) {
	protect := CrossOriginProtection()
	mux.HandleFunc("GET /api/v1/status", a.status)
	mux.Handle("POST /api/v1/members/{name}/pause", protect.Handler(http.HandlerFunc(a.pause)))
	mux.Handle("POST /api/v1/members/{name}/resume", protect.Handler(http.HandlerFunc(a.resume)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.readyz)
}

func (a *API) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Controller.Snapshot())
}

func (a *API) readyz(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-a.Controller.Ready():
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	default:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "waiting for the first resync"})
	}
}

func (a *API) pause(w http.ResponseWriter, r *http.Request)  { a.setPaused(w, r, true) }
func (a *API) resume(w http.ResponseWriter, r *http.Request) { a.setPaused(w, r, false) }

func (a *API) setPaused(w http.ResponseWriter, r *http.Request, paused bool) {
	name := r.PathValue("name")
	var err error
	if paused {
		err = a.Controller.Pause(name)
	} else {
		err = a.Controller.Resume(name)
	}
	switch {
	case errors.Is(err, controller.ErrUnknownMember):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"member": name, "paused": paused})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// CrossOriginProtection returns the guard of streamlb's state-changing
// routes: a request that a browser marks as cross-site (Sec-Fetch-Site), or
// whose Origin names another host than the one it was sent to, is answered
// 403 with a JSON error. Safe methods (GET, HEAD, OPTIONS) and requests
// without browser headers (curl, scripts, EMS event sinks) pass.
func CrossOriginProtection() *http.CrossOriginProtection {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin request refused: state-changing routes are not for web pages of other sites"})
	}))
	return p
}
