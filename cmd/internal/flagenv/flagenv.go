// Package flagenv owns the demo programs' "flag, then environment variable"
// convention: every flag NAME may also be set by PREFIX_NAME (upper case,
// dashes as underscores), and the command line wins.
package flagenv

import (
	"flag"
	"fmt"
	"strings"
)

// Name maps a flag name to its variable: Name("IDP_", "token-ttl") is
// "IDP_TOKEN_TTL".
func Name(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Apply sets each flag of the parsed fs that the command line did not set
// from its variable, when lookup finds one. It returns the names of the flags
// set either way, and the first value a flag refused, naming the variable.
func Apply(fs *flag.FlagSet, prefix string, lookup func(string) (string, bool)) (map[string]bool, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := lookup(Name(prefix, f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", Name(prefix, f.Name), e)
				return
			}
			set[f.Name] = true
		}
	})
	return set, err
}
