package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"streamlb/internal/emsim"
)

func TestRunRefusesBadFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"non-loopback address", []string{"-ip", "10.1.2.3"}, 1, "only loopback"},
		{"unknown log format", []string{"-log-format", "xml"}, 2, "-log-format"},
		{"unknown flag", []string{"-nope"}, 2, "flag provided but not defined"},
		{"stray argument", []string{"extra"}, 2, "unexpected arguments"},
		{"bad event type", []string{"-enabled-events", "inStreamCreated,,inStreamClosed"}, 2, `-enabled-events: entry 2 ""`},
		{"help", []string{"-h"}, 0, "-api-port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tt.args, &stderr); got != tt.wantCode {
				t.Errorf("run(%q) = %d, want %d; stderr: %s", tt.args, got, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("run(%q) stderr = %q, want it to contain %q", tt.args, stderr.String(), tt.wantErr)
			}
		})
	}
}

// TestSignalStopsWithZero runs the program in a child process, waits for
// its members, uses a control route and stops it with SIGTERM.
func TestSignalStopsWithZero(t *testing.T) {
	if os.Getenv("EMSIM_TEST_CHILD") == "1" {
		os.Exit(run(strings.Fields(os.Getenv("EMSIM_TEST_ARGS")), os.Stderr))
	}
	ips := emsim.RandomLoopbackIPs(2)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSignalStopsWithZero$")
	cmd.Env = append(os.Environ(), "EMSIM_TEST_CHILD=1",
		"EMSIM_TEST_ARGS=-ip "+ips[0]+" -members 2 -api-port 7777 -ews-port 8888")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var members []string
	for len(members) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("child exited early: %v", cmd.Wait())
			}
			if strings.HasPrefix(l, "member ") {
				members = append(members, l)
			}
		case <-ctx.Done():
			t.Fatal("no member lines from the child")
		}
	}
	want := "member " + ips[1] + " api http://" + ips[1] + ":7777 proxy http://" + ips[1] + ":8888/apiproxy"
	if members[1] != want {
		t.Errorf("second member line = %q, want %q", members[1], want)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	resp, err := client.Post("http://"+ips[0]+":7777/_emsim/publish?name=cam", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok":true`) {
		t.Errorf("publish: HTTP %d %s", resp.StatusCode, body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines { // until the child closes stderr by exiting
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("child after SIGTERM: %v, want exit status 0", err)
	}
}
