package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"streamlb/internal/buildinfo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBuiltBinaryNamesItsBuild builds streamlb with the go command, as a
// user does, and asks the binary which build it is.
func TestBuiltBinaryNamesItsBuild(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "streamlb")
	build := func(t *testing.T, flags ...string) {
		t.Helper()
		args := append([]string{"build", "-o", bin}, buildFlags...)
		args = append(append(args, flags...), ".")
		if out, err := exec.CommandContext(ctx, goBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run := func(t *testing.T, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var out, errb bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
			return exitErr.ExitCode(), out.String(), errb.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, out.String(), errb.String()
	}
	version := func(t *testing.T) buildinfo.Info {
		t.Helper()
		code, out, errOut := run(t, "version", "-json")
		var info buildinfo.Info
		if err := json.Unmarshal([]byte(out), &info); err != nil || code != 0 {
			t.Fatalf("version -json: exit %d, %v\n%s%s", code, err, out, errOut)
		}
		return info
	}

	gitHead := func() string {
		head, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(head))
	}

	headBefore := gitHead()
	// -buildvcs=auto is the go command's default, which GOFLAGS may
	// override on a build machine.
	build(t, "-buildvcs=auto")
	headAfter := gitHead()
	t.Run("version", func(t *testing.T) {
		_, out, _ := run(t, "version")
		if regexp.MustCompile(`^streamlb devel go[0-9.]+\n$`).MatchString(out) {
			t.Errorf("version = %q: a bare devel", out)
		}
		if !regexp.MustCompile(`^streamlb \S+ (\(.+\) )?go1\.[0-9]+\S*\n$`).MatchString(out) {
			t.Errorf("version = %q, want streamlb VERSION (DETAILS) GOVERSION", out)
		}
		for _, flag := range []string{"--version", "-version"} {
			if _, o, _ := run(t, flag); o != out {
				t.Errorf("%s = %q, want what version prints, %q", flag, o, out)
			}
		}
		switch {
		case headBefore == "":
			t.Skip("not a git checkout: no revision to compare with")
		case headBefore != headAfter:
			t.Skip("a commit landed during the build")
		}
		info := version(t)
		if info.Revision != headBefore || info.Time == "" {
			t.Fatalf("version -json = %+v, want revision %s and its time", info, headBefore)
		}
		if !strings.Contains(out, "rev "+info.Revision[:12]) {
			t.Errorf("version = %q, want it to show rev %s", out, info.Revision[:12])
		}
	})
	t.Run("help and usage errors", func(t *testing.T) {
		if code, out, errOut := run(t, "help", "run"); code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: streamlb run") {
			t.Errorf("help run: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if code, out, errOut := run(t, "run", "-nosuch"); code != 2 || out != "" || !strings.Contains(errOut, "Usage: streamlb run") {
			t.Errorf("run -nosuch: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("link-time version", func(t *testing.T) {
		build(t, "-buildvcs=auto", "-ldflags", "-X streamlb/internal/buildinfo.version=v9.8.7-test")
		if info := version(t); info.Version != "v9.8.7-test" {
			t.Errorf("version -json = %+v, want version v9.8.7-test", info)
		}
	})
}
