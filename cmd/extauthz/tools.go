package main

// The operators' subcommands: explain and validate. Both load the
// configuration exactly as the server does (flags, AUTHZ_* variables, .env,
// the file) and use the server package's own Explain and Validate.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/server"
)

// stdin is where explain reads a token given as "-".
var stdin io.Reader = os.Stdin

// toolArgs splits a subcommand's arguments into its own flags (in own, by
// name, each taking a value unless listed in switches), the server's flags
// (for config.Load) and the positional arguments.
func toolArgs(args []string, own map[string]bool) (mine map[string][]string, cfgArgs, positional []string, err error) {
	mine = map[string][]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-" || !strings.HasPrefix(a, "-") {
			positional = append(positional, a)
			continue
		}
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if takes, ok := own[name]; ok {
			switch {
			case !takes && hasValue:
				mine[name] = append(mine[name], value)
			case !takes:
				mine[name] = append(mine[name], "true")
			case hasValue:
				mine[name] = append(mine[name], value)
			case i+1 < len(args):
				i++
				mine[name] = append(mine[name], args[i])
			default:
				return nil, nil, nil, fmt.Errorf("--%s needs a value", name)
			}
			continue
		}
		cfgArgs = append(cfgArgs, a)
		if takes, known := config.FlagTakesValue(name); known && takes && !hasValue && i+1 < len(args) {
			i++
			cfgArgs = append(cfgArgs, args[i])
		}
	}
	return mine, cfgArgs, positional, nil
}

func last(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

const explainUsage = `Usage: extauthz explain [server flags or --config FILE] [--method GET] [--path /x] [--host h]
       [--header 'Name: value' ...] [--context key=value ...] [--client-cert FILE] [--jwks-file FILE]
       [--timeout 10s] [--json] [TOKEN | - | --token-file FILE]

Makes the decision the server would make for one request, with every step:
the token decoded (never its signature), the provider, key, signature, time
claims and audience, every reading of the path and the rule it meets, the
scopes and conditions, and the outcome. Exit 0 on allow, 1 on deny, 2 on a
usage or configuration error. Without a token it explains the request
without credentials. A DPoP proof goes in --header 'DPoP: ...' (the token is
then sent with the DPoP scheme); --client-cert names the PEM certificate the
client presented to the proxy, for a certificate-bound token.
`

// explain is "extauthz explain".
func explain(ctx context.Context, args []string, env config.Lookup, stdout, stderr io.Writer) int {
	own := map[string]bool{"method": true, "path": true, "host": true, "header": true, "context": true, "json": false,
		"token-file": true, "jwks-file": true, "timeout": true, "client-cert": true, "h": false, "help": false}
	mine, cfgArgs, pos, err := toolArgs(args, own)
	usage := func(err error) int {
		fmt.Fprintln(stderr, "extauthz explain:", err)
		fmt.Fprint(stderr, explainUsage)
		return 2
	}
	if err != nil {
		return usage(err)
	}
	if mine["h"] != nil || mine["help"] != nil {
		fmt.Fprint(stdout, explainUsage)
		return 0
	}
	if len(pos) > 1 {
		return usage(fmt.Errorf("one token at most, got %d arguments", len(pos)))
	}
	var token string
	switch {
	case len(pos) == 1 && pos[0] == "-":
		b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return usage(err)
		}
		token = strings.TrimSpace(string(b))
	case len(pos) == 1:
		token = pos[0]
	case last(mine["token-file"]) != "":
		b, err := os.ReadFile(last(mine["token-file"]))
		if err != nil {
			return usage(err)
		}
		token = strings.TrimSpace(string(b))
	}
	token = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(token, "Bearer "), "bearer "))
	req := server.ExplainRequest{Method: last(mine["method"]), Path: last(mine["path"]), Host: last(mine["host"]), Token: token}
	if req.Path == "" {
		req.Path = "/"
	}
	for _, h := range mine["header"] {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return usage(fmt.Errorf("--header %q is not 'Name: value'", h))
		}
		if req.Headers == nil {
			req.Headers = map[string]string{}
		}
		req.Headers[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
	}
	if f := last(mine["client-cert"]); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return usage(err)
		}
		req.Certificate = url.QueryEscape(string(b)) // as Envoy's source.certificate
	}
	for _, kv := range mine["context"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return usage(fmt.Errorf("--context %q is not key=value", kv))
		}
		if req.ContextExtensions == nil {
			req.ContextExtensions = map[string]string{}
		}
		req.ContextExtensions[k] = v
	}
	timeout := 10 * time.Second
	if t := last(mine["timeout"]); t != "" {
		if timeout, err = time.ParseDuration(t); err != nil || timeout <= 0 {
			return usage(fmt.Errorf("--timeout %q is not a positive duration", t))
		}
	}
	cfg, err := config.Load(cfgArgs, env, io.Discard)
	if err != nil {
		fmt.Fprintln(stderr, "extauthz explain:", err)
		return 2
	}
	e, err := server.Explain(ctx, cfg, req, server.ToolOptions{JWKSFile: last(mine["jwks-file"]), Timeout: timeout})
	if err != nil {
		fmt.Fprintln(stderr, "extauthz explain:", err)
		return 2
	}
	if last(mine["json"]) == "true" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(e)
	} else {
		printExplanation(stdout, e)
	}
	if e.Outcome.Allowed {
		return 0
	}
	return 1
}

func printExplanation(w io.Writer, e *server.Explanation) {
	fmt.Fprintf(w, "request: %s %s", e.Request.Method, e.Request.Path)
	if e.Request.Host != "" {
		fmt.Fprintf(w, " (host %s)", e.Request.Host)
	}
	fmt.Fprintln(w)
	if e.Token != nil {
		state := "unverified"
		if e.Token.Verified {
			state = "verified"
		}
		h, _ := json.Marshal(e.Token.Header)
		c, _ := json.Marshal(e.Token.Claims)
		fmt.Fprintf(w, "token (%s; the signature is not shown):\n  header: %s\n  claims: %s\n", state, h, c)
	} else {
		fmt.Fprintln(w, "token: none")
	}
	fmt.Fprintln(w, "steps:")
	for _, s := range e.Steps {
		mark := "ok  "
		if !s.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %-9s %-14s %s\n", mark, s.Stage, s.Check, s.Detail)
	}
	o := e.Outcome
	verdict := "allow"
	switch {
	case o.Shadow:
		verdict = "allow (shadow: the denial below is not enforced)"
	case !o.Allowed:
		verdict = "deny"
	}
	fmt.Fprintf(w, "outcome: %s, %d %s\n", verdict, o.Status, o.Reason)
	if o.Challenge != "" {
		fmt.Fprintf(w, "  WWW-Authenticate: %s\n", o.Challenge)
	}
	if o.Body != "" {
		fmt.Fprintf(w, "  body: %s\n", o.Body)
	}
	for _, h := range o.Set {
		fmt.Fprintf(w, "  set %s: %s\n", h.Name, h.Value)
	}
	if len(o.Remove) > 0 {
		fmt.Fprintf(w, "  remove: %s\n", strings.Join(o.Remove, ", "))
	}
}

const validateUsage = `Usage: extauthz validate [server flags or --config FILE] [--fetch] [--timeout 10s]

Loads and checks a configuration as the server's start would (flags,
AUTHZ_* variables, .env, the file; every rule, policy and condition
compiled, every key cache made). With --fetch it also fetches every key set
once and reports each provider's keys. Exit 0 when the server would start,
1 when it would not (errors in the file name file:line), 2 on a usage error.
`

// validate is "extauthz validate".
func validate(ctx context.Context, args []string, env config.Lookup, stdout, stderr io.Writer) int {
	mine, cfgArgs, pos, err := toolArgs(args, map[string]bool{"fetch": false, "timeout": true, "h": false, "help": false})
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected argument %q", pos[0])
	}
	if err != nil {
		fmt.Fprintln(stderr, "extauthz validate:", err)
		fmt.Fprint(stderr, validateUsage)
		return 2
	}
	if mine["h"] != nil || mine["help"] != nil {
		fmt.Fprint(stdout, validateUsage)
		return 0
	}
	timeout := 10 * time.Second
	if t := last(mine["timeout"]); t != "" {
		if timeout, err = time.ParseDuration(t); err != nil || timeout <= 0 {
			fmt.Fprintf(stderr, "extauthz validate: --timeout %q is not a positive duration\n", t)
			return 2
		}
	}
	cfg, err := config.Load(cfgArgs, env, io.Discard)
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "extauthz validate:", err)
		return 1
	}
	fetch := last(mine["fetch"]) == "true"
	keys, err := server.Validate(ctx, cfg, fetch, server.ToolOptions{Timeout: timeout})
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
	for _, k := range keys {
		if k.Error != "" {
			fmt.Fprintf(stdout, "provider %s: %d keys, last error: %s\n", k.Name, k.Keys, k.Error)
		} else {
			fmt.Fprintf(stdout, "provider %s: %d keys\n", k.Name, k.Keys)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "extauthz validate:", err)
		return 1
	}
	where := "flags and environment"
	if cfg.File != "" {
		where = cfg.File
	}
	fmt.Fprintf(stdout, "ok: the configuration (%s) would start: %d providers, %d rules, %d policies\n",
		where, len(cfg.Providers), len(cfg.Rules), len(cfg.Policies))
	return 0
}
