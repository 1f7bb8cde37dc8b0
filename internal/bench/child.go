package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout bounds how long a child gets to exit after SIGTERM.
const stopTimeout = 15 * time.Second

// child is a process started by the benchmark: the balancer or emulated
// members. Its stderr is scanned line by line; the last lines are kept for
// error messages.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // its exit error, set before done is closed

	mu   sync.Mutex
	tail []string
	// onLine, when set, sees every stderr line first; it reports whether
	// the line was consumed (then it is not kept in the tail).
	onLine func(string) bool
}

// startChild runs exe with args. The process gets SIGKILL should the
// benchmark die first (Linux).
func startChild(name, exe string, args []string, env []string, onLine func(string) bool) (*child, error) {
	c := &child{name: name, done: make(chan struct{}), onLine: onLine}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = procAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.cmd = cmd
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		c.scan(stderr)
	}()
	go func() {
		<-scanned
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if c.onLine != nil && c.onLine(line) {
			continue
		}
		c.mu.Lock()
		c.tail = append(c.tail, line)
		if len(c.tail) > 20 {
			c.tail = c.tail[len(c.tail)-20:]
		}
		c.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// pid returns the process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stderrTail returns the last lines the process wrote to stderr.
func (c *child) stderrTail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n")
}

// exitError describes why the process ended early, with its last words.
func (c *child) exitError() error {
	msg := fmt.Sprintf("%s exited: %v", c.name, c.err)
	if t := c.stderrTail(); t != "" {
		msg += "\n" + t
	}
	return errors.New(msg)
}

// signal sends sig to the process unless it has ended.
func (c *child) signal(sig os.Signal) error {
	if c.exited() {
		return c.exitError()
	}
	return c.cmd.Process.Signal(sig)
}

// stop asks the process to end (SIGTERM), kills it after stopTimeout, and
// waits for it.
func (c *child) stop() error {
	if c.exited() {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %v; killed", c.name, stopTimeout)
	}
}

// poll calls cond every interval until it reports done, ctx ends, the
// deadline passes or the process exits. An error cond returns with done is
// final; one returned without done is reported only if time runs out.
func poll(ctx context.Context, within, interval time.Duration, what string, proc *child, cond func(ctx context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		}
		if err != nil {
			last = err
		}
		if proc != nil && proc.exited() {
			return fmt.Errorf("%s: %w", what, proc.exitError())
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%s: not within %v: %w", what, within, last)
			}
			return fmt.Errorf("%s: not within %v", what, within)
		case <-t.C:
		}
	}
}
