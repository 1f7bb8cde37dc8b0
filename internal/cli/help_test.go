package cli

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"streamlb/internal/buildinfo"
)

func TestHelpGoesToStdout(t *testing.T) {
	for _, c := range commands() {
		for _, args := range [][]string{{"help", c.name}, {c.name, "-h"}, {c.name, "-help"}, {c.name, "--help"}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, out, errOut := runMain(t, args...)
				if code != 0 || errOut != "" {
					t.Errorf("exit %d, stderr %q; want 0 and nothing on stderr", code, errOut)
				}
				if want := "Usage: streamlb " + c.synopsis + "\n"; !strings.HasPrefix(out, want) {
					t.Errorf("stdout starts %.80q, want %q", out, want)
				}
				if !strings.Contains(out, c.doc) {
					t.Errorf("stdout does not say what %s does:\n%s", c.name, out)
				}
			})
		}
	}
	for _, args := range [][]string{{"help"}, {"help", "help"}, {"-h"}, {"-help"}, {"--help"}} {
		code, out, errOut := runMain(t, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "Commands:") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0 and the command list on stdout", args, code, out, errOut)
		}
	}
}

func TestUsageErrorsGoToStderr(t *testing.T) {
	tests := []struct {
		args []string
		want []string // on stderr
	}{
		{nil, []string{"Usage: streamlb COMMAND", "Commands:"}},
		{[]string{"nosuch"}, []string{`unknown command "nosuch"`, "Commands:"}},
		{[]string{"help", "nosuch"}, []string{`unknown command "nosuch"`, "Commands:"}},
		{[]string{"help", "run", "check"}, []string{"at most one command"}},
		{[]string{"run", "-nosuch"}, []string{"streamlb run: flag provided but not defined: -nosuch", "Usage: streamlb run -config FILE", "-log-level"}},
		{[]string{"run"}, []string{"streamlb run: -config is required", "Usage: streamlb run"}},
		{[]string{"run", "-config", "x.json", "-log-format", "xml"}, []string{`-log-format "xml"`, "Usage: streamlb run"}},
		{[]string{"check"}, []string{"streamlb check: -config is required", "Usage: streamlb check -config FILE"}},
		{[]string{"check", "-config", "a", "b"}, []string{`unexpected argument "b"`}},
		{[]string{"sync"}, []string{"streamlb sync: -config is required", "-dry-run"}},
		{[]string{"prune"}, []string{"streamlb prune: -config is required"}},
		{[]string{"status"}, []string{"give exactly one of -config and -server", "-server URL"}},
		{[]string{"version", "-x"}, []string{"flag provided but not defined: -x", "Usage: streamlb version"}},
		{[]string{"bench", "-members", "many"}, []string{`invalid value "many" for flag -members`, "-scenarios"}},
		{[]string{"demo", "-members", "1"}, []string{"-members must be between 2 and 50"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runMain(t, tt.args...)
			if code != exitUsage || out != "" {
				t.Errorf("exit %d, stdout %q; want %d and nothing on stdout", code, out, exitUsage)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// column returns the column at which the text after the first run of two
// or more spaces (past the indent) starts, or -1.
func column(line string) int {
	trimmed := strings.TrimLeft(line, " ")
	i := strings.Index(trimmed, "  ")
	if i < 0 {
		return -1
	}
	j := i
	for j < len(trimmed) && trimmed[j] == ' ' {
		j++
	}
	return len([]rune(line[:len(line)-len(trimmed)+j]))
}

func TestUsageColumnsAreAligned(t *testing.T) {
	check := func(t *testing.T, what string, lines []string, n int) {
		t.Helper()
		if len(lines) != n {
			t.Fatalf("%s: %d lines, want %d:\n%s", what, len(lines), n, strings.Join(lines, "\n"))
		}
		want := column(lines[0])
		for _, l := range lines {
			if c := column(l); c != want || want < 0 {
				t.Errorf("%s: line %q has its second column at %d, want %d", what, l, c, want)
			}
		}
	}
	_, out, _ := runMain(t, "help")
	var cmdLines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  ") {
			cmdLines = append(cmdLines, l)
		}
	}
	check(t, "streamlb help", cmdLines, len(commands())+1)

	for _, c := range commands() {
		_, out, _ := runMain(t, c.name, "-h")
		check(t, c.name+" -h", flagLines(out), len(flagNames(out)))
	}
}

// flagLines returns the lines of a command's help that list its flags.
func flagLines(help string) []string {
	var lines []string
	for _, l := range strings.Split(help, "\n") {
		if strings.HasPrefix(l, "  -") {
			lines = append(lines, l)
		}
	}
	return lines
}

var flagName = regexp.MustCompile(`^  (-[a-z-]+)`)

// flagNames returns the flags a command's help lists, as "-name".
func flagNames(help string) []string {
	var names []string
	for _, l := range flagLines(help) {
		if m := flagName.FindStringSubmatch(l); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

// TestReadmeListsEveryFlag reads README.md's table of flags: a row per
// flag, the command in the first column and the flag in the second.
func TestReadmeListsEveryFlag(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z]+)` \\| `(-[a-z-]+)")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]+" "+m[2]] = true
	}
	for _, c := range commands() {
		_, out, _ := runMain(t, c.name, "-h")
		for _, f := range flagNames(out) {
			if !documented[c.name+" "+f] {
				t.Errorf("README.md's flag table has no row for %s %s", c.name, f)
			}
			delete(documented, c.name+" "+f)
		}
	}
	for k := range documented {
		t.Errorf("README.md's flag table lists %s, which does not exist", k)
	}
}

func TestVersionFlags(t *testing.T) {
	want := buildinfo.Get().String() + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		code, out, errOut := runMain(t, args...)
		if code != 0 || out != want || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0 and %q", args, code, out, errOut, want)
		}
	}
	code, out, _ := runMain(t, "version", "-json")
	var got buildinfo.Info
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
		t.Fatalf("version -json: exit %d, %v:\n%s", code, err, out)
	}
	if got != buildinfo.Get() {
		t.Errorf("version -json = %+v, want %+v", got, buildinfo.Get())
	}
	for _, key := range []string{`"version"`, `"modified"`, `"go_version"`} {
		if !strings.Contains(out, key) {
			t.Errorf("version -json lacks %s: %s", key, out)
		}
	}
}
