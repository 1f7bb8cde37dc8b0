package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReplicationGood(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "good", "replication.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Replication{Mode: ReplicationDemand, MinCopies: 3, MaxCopies: 5, ScaleUpUtilization: 0.6, ScaleDownAfter: 10 * time.Minute}
	if diff := cmp.Diff(want, cfg.Replication); diff != "" {
		t.Errorf("Replication mismatch (-want +got):\n%s", diff)
	}
}

func TestReplicationBad(t *testing.T) {
	path := filepath.Join("testdata", "bad", "replication.json")
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded, want errors")
	}
	want := []string{
		`3:27: parameters.replication.mode: want "all" or "demand", got "some"`,
		`3:49: parameters.replication.min_copies: want 1 or more, got 0`,
		`3:66: parameters.replication.max_copies: want 0 (every member) or at least min_copies (2), got 1`,
		`3:93: parameters.replication.scale_up_utilization: want a utilization above 0 and at most 1, got 2`,
		`3:116: parameters.replication.scale_down_after: want at least 1s, got "10ms"`,
		`3:124: parameters.replication: unknown key "k"`,
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), path+":"+w) {
			t.Errorf("errors lack %q; got:\n%v", w, err)
		}
	}
}

func TestJournalSize(t *testing.T) {
	block := func(v string) string {
		return `{"StreamLoadBalancer": {"plugin_switch": "enabled", "parameters": {"journal_size": ` + v +
			`, "destination_ems_apiproxies": [{"enable": false, "address": "10.0.0.1"}]}}}`
	}
	cfg, err := Parse("j.json", []byte(block("500")))
	if err != nil || cfg.JournalSize != 500 {
		t.Fatalf("journal_size 500: %v, %+v", err, cfg)
	}
	_, err = Parse("j.json", []byte(block("5")))
	if err == nil || !strings.Contains(err.Error(), "j.json:1:") || !strings.Contains(err.Error(), "parameters.journal_size: want 100 to 10000000, got 5") {
		t.Errorf("journal_size 5: %v", err)
	}
}
