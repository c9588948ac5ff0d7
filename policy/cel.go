package policy

import (
	"errors"
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// CostLimit bounds one evaluation of a condition, in CEL's cost units (about
// one per operation and per element a comprehension visits): a condition
// that would cost more is an error, and the request is denied.
const CostLimit = 100_000

// Env is the CEL environment of conditions. It declares:
//
//	request.method, request.path, request.host, request.scheme  string
//	request.headers                                           map(string, string), lower-case names
//	claims                                                    map(string, dyn), the verified claims
//	scopes                                                    list(string), the granted scopes
//	source.address, source.principal                          string
//	context                                                   map(string, string), Envoy's context_extensions
type Env struct{ env *cel.Env }

// NewEnv returns the environment conditions are compiled in. request and
// source are declared field by field (request.method, ...), so that an
// evaluation reads the request's own values without building a map.
func NewEnv() (*Env, error) {
	env, err := cel.NewEnv(
		cel.Variable("request.method", cel.StringType),
		cel.Variable("request.path", cel.StringType),
		cel.Variable("request.host", cel.StringType),
		cel.Variable("request.scheme", cel.StringType),
		cel.Variable("request.headers", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("scopes", cel.ListType(cel.StringType)),
		cel.Variable("source.address", cel.StringType),
		cel.Variable("source.principal", cel.StringType),
		cel.Variable("context", cel.MapType(cel.StringType, cel.StringType)),
	)
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	return &Env{env: env}, nil
}

// maxInputSize bounds the size of every variable-length input of a
// condition: a list, map or string from a token (at most a few KiB) or a
// request header block (64 KiB by default). It makes the static cost
// estimate finite.
const maxInputSize = 64 << 10

// sizeBound is the cost estimator's view of the inputs: nothing is larger
// than maxInputSize.
type sizeBound struct{}

func (sizeBound) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: maxInputSize}
}

func (sizeBound) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// condition is a compiled CEL condition.
type condition struct {
	src string
	prg cel.Program
}

// compile parses and type-checks src, which must yield a bool (or a dynamic
// value, checked at evaluation).
func (e *Env) compile(src string) (*condition, error) {
	ast, iss := e.env.Compile(src)
	if iss.Err() != nil {
		return nil, errors.New(iss.Err().Error())
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("%q yields %s, not bool", src, t)
	}
	// A condition whose worst case, over inputs of any size up to
	// maxInputSize, stays within CostLimit runs without cost tracking (a
	// third of a simple condition's time); any other is tracked and stopped
	// at the limit.
	var opts []cel.ProgramOption
	if est, err := e.env.EstimateCost(ast, sizeBound{}); err != nil || est.Max > CostLimit {
		opts = append(opts, cel.CostLimit(CostLimit))
	}
	prg, err := e.env.Program(ast, opts...)
	if err != nil {
		return nil, err
	}
	return &condition{src: src, prg: prg}, nil
}

// errNotBool is the evaluation error of a condition that yields no bool.
var errNotBool = errors.New("the condition did not yield a bool")

// eval evaluates the condition against in: an error (a missing key, a
// type mismatch, the cost limit) or a result that is not a bool is an
// error, which denies.
func (c *condition) eval(in *Input) (bool, error) {
	out, _, err := c.prg.Eval(activation{in: in})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errNotBool
	}
	return b, nil
}

// activation resolves the variables from an Input, building each only when
// the condition reads it.
type activation struct{ in *Input }

var emptyStrings = map[string]string{}

func (a activation) ResolveName(name string) (any, bool) {
	in := a.in
	switch name {
	case "request.method":
		return in.Request.Method, true
	case "request.path":
		return in.Request.Path, true
	case "request.host":
		return in.Request.Host, true
	case "request.scheme":
		return in.Request.Scheme, true
	case "request.headers":
		if in.Request.Headers == nil {
			return emptyStrings, true
		}
		return in.Request.Headers, true
	case "claims":
		if in.Claims == nil {
			return map[string]any{}, true
		}
		return in.Claims, true
	case "scopes":
		if in.Scopes == nil {
			return []string{}, true
		}
		return in.Scopes, true
	case "source.address":
		return in.Source.Address, true
	case "source.principal":
		return in.Source.Principal, true
	case "context":
		if in.Context == nil {
			return emptyStrings, true
		}
		return in.Context, true
	}
	return nil, false
}

func (activation) Parent() interpreter.Activation { return nil }
