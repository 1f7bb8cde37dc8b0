package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"
)

// profiler collects CPU and heap profiles of the balancer, the emulator
// and the benchmark itself into a directory, for pprof.
type profiler struct {
	dir     string
	seconds int
	wg      sync.WaitGroup
	mu      sync.Mutex
	errs    []error
}

func newProfiler(dir string, window time.Duration) (*profiler, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile directory: %w", err)
	}
	return &profiler{dir: dir, seconds: max(1, int(window.Seconds()))}, nil
}

// debugAddr returns a free loopback address for a child's pprof server, or
// "" when not profiling.
func (p *profiler) debugAddr() (string, error) {
	if p == nil {
		return "", nil
	}
	return freeListen()
}

// cpu starts CPU profiles of the processes serving pprof at addrs (named
// after them) and of this process, each for the profiler's window, saved
// as NAME-WHAT.pprof.
func (p *profiler) cpu(name string, addrs map[string]string) {
	if p == nil {
		return
	}
	for what, addr := range addrs {
		if addr == "" {
			continue
		}
		p.wg.Go(func() {
			p.note(p.fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, p.seconds),
				filepath.Join(p.dir, name+"-"+what+".pprof"), time.Duration(p.seconds+30)*time.Second))
		})
	}
	for what, addr := range addrs {
		if addr == "" {
			continue
		}
		p.wg.Go(func() {
			// A heap profile and a short execution trace from the
			// middle of the window.
			time.Sleep(time.Duration(p.seconds) * time.Second / 2)
			p.note(p.fetch("http://"+addr+"/debug/pprof/heap",
				filepath.Join(p.dir, name+"-"+what+"-midheap.pprof"), 30*time.Second))
			p.note(p.fetch(fmt.Sprintf("http://%s/debug/pprof/trace?seconds=1", addr),
				filepath.Join(p.dir, name+"-"+what+".trace"), 30*time.Second))
		})
	}
	p.wg.Go(func() {
		f, err := os.Create(filepath.Join(p.dir, name+"-bench.pprof"))
		if err != nil {
			p.note(err)
			return
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			p.note(err)
			return
		}
		time.Sleep(time.Duration(p.seconds) * time.Second)
		pprof.StopCPUProfile()
	})
}

// metrics saves the balancer's metrics, as NAME-metrics.txt.
func (p *profiler) metrics(name, listen string) {
	if p == nil {
		return
	}
	p.note(p.fetch("http://"+listen+"/metrics", filepath.Join(p.dir, name+"-metrics.txt"), 30*time.Second))
}

// heap saves the heap profile of the process serving pprof at addr.
func (p *profiler) heap(name, addr string) {
	if p == nil || addr == "" {
		return
	}
	p.note(p.fetch("http://"+addr+"/debug/pprof/heap", filepath.Join(p.dir, name+"-heap.pprof"), 30*time.Second))
	// Empty unless the process samples contention.
	p.note(p.fetch("http://"+addr+"/debug/pprof/mutex", filepath.Join(p.dir, name+"-mutex.pprof"), 30*time.Second))
	p.note(p.fetch("http://"+addr+"/debug/pprof/block", filepath.Join(p.dir, name+"-block.pprof"), 30*time.Second))
}

func (p *profiler) fetch(url, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch profile %s: HTTP %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (p *profiler) note(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

// wait waits for the profiles being taken.
func (p *profiler) wait() {
	if p != nil {
		p.wg.Wait()
	}
}
