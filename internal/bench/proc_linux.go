package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/prometheus/procfs"
)

// procAttr makes a child die with the benchmark.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// peakRSS returns the peak resident set size (VmHWM) of process pid.
func peakRSS(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read peak memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "VmHWM:" {
			kb, err := strconv.ParseUint(string(f[1]), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read peak memory: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("read peak memory: no VmHWM in /proc/%d/status", pid)
}

// readMachineCPU returns the machine's CPU time so far (/proc/stat).
func readMachineCPU() (machineCPU, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return machineCPU{}, fmt.Errorf("read CPU time: %w", err)
	}
	st, err := fs.Stat()
	if err != nil {
		return machineCPU{}, fmt.Errorf("read CPU time: %w", err)
	}
	c := st.CPUTotal
	// Guest time is counted in user time already.
	return machineCPU{
		total: c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal,
		idle:  c.Idle + c.Iowait,
		steal: c.Steal,
	}, nil
}
