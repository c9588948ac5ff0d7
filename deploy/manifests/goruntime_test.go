package manifests_test

// The Go runtime's soft memory limit, as the manifests leave it to the
// server: the binary's own share of the cgroup limit, read from its source.

import (
	"errors"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"math"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// serverMainFile is cmd/extauthz's main.go, relative to this package. It
// declares memLimitRatio, the share of the container's memory limit the
// server gives the Go runtime when GOMEMLIMIT is unset (automemlimit).
const serverMainFile = "../../cmd/extauthz/main.go"

// serverMemLimitRatio reads memLimitRatio from the server's source, so that
// the manifests are checked against what the binary does, not a copy of it.
var serverMemLimitRatio = sync.OnceValues(func() (float64, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, serverMainFile, nil, parser.SkipObjectResolution)
	if err != nil {
		return 0, err
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if name.Name != "memLimitRatio" || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					return 0, fmt.Errorf("%s: memLimitRatio is not a literal", serverMainFile)
				}
				r, _ := constant.Float64Val(constant.MakeFromLiteral(lit.Value, lit.Kind, 0))
				if r <= 0 || r > 1 {
					return 0, fmt.Errorf("%s: memLimitRatio %v is not in (0, 1]", serverMainFile, r)
				}
				return r, nil
			}
		}
	}
	return 0, fmt.Errorf("%s: no memLimitRatio constant", serverMainFile)
})

// checkGoMemLimit checks that the Go runtime's soft memory limit, as the
// container's environment leaves it, is the server's own share of the
// memory limit or less: GOMEMLIMIT at 100% of the limit (the downward API's
// limits.memory) leaves no headroom for what the Go heap does not count, and
// the process is OOM-killed before the collector works harder.
func checkGoMemLimit(p *problems, cw string, c *corev1.Container) {
	ratio, err := serverMemLimitRatio()
	if err != nil {
		p.addf("%s: %v", cw, err)
		return
	}
	limit, hasLimit := c.Resources.Limits[corev1.ResourceMemory]
	var goMemLimit, autoMemLimit *corev1.EnvVar
	for i, e := range c.Env {
		switch e.Name {
		case "GOMEMLIMIT":
			goMemLimit = &c.Env[i]
		case "AUTOMEMLIMIT":
			autoMemLimit = &c.Env[i]
		}
	}
	if !hasLimit {
		return // the resources check reports the missing limit
	}
	maxBytes := ratio * float64(limit.Value())
	switch {
	case goMemLimit != nil && goMemLimit.ValueFrom == nil && goMemLimit.Value == "off",
		goMemLimit == nil && autoMemLimit != nil && autoMemLimit.Value == "off":
		// No soft limit, chosen explicitly (goRuntime.memoryLimitFromContainer=false).
	case goMemLimit != nil:
		bytes, err := goMemLimitBytes(goMemLimit, c)
		switch {
		case err != nil:
			p.addf("%s: GOMEMLIMIT: %v", cw, err)
		case float64(bytes) > maxBytes:
			p.addf("%s: GOMEMLIMIT is %d bytes, %.0f%% of the memory limit %s; the server's own limit is %.0f%% of it (leave GOMEMLIMIT unset)",
				cw, bytes, 100*float64(bytes)/float64(limit.Value()), limit.String(), 100*ratio)
		case float64(bytes) < float64(limit.Value())/2:
			p.addf("%s: GOMEMLIMIT is %d bytes, under half the memory limit %s: the collector would run constantly", cw, bytes, limit.String())
		}
	case autoMemLimit != nil:
		r, err := strconv.ParseFloat(autoMemLimit.Value, 64)
		if err != nil || r <= 0 || r > ratio {
			p.addf("%s: AUTOMEMLIMIT %q is not off or a ratio in (0, %v]", cw, autoMemLimit.Value, ratio)
		}
	}
}

// goMemLimitBytes is the byte count the Go runtime reads from the container's
// GOMEMLIMIT: a literal in Go's format, or the downward API's
// ceil(limits.memory / divisor), which Go reads as bytes since it has no
// unit.
func goMemLimitBytes(e *corev1.EnvVar, c *corev1.Container) (int64, error) {
	if e.ValueFrom == nil {
		return parseGoMemLimit(e.Value)
	}
	r := e.ValueFrom.ResourceFieldRef
	if r == nil || r.Resource != "limits.memory" || (r.ContainerName != "" && r.ContainerName != c.Name) {
		return 0, errors.New("is not a literal or this container's limits.memory")
	}
	limit := c.Resources.Limits[corev1.ResourceMemory]
	div := int64(1)
	if !r.Divisor.IsZero() {
		div = r.Divisor.Value()
	}
	return (limit.Value() + div - 1) / div, nil
}

// parseGoMemLimit parses GOMEMLIMIT as the Go runtime does: a byte count
// with an optional B, KiB, MiB, GiB or TiB suffix ("off" is handled by the
// caller).
func parseGoMemLimit(s string) (int64, error) {
	orig, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a byte count with an optional B, KiB, MiB, GiB or TiB suffix", orig)
	}
	return n * mult, nil
}
