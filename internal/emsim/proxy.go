package emsim

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

const (
	ewsRealm        = "EvoStream Web Server"
	accessDeniedDoc = "<html><head><title>EvoStream Web Server</title></head><body>Access Denied</body></html>"
)

// ProxyHandler returns the handler of m's API proxy (the EWS apiProxy):
// /PSEUDODOMAIN/COMMAND?params=... and the EMS 1.7 form
// /PSEUDODOMAIN/COMMAND%3fparams=..., with Basic authentication. It
// answers 404 for any other path, 401 with a Basic challenge for missing or
// wrong credentials, and otherwise relays m's API answer with 200.
func (m *Member) ProxyHandler() http.Handler {
	return http.HandlerFunc(m.serveProxy)
}

func (m *Member) serveProxy(w http.ResponseWriter, r *http.Request) {
	if !m.c.enter() {
		dropConnection(w)
		return
	}
	defer m.c.leave()
	cfg := m.c.cfg
	domain, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok || domain != cfg.PseudoDomain || rest == "" {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<html><head><title>File not found</title></head><body>File not found</body></html>"))
		return
	}
	user, pass, hasAuth := r.BasicAuth()
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(cfg.User)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(cfg.Password)) == 1
	if !hasAuth || !userOK || !passOK {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+ewsRealm+`"`)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(accessDeniedDoc))
		return
	}
	// The decoded path of the EMS 1.7 form holds the query after '?'.
	command, query, encoded := strings.Cut(rest, "?")
	if !encoded {
		query = r.URL.RawQuery
	}
	m.serveEMS(w, r, lastSegment(command), query)
}
