// Package standin is an Envoy stand-in for machines without Envoy: a small
// reverse proxy that behaves, for the ext_authz part only, like Envoy's HTTP
// filter envoy.filters.http.ext_authz in gRPC mode with a default
// HttpConnectionManager in front of it. It is not a production proxy. Use a
// real Envoy (see envoy/) wherever one can be had.
//
// It owns three things:
//
//   - [BuildCheckRequest]: the envoy.service.auth.v3.CheckRequest Envoy would
//     send for an *http.Request (Envoy's CheckRequestUtils::createHttpCheck).
//   - [ApplyOK] and [ApplyDenied]: how Envoy applies an OkHttpResponse to the
//     request headers it forwards upstream, and how it turns a
//     DeniedHttpResponse into the local reply sent to the client
//     (Envoy's ext_authz Filter::onComplete and Utility::prepareLocalReply).
//     Other packages' tests import these to prove that a header a client
//     spoofs (say x-jwt-sub: admin) never reaches the upstream.
//   - [Proxy]: an http.Handler that checks each request with an ext_authz
//     server and then forwards it upstream, or answers for it, as Envoy would,
//     sending each route's context_extensions ([Route]) and keeping the
//     check's dynamic_metadata for an Envoy-style access log
//     (Config.AccessLog).
//
// # Envoy behaviour mirrored
//
// The behaviour was read from Envoy's source (source/extensions/filters/http/
// ext_authz/ext_authz.cc, source/extensions/filters/common/ext_authz/
// ext_authz_grpc_impl.cc and check_request_utils.cc, source/common/http/
// conn_manager_utility.cc, header_map_impl.cc and utility.cc). In short:
//
//   - Before the check, the connection manager drops connection, upgrade,
//     keep-alive, proxy-connection, transfer-encoding and x-envoy-internal
//     and a list of x-envoy-* control headers, adds x-forwarded-proto when
//     absent, derives :scheme from it, and adds an x-request-id when absent.
//   - The CheckRequest carries every remaining header, lower-cased, the
//     pseudo-headers :authority, :method, :path and :scheme included, with
//     repeated headers joined by ",", and values made valid UTF-8 ("!" for
//     bad bytes). size is the number of body bytes received so far, which is
//     0 because the stand-in, like Envoy without with_request_body, checks on
//     the headers alone. request.http.host is :authority, source.address
//     the client's address, and context_extensions the check_settings of
//     the request's route (Envoy's ExtAuthzPerRoute), as the extauthz
//     server's named policies expect.
//   - An OK status applies OkHttpResponse.headers in order, then
//     headers_to_remove (which can never remove a pseudo-header or host), then
//     query_parameters_to_set and query_parameters_to_remove. A set deprecated
//     append field wins over append_action. response_headers_to_add are
//     applied to the upstream's response.
//   - Whatever the status, a CheckResponse's dynamic_metadata (or the
//     deprecated OkHttpResponse.dynamic_metadata, which wins) goes into the
//     stream's dynamic metadata under the namespace
//     "envoy.filters.http.ext_authz" ([ExtAuthzNamespace]), where the
//     access log reads it: %DYNAMIC_METADATA(envoy.filters.http.ext_authz:sub)%.
//     An OK answer's metadata also gets ext_authz_duration (ms).
//   - Any other status is a denial: the client gets DeniedHttpResponse's
//     status (403 when unset), headers and body, and the upstream is never
//     contacted. An ErrorResponse, an RPC error, a timeout (200ms by default)
//     or an unreachable server is an error: the client gets
//     Config.StatusOnError (403 by default) unless Config.FailureModeAllow.
//
// # Settings
//
// [Config] defaults are Envoy's defaults (timeout 200ms, status_on_error 403,
// failure_mode_allow false, use_remote_address false, no path
// normalisation). envoy/envoy.yaml changes several of them; the Config
// fields named after those settings (Timeout, StatusOnError,
// UseRemoteAddress, NormalizePath, DropHeadersWithUnderscores,
// DisallowedHeaders) let the stand-in play that Envoy; see the example for
// [New].
//
// # Where it differs from Envoy
//
// It always validates mutations, as Envoy does with validate_mutations: true:
// an invalid header name or value, an unknown append_action, or a bad
// pseudo-header value makes it answer 500 without contacting the upstream,
// because net/http cannot send what Envoy's codecs would also refuse. A
// mutation of "host" is applied to :authority. Path normalisation is the RFC
// 3986 subset described at Config.NormalizePath, not Chromium's full
// canonicaliser. gRPC clients get plain HTTP local replies, not gRPC ones.
// It has no real route table and no other filters: one upstream, a list of
// path prefixes on which the check is disabled, and a list of
// path_separated_prefix routes for their context_extensions; in particular
// it does not model envoy/envoy.yaml's header_mutation filter that strips
// client x-jwt-* headers, so it tests the ext_authz server's own
// anti-spoofing. Its access log knows a handful of Envoy's command
// operators (see Config.AccessLogFormat) and refuses the others. On
// the way upstream, net/http's reverse proxy also drops Te, Trailer and
// Proxy-Authorization/-Authenticate, which Envoy would forward, and the
// stand-in adds none of the router's x-envoy-* headers.
//
// Envoy releases disagree on OkHttpResponse.headers: up to 1.36 they ignore
// append_action (an unset append overwrites), 1.37.0 honoured it with an
// unset action meaning "add another value" (envoyproxy/envoy#43310, reverted
// in #43442), and the current source honours it again. The stand-in follows
// the current source, the strictest reading for anti-spoofing tests: an
// ext_authz server that wants to replace a client's header must say so with
// append_action OVERWRITE_IF_EXISTS_OR_ADD (or append: false), which every
// release honours.
//
// This package carries no stability promise.
package standin
