package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"streamlb/internal/app"
	"streamlb/internal/config"
	"streamlb/internal/emsim"
	"streamlb/internal/testkit"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "streamlb e2e CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert issues a certificate for ip.
func (ca *testCA) serverCert(t *testing.T, ip string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: ip},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestHTTPSAPIProxy reaches a member's API proxy over https: with the CA
// given in caFile the member is used; without it the certificate is refused
// with a clear error; with insecureSkipVerify it is used unverified.
func TestHTTPSAPIProxy(t *testing.T) {
	ca := newTestCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		tls     string // the member's TLS keys in the config
		wantErr string // in the member's last_error; "" for a member that is up
	}{
		{"caFile", `"caFile": "` + caFile + `"`, ""},
		{"system roots only", ``, "certificate signed by unknown authority"},
		{"insecureSkipVerify", `"insecureSkipVerify": true`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ips := emsim.RandomLoopbackIPs(3)
			cl, err := emsim.Start(emsim.Config{IP: ips[0], Members: 3, EWSPort: ewsPort, User: proxyUser, Password: proxyPassword})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			// The first member's API proxy behind https, on its own address.
			ln, err := net.Listen("tcp", ips[0]+":0")
			if err != nil {
				t.Fatal(err)
			}
			front := httptest.NewUnstartedServer(cl.Members()[0].ProxyHandler())
			front.Listener.Close()
			front.Listener = ln
			front.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
			front.TLS = &tls.Config{Certificates: []tls.Certificate{ca.serverCert(t, ips[0])}, MinVersion: tls.VersionTLS12}
			front.StartTLS()
			defer front.Close()
			_, port, _ := net.SplitHostPort(ln.Addr().String())

			text := fmt.Sprintf(`{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {
				"listen": "127.0.0.1:0", "resync_interval": "2s",
				"destination_ems_apiproxies": [
					{"enable": true, "scheme": "https", "address": %q, "ewsPort": %s, "userName": %q, "password": %q, "name": "m1"%s},
					{"enable": false, "address": %q, "name": "m2"},
					{"enable": false, "address": %q, "name": "m3"}]}}}`,
				ips[0], port, proxyUser, proxyPassword, prefixComma(tt.tls), ips[1], ips[2])
			cfg, err := config.Parse("tls.json", []byte(text))
			if err != nil {
				t.Fatalf("config: %v\n%s", err, text)
			}
			logs := &testkit.Buffer{}
			a, err := app.New(app.Options{Config: cfg, Logger: newTextLogger(logs)})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := a.Stop(ctx); err != nil {
					t.Errorf("stop: %v", err)
				}
			}()
			if tt.wantErr != "" {
				var lastErr string
				eventually(t, 5*time.Second, "m1 down with a certificate error", func() bool {
					m := a.Controller().Snapshot().Members[0]
					lastErr = m.LastError
					return m.State == "down" && strings.Contains(lastErr, tt.wantErr)
				})
				if !strings.Contains(lastErr, `"m1"`) {
					t.Errorf("last_error %q does not name the member", lastErr)
				}
				if n := cl.Members()[0].CallCount("version") + cl.Members()[0].CallCount("listconfig"); n != 0 {
					t.Errorf("%d calls reached the member through an unverified connection", n)
				}
				return
			}
			// Replication to and from the member behind https.
			if err := cl.Members()[0].Publish("secure"); err != nil {
				t.Fatal(err)
			}
			if err := cl.Members()[1].Publish("plain"); err != nil {
				t.Fatal(err)
			}
			g := &group{t: t, cl: cl, ips: ips}
			// No events are posted: the resync finds both streams.
			g.replicated(0, "secure", 5*time.Second)
			g.replicated(1, "plain", 5*time.Second)
			if m := a.Controller().Snapshot().Members[0]; m.State != "up" || m.API != "proxy" {
				t.Errorf("m1: state %s, api %s; want up through its proxy", m.State, m.API)
			}
			if strings.Contains(logs.String(), proxyPassword) {
				t.Error("the logs show the proxy password")
			}
		})
	}
}

func prefixComma(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

func newTextLogger(w *testkit.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
