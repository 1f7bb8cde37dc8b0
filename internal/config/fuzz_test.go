package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// errorLine is the shape of every line of a Parse error.
var errorLine = regexp.MustCompile(`^f\.json:(\d+):(\d+): \S`)

// FuzzParse checks that Parse never panics, that every problem it reports
// is located in the file, and that a config it accepts keeps its rules.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.json", data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a config with error %v", err)
			}
			lines := strings.Count(string(data), "\n") + 1
			for _, line := range strings.Split(err.Error(), "\n") {
				m := errorLine.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("error line %q is not FILE:LINE:COL: message", line)
				}
				if n := atoi(m[1]); n < 1 || n > lines {
					t.Fatalf("error line %q: line %d is outside the file's %d lines", line, n, lines)
				}
			}
			return
		}
		if len(cfg.Members) == 0 {
			t.Fatal("Parse accepted a config without members")
		}
		names := map[string]bool{}
		for _, m := range cfg.Members {
			if m.Address == "" || m.Name == "" || m.Endpoint.BaseURL == "" {
				t.Fatalf("member %+v lacks an address, a name or a base URL", m)
			}
			if names[m.Name] {
				t.Fatalf("two members named %q", m.Name)
			}
			names[m.Name] = true
		}
		if cfg.MaxInflight < 1 || cfg.MaxPullsPerSecond < 0 || cfg.ResyncInterval <= 0 || cfg.TeardownGrace <= 0 {
			t.Fatalf("accepted out-of-range values: %+v", cfg)
		}
	})
}

// atoi returns the number s holds, or -1.
func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' || n > 1<<30 {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}
