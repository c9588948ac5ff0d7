// Package config owns the server's settings: it reads command-line flags,
// AUTHZ_* environment variables (a .env file included), the seed guide's
// AUTHACTION_* variables and a YAML file, applies them in that order of
// precedence over the defaults, and validates the result, so that a bad
// setting stops the server at start with a message naming the flag,
// variable, or file line at fault.
//
// The package carries no API stability promise.
package config
