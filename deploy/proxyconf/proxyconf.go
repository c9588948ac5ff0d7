package proxyconf

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"github.com/extauthz/extauthz/deploy/caddy"
	"github.com/extauthz/extauthz/deploy/nginx"
)

// Defaults shared by both proxies, matching the binaries' default ports.
const (
	DefaultListen  = "127.0.0.1:8080"
	DefaultBackend = "127.0.0.1:8000"
	DefaultAuthz   = "127.0.0.1:9192"
)

// DefaultClaimHeaders are the ext_authz server's claim headers when its
// config sets no claim_headers.
var DefaultClaimHeaders = []string{"X-Jwt-Sub", "X-Jwt-Payload"}

// ErrInvalid is wrapped by every error RenderNginx and RenderCaddy return for
// a value they refuse to substitute.
var ErrInvalid = errors.New("proxyconf: invalid value")

// Nginx holds the values substituted into deploy/nginx/nginx.conf.tmpl. The
// zero value renders the committed deploy/nginx/nginx.conf.
type Nginx struct {
	// Listen is the address nginx accepts clients on, host:port. An empty
	// host listens on all interfaces. Defaults to 127.0.0.1:8080.
	Listen string
	// Backend is the upstream that allowed requests go to, host:port.
	// Defaults to 127.0.0.1:8000.
	Backend string
	// Authz is the ext_authz server's HTTP forward-auth address, host:port.
	// Defaults to 127.0.0.1:9192.
	Authz string
	// ClaimHeaders are the headers copied from the check's 200 answer to the
	// upstream request, overwriting (or, when the answer lacks one,
	// removing) any client-sent header of the same name. Names are
	// letters, digits and dashes. Defaults to DefaultClaimHeaders.
	//
	// List every header of the server's claim_headers. Core nginx cannot
	// delete headers by prefix, so these are the only claim headers the
	// config protects (unless HeadersMoreModule is set): a claim header the
	// server sets but this list lacks reaches the backend with the value
	// the client sent, if any.
	ClaimHeaders []string
	// HeadersMoreModule is the absolute path of the third-party headers-more
	// module, ngx_http_headers_more_filter_module.so (Debian and Ubuntu
	// package libnginx-mod-http-headers-more-filter installs it in
	// /usr/lib/nginx/modules). When set, the config loads it and deletes
	// every client-sent X-Jwt-* header, and each claim header outside that
	// prefix, before the check, as the Caddyfile does; a claim header
	// missing from ClaimHeaders then cannot be forged either. Empty, the
	// default, needs core nginx only.
	HeadersMoreModule string
	// StateDir is an absolute directory for the pid file and the temp
	// directories; it must exist. Empty means relative to nginx's -p
	// prefix.
	StateDir string
	// ErrorLog is "stderr" or an absolute file path. Defaults to "stderr".
	ErrorLog string
	// AccessLog is "off", "/dev/stdout" or an absolute file path. Defaults to
	// "/dev/stdout".
	AccessLog string
}

// Caddy holds the values substituted into deploy/caddy/Caddyfile.tmpl. The
// zero value renders the committed deploy/caddy/Caddyfile.
type Caddy struct {
	// Listen is the address Caddy accepts clients on, host:port. A host
	// becomes a "bind" directive; an empty host listens on all interfaces.
	// Defaults to 127.0.0.1:8080.
	Listen string
	// Backend is the upstream that allowed requests go to, host:port.
	// Defaults to 127.0.0.1:8000.
	Backend string
	// Authz is the ext_authz server's HTTP forward-auth address, host:port.
	// Defaults to 127.0.0.1:9192.
	Authz string
	// ClaimHeaders are the headers copied from the check's 2xx answer to the
	// upstream request; client-sent headers of these names (and of the
	// X-Jwt-* prefix) are always deleted first, and Connection options
	// naming them are dropped. List every header of the server's
	// claim_headers: others are not copied. Defaults to
	// DefaultClaimHeaders.
	ClaimHeaders []string
	// StorageDir is an absolute directory for Caddy's storage (certificates,
	// locks). Empty means Caddy's default ($XDG_DATA_HOME/caddy).
	StorageDir string
}

// header is a claim header as the templates need it.
type header struct {
	Name        string // X-Jwt-Sub
	Var         string // x_jwt_sub, the nginx variable suffix
	Underscored string // X_Jwt_Sub
	JwtPrefixed bool   // covered by the X-Jwt-* strip in the Caddyfile
}

type nginxView struct {
	Listen, Backend, Authz       string
	ClaimHeaders                 []header
	HeadersMoreModule            string
	PIDFile, ErrorLog, AccessLog string
	stateDir                     string
}

// TempPath is the nginx *_temp_path for kind (client_body, proxy, ...).
func (v nginxView) TempPath(kind string) string {
	if v.stateDir == "" {
		return kind + "_temp"
	}
	return filepath.Join(v.stateDir, kind+"_temp")
}

type caddyView struct {
	Listen, SiteAddress, BindHost, Backend, Authz string
	ClaimHeaders                                  []header
	StorageDir                                    string
	// ConnectionOptionRegexp matches, in one value of a Connection header,
	// each connection option that names a claim header, with the comma
	// before it (kept through "$1").
	ConnectionOptionRegexp string
}

var (
	nginxTmpl = template.Must(template.New("nginx.conf").Option("missingkey=error").Parse(nginx.Template))
	caddyTmpl = template.Must(template.New("Caddyfile").Option("missingkey=error").Parse(caddy.Template))

	// Conservative character sets: whatever passes cannot end a directive,
	// open a block, start a variable or a comment in either config language.
	hostRe   = regexp.MustCompile(`^[A-Za-z0-9.:-]*$`)
	headerRe = regexp.MustCompile(`^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$`)
	pathRe   = regexp.MustCompile(`^/[A-Za-z0-9._/+@=-]*$`)
)

// RenderNginx returns nginx.conf for c. It rejects (with an error wrapping
// ErrInvalid) any value that is not a plain address, path or header name,
// so a value cannot inject directives.
func RenderNginx(c Nginx) ([]byte, error) {
	v := nginxView{ErrorLog: "stderr", AccessLog: "/dev/stdout", PIDFile: "nginx.pid"}
	var errs []error
	var err error
	if v.Listen, err = listenAddr(or(c.Listen, DefaultListen)); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	} else if h, p, _ := net.SplitHostPort(v.Listen); h == "" {
		v.Listen = p // nginx: "listen 8080" is all interfaces
	}
	if v.Backend, err = upstreamAddr(or(c.Backend, DefaultBackend)); err != nil {
		errs = append(errs, fmt.Errorf("backend: %w", err))
	}
	if v.Authz, err = upstreamAddr(or(c.Authz, DefaultAuthz)); err != nil {
		errs = append(errs, fmt.Errorf("authz: %w", err))
	}
	if v.ClaimHeaders, err = claimHeaders(c.ClaimHeaders); err != nil {
		errs = append(errs, fmt.Errorf("claim headers: %w", err))
	}
	if c.HeadersMoreModule != "" {
		if err := absPath(c.HeadersMoreModule); err != nil {
			errs = append(errs, fmt.Errorf("headers-more module: %w", err))
		} else if !strings.HasSuffix(c.HeadersMoreModule, ".so") {
			errs = append(errs, fmt.Errorf("headers-more module: %w: %q does not end in .so", ErrInvalid, c.HeadersMoreModule))
		}
		v.HeadersMoreModule = c.HeadersMoreModule
	}
	if c.StateDir != "" {
		if err := absPath(c.StateDir); err != nil {
			errs = append(errs, fmt.Errorf("state dir: %w", err))
		}
		v.stateDir = filepath.Clean(c.StateDir)
		v.PIDFile = filepath.Join(v.stateDir, "nginx.pid")
	}
	if c.ErrorLog != "" && c.ErrorLog != "stderr" {
		if err := absPath(c.ErrorLog); err != nil {
			errs = append(errs, fmt.Errorf("error log: %w", err))
		}
		v.ErrorLog = c.ErrorLog
	}
	if c.AccessLog != "" && c.AccessLog != "off" {
		if err := absPath(c.AccessLog); err != nil {
			errs = append(errs, fmt.Errorf("access log: %w", err))
		}
		v.AccessLog = c.AccessLog
	} else if c.AccessLog == "off" {
		v.AccessLog = "off"
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := nginxTmpl.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("proxyconf: render nginx.conf: %w", err)
	}
	return buf.Bytes(), nil
}

// RenderCaddy returns the Caddyfile for c. It rejects (with an error wrapping
// ErrInvalid) any value that is not a plain address, path or header name.
func RenderCaddy(c Caddy) ([]byte, error) {
	var v caddyView
	var errs []error
	var err error
	if v.Listen, err = listenAddr(or(c.Listen, DefaultListen)); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	} else {
		h, p, _ := net.SplitHostPort(v.Listen)
		v.SiteAddress, v.BindHost = ":"+p, h
	}
	if v.Backend, err = upstreamAddr(or(c.Backend, DefaultBackend)); err != nil {
		errs = append(errs, fmt.Errorf("backend: %w", err))
	}
	if v.Authz, err = upstreamAddr(or(c.Authz, DefaultAuthz)); err != nil {
		errs = append(errs, fmt.Errorf("authz: %w", err))
	}
	if v.ClaimHeaders, err = claimHeaders(c.ClaimHeaders); err != nil {
		errs = append(errs, fmt.Errorf("claim headers: %w", err))
	}
	v.ConnectionOptionRegexp = connectionOptionRegexp(v.ClaimHeaders)
	if c.StorageDir != "" {
		if err := absPath(c.StorageDir); err != nil {
			errs = append(errs, fmt.Errorf("storage dir: %w", err))
		}
		v.StorageDir = filepath.Clean(c.StorageDir)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := caddyTmpl.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("proxyconf: render Caddyfile: %w", err)
	}
	return buf.Bytes(), nil
}

// NginxArgs returns the arguments that run nginx in the foreground (the
// config sets "daemon off") with the config file conf and the prefix
// directory prefix, against which relative paths in the config resolve.
// "-e stderr" keeps nginx from opening its compiled-in error log before it
// has read the config (nginx 1.19.5+). Append "-t" to only test the config.
func NginxArgs(conf, prefix string) []string {
	return []string{"-e", "stderr", "-p", strings.TrimSuffix(prefix, "/") + "/", "-c", conf}
}

// CaddyArgs returns the arguments for a caddy subcommand ("run", "validate"
// or "adapt") on the Caddyfile conf.
func CaddyArgs(subcommand, conf string) []string {
	return []string{subcommand, "--config", conf, "--adapter", "caddyfile"}
}

// CaddyEnv returns environment entries that keep Caddy's config, data and
// home directories inside dir, for running it from tests without touching
// the user's own Caddy state.
func CaddyEnv(dir string) []string {
	return []string{
		"HOME=" + dir,
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func splitAddr(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %w", ErrInvalid, addr, err)
	}
	if !hostRe.MatchString(host) {
		return "", "", fmt.Errorf("%w: host %q", ErrInvalid, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", "", fmt.Errorf("%w: port %q (want 1-65535)", ErrInvalid, port)
	}
	return host, port, nil
}

// listenAddr accepts "host:port" and ":port".
func listenAddr(addr string) (string, error) {
	host, port, err := splitAddr(addr)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, port), nil
}

// upstreamAddr accepts "host:port" with a non-empty host.
func upstreamAddr(addr string) (string, error) {
	host, port, err := splitAddr(addr)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", fmt.Errorf("%w: %q has no host", ErrInvalid, addr)
	}
	return net.JoinHostPort(host, port), nil
}

func absPath(p string) error {
	if !pathRe.MatchString(p) || strings.Contains(p, "..") {
		return fmt.Errorf("%w: path %q (want an absolute path of letters, digits and ._/+@=-)", ErrInvalid, p)
	}
	return nil
}

// connectionOptionRegexp returns the RE2 pattern that the Caddyfile uses to
// drop from a Connection header value every option naming a claim header:
// any option starting with x-jwt- or x_jwt_ (in any mix of "-" and "_"),
// or with the name of a claim header outside that prefix, in any case and
// after optional whitespace. Caddy's reverse_proxy removes the headers named
// in Connection (RFC 9110 section 7.6.1) when it forwards, which would
// otherwise remove the verified claim headers set by the check. Header
// names are letters, digits and dashes, so they need no quoting.
func connectionOptionRegexp(hs []header) string {
	alts := []string{`x[-_]jwt[-_]`}
	for _, h := range hs {
		if !h.JwtPrefixed {
			alts = append(alts, strings.ReplaceAll(strings.ToLower(h.Name), "-", "[-_]"))
		}
	}
	return `(?i)(^|,)[[:space:]]*(` + strings.Join(alts, "|") + `)[^,]*`
}

func claimHeaders(names []string) ([]header, error) {
	if names == nil {
		names = DefaultClaimHeaders
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no claim headers", ErrInvalid)
	}
	seen := map[string]bool{}
	out := make([]header, 0, len(names))
	for _, n := range names {
		if !headerRe.MatchString(n) {
			return nil, fmt.Errorf("%w: header name %q (want letters, digits and single dashes)", ErrInvalid, n)
		}
		lower := strings.ToLower(n)
		if seen[lower] {
			return nil, fmt.Errorf("%w: header %q listed twice", ErrInvalid, n)
		}
		seen[lower] = true
		out = append(out, header{
			Name:        n,
			Var:         strings.ReplaceAll(lower, "-", "_"),
			Underscored: strings.ReplaceAll(n, "-", "_"),
			JwtPrefixed: strings.HasPrefix(lower, "x-jwt-"),
		})
	}
	return out, nil
}
