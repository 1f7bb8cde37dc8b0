//go:build !linux

package bench

import (
	"errors"
	"syscall"
)

func procAttr() *syscall.SysProcAttr { return nil }

func readMachineCPU() (machineCPU, error) {
	return machineCPU{}, errors.New("CPU time is read from /proc, on Linux only")
}

func peakRSS(int) (uint64, error) {
	return 0, errors.New("peak memory is read from /proc, on Linux only")
}
