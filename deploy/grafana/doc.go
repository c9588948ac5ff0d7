// Package grafana holds the Grafana dashboard for the ext_authz server's
// Prometheus metrics, extauthz-dashboard.json (schema 39; import it in
// Grafana and pick a Prometheus data source). Its tests check that every
// query names only metrics the server registers.
//
// The package has no logic. It carries no stability promise.
package grafana
