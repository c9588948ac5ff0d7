// Package redact removes secrets from values before they reach a log line,
// an error, a metric or a status page. No program outside this module may
// import it.
package redact
