package statusapi

import "net/http"

// RegisterDashboard adds the dashboard at "GET /".
func RegisterDashboard(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>streamlb</title><p>streamlb: see <a href="/api/v1/status">/api/v1/status</a>.</p>`))
	})
}
