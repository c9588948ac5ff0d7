package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the output kept per process: the first headLines lines (startup)
// and the last tailLines, so a chatty access log cannot grow without limit.
const (
	headLines = 200
	tailLines = 2000
	dumpLines = 150 // lines shown in the test log on failure
)

// lineLog keeps a process's (or an in-process component's) output lines,
// bounded, and wakes waiters on each new line. It is an io.Writer.
type lineLog struct {
	mu      sync.Mutex
	lines   []string
	dropped int
	raced   bool // a "WARNING: DATA RACE" line was seen
	changed chan struct{}
	partial []byte
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.Contains(line, "WARNING: DATA RACE") {
		l.raced = true
	}
	if len(l.lines) >= headLines+tailLines {
		copy(l.lines[headLines:], l.lines[headLines+1:])
		l.lines = l.lines[:len(l.lines)-1]
		l.dropped++
	}
	l.lines = append(l.lines, line)
	close(l.changed)
	l.changed = make(chan struct{})
}

// Write splits p into lines; it lets slog handlers write into a lineLog.
func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	buf := append(l.partial, p...)
	l.partial = nil
	l.mu.Unlock()
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		l.add(string(buf[:i]))
		buf = buf[i+1:]
	}
	if len(buf) > 0 {
		l.mu.Lock()
		l.partial = append([]byte(nil), buf...)
		l.mu.Unlock()
	}
	return len(p), nil
}

// find returns the first line that match accepts, and the channel closed
// when the next line arrives.
func (l *lineLog) find(match func(string) bool) (string, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if match(line) {
			return line, true, nil
		}
	}
	return "", false, l.changed
}

// tail returns the last n lines, joined.
func (l *lineLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines
	var b strings.Builder
	if len(lines) > n {
		fmt.Fprintf(&b, "[... %d earlier lines ...]\n", len(lines)-n+l.dropped)
		lines = lines[len(lines)-n:]
	} else if l.dropped > 0 {
		fmt.Fprintf(&b, "[... %d lines dropped from the middle ...]\n", l.dropped)
	}
	for _, line := range lines {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

func (l *lineLog) sawRace() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raced
}

// reportOnFailure logs l's last lines when t has failed by the time its
// cleanups run. Register it before whatever stops the component, so that it
// runs after (cleanups run last-in first-out) and shows the shutdown too.
func reportOnFailure(t *testing.T, name string, l *lineLog) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- output of %s (last %d lines) ---\n%s", name, dumpLines, l.tail(dumpLines))
		}
	})
}

// proc is one child process. It runs in its own process group (nginx forks
// workers) and dies with the test process (Pdeathsig). Its stdout and
// stderr go to out.
type proc struct {
	name       string
	cmd        *exec.Cmd
	out        *lineLog
	done       chan struct{} // closed once the process has been waited for
	readerDone chan struct{} // closed once its output reached EOF
	waitErr    error         // valid after done
}

// childEnv is the test's environment without the variables the binaries
// read (AUTHZ_*, AUTHACTION_*, IDP_*, BACKEND_*), so a developer's shell
// cannot change what is tested, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AUTHZ_"), strings.HasPrefix(k, "AUTHACTION_"),
			strings.HasPrefix(k, "IDP_"), strings.HasPrefix(k, "BACKEND_"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// startProc starts bin in dir and registers its cleanup: stop it (SIGTERM to
// its group, SIGKILL after a grace period), fail the test if the race
// detector reported anything, and log its output if the test failed.
func startProc(t *testing.T, name, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, out: newLineLog(), done: make(chan struct{}), readerDone: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	w.Close() // the child holds the only write ends now
	go func() {
		defer close(p.readerDone)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.out.add(sc.Text())
		}
		// A line longer than the buffer ends the scan; drain the rest so
		// the child never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, r)
	}()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	reportOnFailure(t, name, p.out)
	t.Cleanup(func() {
		p.stop(3 * time.Second)
		if raceEnabled && p.out.sawRace() {
			t.Errorf("%s: the race detector reported a data race (output below)", name)
			t.Logf("--- output of %s ---\n%s", name, p.out.tail(headLines+tailLines))
		}
	})
	return p
}

// signalGroup sends sig to p's process group: the process and any children
// it forked (nginx workers). The group id is p's pid, which the kernel does
// not reuse while any member of the group is alive.
func (p *proc) signalGroup(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop ends p gracefully, or by SIGKILL after grace, and waits for it.
func (p *proc) stop(grace time.Duration) {
	p.signalGroup(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	p.signalGroup(syscall.SIGKILL) // also reaps workers left behind
	<-p.done
	select {
	case <-p.readerDone:
	case <-time.After(grace):
	}
}

// kill ends p at once with SIGKILL, as a crash would, and waits until it
// has exited.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.signalGroup(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not exit after SIGKILL", p.name)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var errExited = errors.New("process exited")

// waitLine waits for a line of p's output that match accepts.
func (p *proc) waitLine(ctx context.Context, what string, match func(string) bool) (string, error) {
	for {
		line, ok, changed := p.out.find(match)
		if ok {
			return line, nil
		}
		select {
		case <-changed:
		case <-p.done:
			// The last lines may still be in the pipe.
			select {
			case <-p.readerDone:
			case <-time.After(time.Second):
			}
			if line, ok, _ := p.out.find(match); ok {
				return line, nil
			}
			return "", fmt.Errorf("%s: %w (%v) before logging %s", p.name, errExited, p.waitErr, what)
		case <-ctx.Done():
			return "", fmt.Errorf("%s: waiting for %s: %w", p.name, what, ctx.Err())
		}
	}
}

// jsonLog matches a JSON log line with the given msg and returns its fields.
func jsonLog(line, msg string) (map[string]any, bool) {
	if !strings.HasPrefix(line, "{") {
		return nil, false
	}
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != msg {
		return nil, false
	}
	return m, true
}

// waitJSON waits for the JSON log line with msg whose fields match
// accepts (nil accepts any) and returns its fields.
func (p *proc) waitJSON(ctx context.Context, msg string, accept func(map[string]any) bool) (map[string]any, error) {
	var got map[string]any
	_, err := p.waitLine(ctx, fmt.Sprintf("%q", msg), func(line string) bool {
		m, ok := jsonLog(line, msg)
		if ok && (accept == nil || accept(m)) {
			got = m
			return true
		}
		return false
	})
	return got, err
}

// listenAddr waits for p's "listening" log line of listener (any, for
// "") and returns its address, which must be on 127.0.0.1.
func (p *proc) listenAddr(ctx context.Context, t *testing.T, listener string) string {
	t.Helper()
	m, err := p.waitJSON(ctx, "listening", func(m map[string]any) bool { return listener == "" || m["listener"] == listener })
	if err != nil {
		t.Fatal(err)
	}
	addr, err := loopbackAddr(m["addr"])
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return addr
}

// loopbackAddr checks that a logged listen address is on 127.0.0.1.
func loopbackAddr(v any) (string, error) {
	s, _ := v.(string)
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("logged address %q: %w", s, err)
	}
	if host != "127.0.0.1" {
		return "", fmt.Errorf("logged address %q is not on 127.0.0.1", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 {
		return "", fmt.Errorf("logged address %q has no port", s)
	}
	return s, nil
}

// freePort returns a 127.0.0.1 port that was free a moment ago, for peers
// whose config needs a fixed port (nginx, Caddy). Another process could
// take it before the peer binds; callers retry on a bind failure.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// poll calls try every interval until it returns true or an error, or ctx
// ends; the last error (or "timed out") is returned.
func poll(ctx context.Context, interval time.Duration, try func() (bool, error)) error {
	var last error
	for {
		ok, err := try()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last: %w)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
