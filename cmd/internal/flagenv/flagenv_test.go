package flagenv

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestApply(t *testing.T) {
	env := map[string]string{"P_ADDR": ":1", "P_TOKEN_TTL": "2s", "P_COUNT": "x"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		name    string
		args    []string
		drop    string // variable removed for this case
		addr    string
		set     []string
		wantErr string
	}{
		{name: "variables fill unset flags", args: nil, drop: "P_COUNT", addr: ":1", set: []string{"addr", "token-ttl"}},
		{name: "the command line wins", args: []string{"--addr", ":9"}, drop: "P_COUNT", addr: ":9", set: []string{"addr", "token-ttl"}},
		{name: "a bad value names the variable", args: nil, wantErr: "P_COUNT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			saved, had := env[tc.drop]
			delete(env, tc.drop)
			defer func() {
				if had {
					env[tc.drop] = saved
				}
			}()
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			addr := fs.String("addr", ":0", "")
			fs.Duration("token-ttl", 0, "")
			fs.Int("count", 0, "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			set, err := Apply(fs, "P_", lookup)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Apply = %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || *addr != tc.addr {
				t.Fatalf("Apply = %v, addr %q; want nil, %q", err, *addr, tc.addr)
			}
			for _, n := range tc.set {
				if !set[n] {
					t.Errorf("%s not reported as set", n)
				}
			}
			if set["count"] {
				t.Error("count reported as set")
			}
		})
	}
}
