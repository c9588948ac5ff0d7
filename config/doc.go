// Package config owns the server's settings: it reads command-line flags,
// AUTHZ_* environment variables (a .env file included), the seed guide's
// AUTHACTION_* variables and a YAML file, applies them in that order of
// precedence over the defaults, and validates the result, so that a bad
// setting stops the server at start with a message naming the flag,
// variable, or file line at fault.
//
// Each scalar setting is one row of a table (settings.go): its name, default,
// parser, usage, and what a reload does with it. The flags, the variables,
// the file's keys, the assignment into [Config], [NeedsRestart] and
// [KeySetSettings] are derived from the rows: a new setting is one row and
// one Config field, besides the code that uses it.
//
// The package carries no API stability promise.
package config
