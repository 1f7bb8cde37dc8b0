package bench

// machineCPU is the machine's CPU time since boot, in seconds summed over
// its CPUs: in all, idle (waiting for I/O included) and stolen by the
// hypervisor.
type machineCPU struct {
	total, idle, steal float64
}

// since returns the shares of all the CPUs' time between prev and c that
// were busy (neither idle nor stolen) and stolen, in percent.
func (c machineCPU) since(prev machineCPU) (busy, steal Rate) {
	total := c.total - prev.total
	if total <= 0 {
		return 0, 0
	}
	stolen := c.steal - prev.steal
	idle := c.idle - prev.idle
	return Rate(100 * (total - idle - stolen) / total), Rate(100 * stolen / total)
}
