package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Lookup finds a claim by path: an exact name wins, otherwise dots descend
// into nested objects, trying longer names first where a name itself holds
// dots ("https://example.com/roles").
func Lookup(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	head, rest, found := strings.Cut(path, ".")
	for found {
		if v, ok := m[head].(map[string]any); ok {
			if x, ok := Lookup(v, rest); ok {
				return x, true
			}
		}
		// A key may itself contain dots ("https://example.com/x.y"): try a
		// longer head.
		var more string
		more, rest, found = strings.Cut(rest, ".")
		head = head + "." + more
	}
	return nil, false
}

// Normalize returns v with every json.Number replaced by an int64 (when it
// is a whole number that fits) or a float64, in new maps and slices, so that
// claims compare and reach CEL with JSON's types: a number, a string, a
// bool, null, a list, an object.
func Normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = Normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Normalize(e)
		}
		return out
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return float64(x)
	case float32:
		return float64(x)
	}
	return v
}

// claimRequirementOf checks a configured claim requirement: a scalar or a
// list of scalars.
func claimRequirementOf(path string, want any) (claimRequirement, error) {
	if path == "" {
		return claimRequirement{}, fmt.Errorf("claims: an empty claim path")
	}
	var list []any
	switch w := Normalize(want).(type) {
	case []any:
		if len(w) == 0 {
			return claimRequirement{}, fmt.Errorf("claims: %s: an empty list can never hold", path)
		}
		list = w
	default:
		list = []any{w}
	}
	for _, v := range list {
		switch v.(type) {
		case string, bool, int64, float64:
		default:
			return claimRequirement{}, fmt.Errorf("claims: %s: %v is not a string, number or boolean", path, v)
		}
	}
	return claimRequirement{path: path, oneOf: list}, nil
}

// holds reports whether the normalised claims satisfy the requirement: the
// claim equals one of the values, or, an array, contains one of them.
func (r claimRequirement) holds(claims map[string]any) bool {
	v, ok := Lookup(claims, r.path)
	if !ok {
		return false
	}
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if r.equalsOne(e) {
				return true
			}
		}
		return false
	}
	return r.equalsOne(v)
}

func (r claimRequirement) equalsOne(v any) bool {
	for _, w := range r.oneOf {
		if scalarEqual(v, w) {
			return true
		}
	}
	return false
}

// scalarEqual compares JSON scalars with their types: true is not "true",
// 1 is not "1"; numbers compare by value (1 equals 1.0).
func scalarEqual(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case int64:
		switch y := b.(type) {
		case int64:
			return x == y
		case float64:
			return float64(x) == y
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return x == float64(y)
		case float64:
			return x == y
		}
	}
	return false
}
