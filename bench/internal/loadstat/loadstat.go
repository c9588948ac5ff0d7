// Package loadstat holds what one load-generator run measured, in the JSON
// form that the benchmark harness (go run ./bench) reads from its own
// open-loop client (bench/pace) and builds from ghz's and wrk's reports.
package loadstat

import "time"

// Stats is the outcome of one load-generator run.
type Stats struct {
	Requests int64         `json:"requests"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	RPS      float64       `json:"rps"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	P999     time.Duration `json:"p999_ns"`
	Errors   int64         `json:"errors"`
	// ErrorKinds counts errors by kind (gRPC status, wrk error class,
	// "denied" for a CheckResponse that is not OK).
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	// SendP50/SendP99/SendP999 (open-loop client only) are measured from
	// each call's actual send instead of its scheduled time, and Late counts
	// the calls sent more than 1 ms after their scheduled time.
	SendP50  time.Duration `json:"send_p50_ns,omitempty"`
	SendP99  time.Duration `json:"send_p99_ns,omitempty"`
	SendP999 time.Duration `json:"send_p999_ns,omitempty"`
	Late     int64         `json:"late,omitempty"`
}
