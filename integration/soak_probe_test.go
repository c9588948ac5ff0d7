package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricFamilies is one scrape of a server's /metrics.
type metricFamilies map[string]*dto.MetricFamily

// scrapeMetrics fetches and parses adminURL/metrics.
func scrapeMetrics(ctx context.Context, adminURL string) (metricFamilies, error) {
	r, err := send(ctx, http.MethodGet, adminURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d: %s", r.status, snippet(r.body))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return fams, nil
}

// sum adds the values of family name's series whose labels include want
// (counters and gauges), and reports whether the family exists.
func (m metricFamilies) sum(name string, want map[string]string) (float64, bool) {
	f := m[name]
	if f == nil {
		return 0, false
	}
	var total float64
next:
	for _, s := range f.GetMetric() {
		for _, l := range s.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			total += s.GetCounter().GetValue()
		case s.Gauge != nil:
			total += s.GetGauge().GetValue()
		case s.Untyped != nil:
			total += s.GetUntyped().GetValue()
		}
	}
	return total, true
}

// byLabel sums family name's series by the value of label.
func (m metricFamilies) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m[name].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += s.GetCounter().GetValue() + s.GetGauge().GetValue()
			}
		}
	}
	return out
}

// resourceSample is the ext_authz process's footprint at one moment.
type resourceSample struct {
	goroutines int64
	heapInuse  int64 // go_memstats_heap_inuse_bytes
	heapAlloc  int64 // go_memstats_heap_alloc_bytes
	nextGC     int64 // go_memstats_next_gc_bytes: the heap goal set by the last GC
	vmRSS      int64 // /proc/<pid>/status VmRSS
	vmHWM      int64 // /proc/<pid>/status VmHWM: peak RSS so far
}

func (s resourceSample) String() string {
	return fmt.Sprintf("goroutines %d, heap inuse %s, heap alloc %s, next GC %s, RSS %s (peak %s)",
		s.goroutines, mib(s.heapInuse), mib(s.heapAlloc), mib(s.nextGC), mib(s.vmRSS), mib(s.vmHWM))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// sampleResources reads the process's Go runtime metrics and its RSS.
func sampleResources(ctx context.Context, adminURL string, pid int) (resourceSample, error) {
	var s resourceSample
	fams, err := scrapeMetrics(ctx, adminURL)
	if err != nil {
		return s, err
	}
	for _, m := range []struct {
		name string
		dst  *int64
	}{
		{"go_goroutines", &s.goroutines},
		{"go_memstats_heap_inuse_bytes", &s.heapInuse},
		{"go_memstats_heap_alloc_bytes", &s.heapAlloc},
		{"go_memstats_next_gc_bytes", &s.nextGC},
	} {
		v, ok := fams.sum(m.name, nil)
		if !ok {
			return s, fmt.Errorf("/metrics has no %s", m.name)
		}
		*m.dst = int64(v)
	}
	if s.vmRSS, s.vmHWM, err = procRSS(pid); err != nil {
		return s, err
	}
	return s, nil
}

// quietSample takes n samples interval apart, after settle, and keeps the
// least of each figure (the peak RSS is the latest): on a noisy machine the
// minimum over a quiet moment is the stable reading. The caller makes the
// moment quiet.
func quietSample(ctx context.Context, adminURL string, pid int, settle, interval time.Duration, n int) (resourceSample, error) {
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return resourceSample{}, ctx.Err()
	}
	var best resourceSample
	for i := range n {
		if i > 0 {
			select {
			case <-time.After(interval):
			case <-ctx.Done():
				return resourceSample{}, ctx.Err()
			}
		}
		s, err := sampleResources(ctx, adminURL, pid)
		if err != nil {
			return resourceSample{}, err
		}
		if i == 0 {
			best = s
			continue
		}
		best.goroutines = min(best.goroutines, s.goroutines)
		best.heapInuse = min(best.heapInuse, s.heapInuse)
		best.heapAlloc = min(best.heapAlloc, s.heapAlloc)
		best.nextGC = min(best.nextGC, s.nextGC)
		best.vmRSS = min(best.vmRSS, s.vmRSS)
		best.vmHWM = s.vmHWM
	}
	return best, nil
}

// procRSS reads VmRSS and VmHWM of process pid from /proc.
func procRSS(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		// "   12345 kB"
		fields := strings.Fields(v)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: unexpected %q", pid, k, v)
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
	}
	return rss, hwm, nil
}
