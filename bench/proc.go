package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tail keeps the last max bytes written to it: a child's output, for the
// error message when it fails, without growing under a chatty access log.
type tail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// proc is one server process. It runs in its own process group and gets
// SIGKILL if the harness dies (Pdeathsig).
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{}
	err  error // valid after done
}

// childEnv is the environment of every child: the harness's, without the
// variables the targets or their HTTP clients would read (AUTHZ_*,
// AUTHACTION_*, proxies, SSL_CERT_*), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		lk := strings.ToLower(k)
		switch {
		case strings.HasPrefix(k, "AUTHZ_"), strings.HasPrefix(k, "AUTHACTION_"),
			strings.HasSuffix(lk, "_proxy"), strings.HasPrefix(k, "SSL_CERT_"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func startProc(name, dir string, env []string, bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	out := &tail{max: 32 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, SIGKILL after grace, and waits.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// failure describes why p is not usable: its exit status if it ended, and
// the end of its output.
func (p *proc) failure(err error) error {
	msg := err.Error()
	if p.exited() {
		msg += fmt.Sprintf(" (%s exited: %v)", p.name, p.err)
	}
	out := strings.TrimSpace(p.out.String())
	if len(out) > 4000 {
		out = "..." + out[len(out)-4000:]
	}
	if out != "" {
		msg += "\n--- " + p.name + " output ---\n" + out
	}
	return errors.New(msg)
}

// memory is a process's resident set size now and at its peak, in bytes.
type memory struct {
	RSS, Peak int64
}

// memoryOf reads VmRSS and VmHWM from /proc/<pid>/status.
func memoryOf(pid int) (memory, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	return parseStatus(raw)
}

func parseStatus(raw []byte) (memory, error) {
	var m memory
	var found int
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("/proc status: %s: unexpected %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("/proc status: %s: %w", k, err)
		}
		if k == "VmRSS" {
			m.RSS = n << 10
		} else {
			m.Peak = n << 10
		}
		found++
	}
	if found != 2 {
		return m, errors.New("/proc status: no VmRSS/VmHWM")
	}
	return m, nil
}

// freePort returns a loopback address that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// portFree reports whether addr can be listened on now.
func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuBusy returns the CPU time all CPUs spent busy since boot, from the
// first line of /proc/stat (everything but idle and iowait).
func cpuBusy() (time.Duration, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected %q", line)
	}
	var busy int64
	for i, v := range f[1:] {
		if i >= 8 { // guest and guest_nice are already in user and nice
			break
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * clockTick, nil
}

// busyShare is the share of all CPUs that was busy over d.
func busyShare(ctx context.Context, d time.Duration) (float64, error) {
	b0, err := cpuBusy()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	b1, err := cpuBusy()
	if err != nil {
		return 0, err
	}
	capacity := time.Since(t0) * time.Duration(runtime.NumCPU())
	return min(1, float64(b1-b0)/float64(capacity)), nil
}

// processCPU returns the user+system CPU time of pid, from /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(raw))
}

func parseProcStat(s string) (time.Duration, error) {
	// The command name is in parentheses and may hold spaces: fields are
	// counted from the last ')'. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("/proc/pid/stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("/proc/pid/stat: too few fields")
	}
	var total int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/pid/stat: %w", err)
		}
		total += n
	}
	return time.Duration(total) * clockTick, nil
}

// cpuMeter measures, over one run, the CPU time of the target and of the
// whole machine; with the load generator's own CPU time it tells how much
// the rest of the machine took, since the CPUs are shared.
type cpuMeter struct {
	pid          int
	busy, target time.Duration
	start        time.Time
}

func startCPUMeter(pid int) (*cpuMeter, error) {
	busy, err := cpuBusy()
	if err != nil {
		return nil, err
	}
	target, err := processCPU(pid)
	if err != nil {
		return nil, err
	}
	return &cpuMeter{pid: pid, busy: busy, target: target, start: time.Now()}, nil
}

// cpuUse is the CPU accounting of one run.
type cpuUse struct {
	Target  time.Duration `json:"target_ns"`   // CPU time of the target
	LoadGen time.Duration `json:"load_gen_ns"` // CPU time of ghz or wrk
	// Other is the share of all CPUs, over the run, that went to other
	// processes: 0 on a quiet machine.
	Other float64 `json:"other"`
}

func (m *cpuMeter) stop(loadGen time.Duration) (cpuUse, error) {
	elapsed := time.Since(m.start)
	busy, err := cpuBusy()
	if err != nil {
		return cpuUse{}, err
	}
	target, err := processCPU(m.pid)
	if err != nil {
		return cpuUse{}, err
	}
	u := cpuUse{Target: target - m.target, LoadGen: loadGen}
	other := (busy - m.busy) - u.Target - loadGen
	if capacity := elapsed * time.Duration(runtime.NumCPU()); capacity > 0 && other > 0 {
		u.Other = min(1, float64(other)/float64(capacity))
	}
	return u, nil
}
