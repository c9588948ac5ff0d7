// Package policy owns the rule language: what a rule or a named policy may
// say (path, methods, hosts, public, deny, scopes, claims, a CEL condition),
// which combinations are refused and why, compiling them once (CEL
// type-checked at load), and evaluating a rule's requirements against a
// verified token and its request.
//
// It does not route: which rule applies to a request, over every reading of
// its path, is the decision's (package authz), which asks [Compiled.Matches]
// about methods and hosts and [Compiled.Authorize] about the rest. It knows
// nothing of tokens beyond the verified claims and scopes it is given.
package policy
