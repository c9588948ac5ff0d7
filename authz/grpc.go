package authz

import (
	"context"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Check implements Envoy's ext_authz v3 Authorization service. A decision is
// always a CheckResponse: OK with an OkHttpResponse on allow, or a non-OK
// status with a DeniedHttpResponse on deny. An RPC error is returned only when
// no decision can be made (a request without HTTP attributes, a cancelled or
// expired call); Envoy turns those into its status_on_error (403 by default),
// so they fail closed too. A panic becomes a 500 denial.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, err error) {
	defer func() {
		if p := recover(); p != nil {
			h := req.GetAttributes().GetRequest().GetHttp()
			resp, err = CheckResponse(s.recovered(ctx, "Check", p, Request{Method: h.GetMethod(), Path: h.GetPath()}, 0)), nil
		}
	}()
	h := req.GetAttributes().GetRequest().GetHttp()
	if h == nil {
		return nil, status.Error(codes.InvalidArgument, "check request has no attributes.request.http")
	}
	attrs := req.GetAttributes()
	r := Request{Method: h.GetMethod(), Path: h.GetPath(), Host: h.GetHost(), Scheme: h.GetScheme(),
		ContextExtensions: attrs.GetContextExtensions(),
		SourceAddress:     attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
		SourcePrincipal:   attrs.GetSource().GetPrincipal(),
		Certificate:       attrs.GetSource().GetCertificate(),
	}
	if hs := h.GetHeaders(); len(hs) > 0 {
		r.Headers = hs // lower-case names, as Envoy sends them
		r.HeaderNames = make([]string, 0, len(hs))
		for k, v := range hs {
			r.HeaderNames = append(r.HeaderNames, k)
			if strings.EqualFold(k, "authorization") {
				r.Authorization = append(r.Authorization, v)
			}
		}
		if p, ok := hs["dpop"]; ok {
			r.DPoP = []string{p} // repeats joined with ",": refused
		}
		if r.Path == "" {
			r.Path = hs[":path"]
		}
		if r.Host == "" {
			r.Host = hs[":authority"]
		}
	} else if hm := h.GetHeaderMap(); hm != nil {
		// Envoy sends header_map instead of headers with encode_raw_headers.
		if s.rules.needsClaims || !s.defaultSources || s.bindHeaders {
			r.Headers = make(map[string]string, len(hm.GetHeaders()))
		}
		for _, hv := range hm.GetHeaders() {
			k := strings.ToLower(hv.GetKey())
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			if r.Headers != nil {
				if old, ok := r.Headers[k]; ok {
					v = old + "," + v // as Envoy joins repeated headers
				}
				r.Headers[k] = v
			}
			r.HeaderNames = append(r.HeaderNames, k)
			if k == "authorization" {
				r.Authorization = append(r.Authorization, v)
			}
			if k == "dpop" {
				r.DPoP = append(r.DPoP, v)
			}
			if k == ":path" && r.Path == "" {
				r.Path = v
			}
			if k == ":authority" && r.Host == "" {
				r.Host = v
			}
		}
	}
	d := s.Decide(ctx, r)
	if err := ctx.Err(); err != nil {
		// The caller gave up; whatever was decided, nobody is waiting.
		return nil, status.FromContextError(err).Err()
	}
	return CheckResponse(d), nil
}

// okAlloc holds an allowed CheckResponse and the messages it points to, so
// that they are allocated together.
type okAlloc struct {
	resp        authv3.CheckResponse
	status      rpcstatus.Status
	oneof       authv3.CheckResponse_OkResponse
	ok          authv3.OkHttpResponse
	appendFalse wrapperspb.BoolValue
}

// CheckResponse renders a decision as Envoy's CheckResponse.
//
// On allow, each claim header is a HeaderValueOption that overwrites: the
// deprecated append field is set to false (older Envoys read only it) and
// append_action is OVERWRITE_IF_EXISTS_OR_ADD (newer Envoys read it when
// append is unset); an unset append with the zero append_action would append
// to the client's own copy. Headers that must not reach the upstream are in
// headers_to_remove, which Envoy applies after headers; no name is in both.
func CheckResponse(d Decision) *authv3.CheckResponse {
	if d.Allowed() {
		// One allocation for the response and its fixed parts, three for
		// the headers whatever their number: this runs on every allowed
		// check, and the garbage collector's share of a check grows with
		// the objects it leaves.
		a := new(okAlloc)
		a.ok.HeadersToRemove = d.Remove
		a.ok.QueryParametersToRemove = d.RemoveQuery
		if n := len(d.Headers); n > 0 {
			opts := make([]corev3.HeaderValueOption, n)
			vals := make([]corev3.HeaderValue, n)
			a.ok.Headers = make([]*corev3.HeaderValueOption, n)
			for i, h := range d.Headers {
				vals[i].Key, vals[i].Value = h.Name, h.Value
				opts[i].Header = &vals[i]
				opts[i].Append = &a.appendFalse // false; shared by this response's headers
				opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
				a.ok.Headers[i] = &opts[i]
			}
		}
		a.oneof.OkResponse = &a.ok
		a.resp.Status = &a.status // code 0: OK
		a.resp.HttpResponse = &a.oneof
		a.resp.DynamicMetadata = d.Metadata
		for _, h := range d.ResponseHeaders {
			a.ok.ResponseHeadersToAdd = append(a.ok.ResponseHeadersToAdd, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
		return &a.resp
	}
	denied := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(d.Status())},
		Body:   d.Body,
		Headers: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}
	if d.Detail {
		denied.Headers = append(denied.Headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: "x-extauthz-reason", Value: string(d.Reason)},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	if d.WWWAuthenticate != "" {
		denied.Headers = append(denied.Headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: "www-authenticate", Value: d.WWWAuthenticate},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, h := range d.ResponseHeaders {
		denied.Headers = append(denied.Headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(d.Reason.Code()), Message: string(d.Reason)},
		HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
		DynamicMetadata: d.Metadata,
	}
}
