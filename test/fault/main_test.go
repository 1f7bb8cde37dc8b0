package fault

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// Flags of the suite; see the package documentation.
var (
	flagSeed     = flag.Uint64("fault.seed", 0, "seed of the fault schedule (0: a random one, printed)")
	flagDuration = flag.Duration("fault.duration", 0, "how long faults are injected in all (0: the short CI schedule)")
	flagReport   = flag.String("fault.report", "", "write the run's figures as JSON to this file")
	flagStrict   = flag.Bool("fault.strict", false, "fail on the removals that match a known issue too")
	flagLogs     = flag.String("fault.logs", "", "write the balancers' logs (JSON, info level) to this file and keep it")
)

// emsimBin is the emulator program, built once by TestMain.
var emsimBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "streamlb-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	emsimBin = filepath.Join(dir, "emsim")
	if out, err := exec.Command("go", "build", "-o", emsimBin, "streamlb/cmd/emsim").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build emsim: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// Balancers stopped abruptly (killed) finish their goroutines
		// shortly after; goleak retries for a while before it reports.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
