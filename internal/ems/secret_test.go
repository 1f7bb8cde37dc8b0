package ems

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverPrinted(t *testing.T) {
	const value = "hunter2"
	s := Secret(value)
	ep := Endpoint{Member: "m", BaseURL: "http://admin:" + value + "@10.0.0.5:8888/apiproxy", Proxy: true, User: "admin", Password: s}

	var forms []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s"} {
		forms = append(forms, fmt.Sprintf(verb, s), fmt.Sprintf(verb, ep), fmt.Sprintf(verb, &ep))
	}
	js, err := json.Marshal(ep)
	if err != nil {
		t.Fatal(err)
	}
	forms = append(forms, string(js), ep.String())
	var logged bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logged, nil))
	log.Info("x", "password", s, "endpoint", ep)
	log.Info("y", slog.Any("ep", ep))
	forms = append(forms, logged.String())

	for _, f := range forms {
		if strings.Contains(f, value) {
			t.Errorf("secret printed: %s", f)
		}
	}
	if s.Reveal() != value {
		t.Errorf("Reveal() = %q, want %q", s.Reveal(), value)
	}
	if got := fmt.Sprint(s); got != "REDACTED" {
		t.Errorf("Sprint(secret) = %q, want REDACTED", got)
	}
	if got := fmt.Sprint(Secret("")); got != "" {
		t.Errorf("Sprint(empty secret) = %q, want empty", got)
	}
}
