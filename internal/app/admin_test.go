package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"streamlb/internal/config"
)

func startApp(t *testing.T, params string) *App {
	t.Helper()
	cfg, err := config.Parse("admin.json", []byte(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
		"listen": "127.0.0.1:0", `+params+`
		"destination_ems_apiproxies": [{"enable": false, "address": "127.0.0.1", "apiPort": 1}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return a
}

func get(t *testing.T, url, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func postEvent(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"type":"serverStarted","payload":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAdminListenSeparatesTheOperatorRoutes(t *testing.T) {
	a := startApp(t, `"admin_listen": "127.0.0.1:0", "admin_password": "adm1n-pw",`)
	sink, admin := "http://"+a.Addr(), "http://"+a.AdminAddr()
	if sink == admin {
		t.Fatal("admin_listen did not get its own listener")
	}
	if code := postEvent(t, sink+"/evowebservices/"); code != http.StatusOK {
		t.Errorf("event on the sink: %d", code)
	}
	if code, _ := get(t, sink+"/api/v1/status", "", ""); code != http.StatusNotFound {
		t.Errorf("status on the sink address: %d, want 404", code)
	}
	if code, _ := get(t, admin+"/api/v1/status", "", ""); code != http.StatusUnauthorized {
		t.Errorf("status without credentials: %d, want 401", code)
	}
	if code, _ := get(t, admin+"/api/v1/status", "admin", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("status with a wrong password: %d, want 401", code)
	}
	for _, path := range []string{"/api/v1/status", "/metrics", "/", "/healthz"} {
		code, body := get(t, admin+path, "admin", "adm1n-pw")
		if code != http.StatusOK {
			t.Errorf("%s with credentials: %d", path, code)
		}
		if strings.Contains(body, "adm1n-pw") {
			t.Errorf("%s shows the admin password", path)
		}
	}
	if code, body := get(t, admin+"/metrics", "admin", "adm1n-pw"); code != 200 || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "streamlb_member_up") {
		t.Errorf("metrics lack the Go collector or streamlb series")
	}
}

func TestAdminPasswordOnASharedListenerKeepsTheSinkOpen(t *testing.T) {
	a := startApp(t, `"admin_password": "adm1n-pw",`)
	base := "http://" + a.Addr()
	if code := postEvent(t, base+"/evowebservices/"); code != http.StatusOK {
		t.Errorf("event: %d, want 200 without admin credentials", code)
	}
	if code := postEvent(t, base+"/evowebservices"); code != http.StatusOK {
		t.Errorf("event without the slash: %d", code)
	}
	if code, _ := get(t, base+"/api/v1/status", "", ""); code != http.StatusUnauthorized {
		t.Errorf("status without credentials: %d, want 401", code)
	}
	if code, _ := get(t, base+"/api/v1/status", "admin", "adm1n-pw"); code != http.StatusOK {
		t.Errorf("status with credentials: %d", code)
	}
}
