package extauthz

import (
	"context"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/herald-proxy/herald/internal/grpcservice"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/router"
)

// checkStatus is the outcome of a check (Envoy's CheckStatus).
type checkStatus int

const (
	// statusOK: the request is authorized.
	statusOK checkStatus = iota
	// statusDenied: the request is denied.
	statusDenied
	// statusError: the service could not be queried (or answered 5xx).
	statusError
)

// action is how a header mutation applies (Envoy's HeaderMutationAction,
// filters/common/ext_authz/ext_authz_grpc_impl.cc).
type action int

const (
	// actAdd adds a field (addCopy): APPEND_IF_EXISTS_OR_ADD, or the
	// deprecated append: true on a response header.
	actAdd action = iota
	// actSet replaces every field of the name (setCopy):
	// OVERWRITE_IF_EXISTS_OR_ADD, or append: false.
	actSet
	// actAppend joins the value to an existing field with ","; nothing
	// happens when the request has no such field (ext_authz.cc
	// headers_to_append): the deprecated append: true on a request header.
	actAppend
	// actAddIfAbsent adds the field only when the name is absent.
	actAddIfAbsent
	// actOverwriteIfExists replaces the field only when present.
	actOverwriteIfExists
)

// mutation is one header change the service asked for.
type mutation struct {
	name, value string
	action      action
}

// response is a check result (Envoy's ExtAuthz::Response).
type response struct {
	status checkStatus
	// code and body are the denied reply's (code 403 when the service set
	// none).
	code int
	body string
	// request are the mutations of the upstream request (OK), reply those
	// of the client's response: response_headers_to_add on OK, the local
	// reply's headers on Denied.
	request, reply []mutation
	// remove are request headers to remove (OK).
	remove []string
	// querySet and queryRemove edit the :path query (OK, gRPC only).
	querySet    []hhttp.HeaderField
	queryRemove []string
}

var errorResponse = &response{status: statusError}

// checker performs one check of req (built from the request headers and
// buffered body); ctx ends with the stream. It never fails: a call that
// does is an errorResponse.
type checker interface {
	check(ctx context.Context, req *authv3.CheckRequest) *response
}

// grpcClient checks with envoy.service.auth.v3.Authorization/Check.
type grpcClient struct {
	svc    *grpcservice.Service
	client authv3.AuthorizationClient
}

func newGRPCClient(svc *grpcservice.Service) *grpcClient {
	return &grpcClient{svc: svc, client: authv3.NewAuthorizationClient(svc.Conn)}
}

// check is Envoy's GrpcClientImpl: a failed call is an error; status OK
// allows; error_response is an error; any other status denies (403 unless
// denied_response says otherwise).
func (g *grpcClient) check(ctx context.Context, req *authv3.CheckRequest) *response {
	cctx, cancel := g.svc.CallContext(ctx, defaultTimeout)
	defer cancel()
	resp, err := g.client.Check(cctx, req)
	if err != nil {
		return errorResponse
	}
	return fromCheckResponse(resp)
}

func fromCheckResponse(resp *authv3.CheckResponse) *response {
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		r := &response{status: statusOK, code: 200}
		if ok := resp.GetOkResponse(); ok != nil {
			r.request = mutations(ok.GetHeaders(), false)
			r.reply = mutations(ok.GetResponseHeadersToAdd(), true)
			r.remove = ok.GetHeadersToRemove()
			for _, q := range ok.GetQueryParametersToSet() {
				r.querySet = append(r.querySet, hhttp.HeaderField{Name: q.GetKey(), Value: q.GetValue()})
			}
			r.queryRemove = ok.GetQueryParametersToRemove()
		}
		return r
	}
	if resp.GetErrorResponse() != nil {
		// Envoy: "If error_response is present, treat it as an error and
		// not denial"; the filter answers status_on_error.
		return errorResponse
	}
	r := &response{status: statusDenied, code: 403}
	if d := resp.GetDeniedResponse(); d != nil {
		if c := int(d.GetStatus().GetCode()); c > 0 {
			r.code = c
		}
		r.reply = mutations(d.GetHeaders(), true)
		r.body = d.GetBody()
	}
	return r
}

// mutations converts HeaderValueOptions as Envoy's toHeaderMutationAction:
// the deprecated append wins over append_action; on response headers
// append: true adds a field, on request headers it appends to the value.
func mutations(opts []*corev3.HeaderValueOption, responseHeader bool) []mutation {
	if len(opts) == 0 {
		return nil
	}
	out := make([]mutation, 0, len(opts))
	for _, o := range opts {
		m := mutation{name: strings.ToLower(o.GetHeader().GetKey()), value: o.GetHeader().GetValue()}
		if m.value == "" && len(o.GetHeader().GetRawValue()) > 0 {
			m.value = string(o.GetHeader().GetRawValue())
		}
		switch a := o.GetAppend(); {
		case a != nil && a.GetValue() && responseHeader:
			m.action = actAdd
		case a != nil && a.GetValue():
			m.action = actAppend
		case a != nil:
			m.action = actSet
		default:
			switch o.GetAppendAction() {
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				m.action = actAddIfAbsent
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
				m.action = actOverwriteIfExists
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
				m.action = actSet
			default: // APPEND_IF_EXISTS_OR_ADD
				m.action = actAdd
			}
		}
		out = append(out, m)
	}
	return out
}

// httpClient checks with an HTTP service through its cluster (Envoy's
// RawHttpClientImpl, filters/common/ext_authz/ext_authz_http_impl.cc).
// Immutable.
type httpClient struct {
	async        *router.AsyncClient
	pathPrefix   string
	pathOverride string
	headersToAdd []hhttp.HeaderField
	// Matchers on the service's response header names.
	upstream, upstreamAppend, clientOnSuccess, client *keyMatcher
}

// check sends the CheckRequest's (already filtered) headers, with
// content-length the size of the body, the path prefixed or overridden,
// then headers_to_add (overwriting); a 200 allows, a 5xx or a failed
// request is an error, any other status denies with that status.
func (c *httpClient) check(ctx context.Context, req *authv3.CheckRequest) *response {
	hr := req.GetAttributes().GetRequest().GetHttp()
	body := []byte(hr.GetBody())
	if len(body) == 0 && len(hr.GetRawBody()) > 0 {
		body = hr.GetRawBody()
	}
	h := &hhttp.Headers{}
	h.Add("content-length", strconv.Itoa(len(body)))
	add := func(name, value string) {
		if name == "content-length" {
			return
		}
		if name == hhttp.Path {
			switch {
			case c.pathOverride != "":
				value = c.pathOverride
			case c.pathPrefix != "":
				value = c.pathPrefix + value
			}
		}
		h.Add(name, value)
	}
	if hm := hr.GetHeaderMap(); hm != nil {
		for _, f := range hm.GetHeaders() {
			v := f.GetValue()
			if v == "" {
				v = string(f.GetRawValue())
			}
			add(f.GetKey(), v)
		}
	} else {
		// Pseudo-headers first, as the codecs want them.
		for _, pass := range [2]bool{true, false} {
			for _, k := range sortedKeys(hr.GetHeaders()) {
				if strings.HasPrefix(k, ":") == pass {
					add(k, hr.GetHeaders()[k])
				}
			}
		}
	}
	for _, f := range c.headersToAdd {
		h.Set(f.Name, f.Value)
	}
	if !h.Has(hhttp.Method) {
		h.Set(hhttp.Method, "GET")
	}
	if !h.Has(hhttp.Path) {
		h.Set(hhttp.Path, "/")
	}
	resp, err := c.async.Send(ctx, h, body, 0)
	if err != nil {
		return errorResponse
	}
	return c.toResponse(resp)
}

// toResponse is RawHttpClientImpl::toResponse.
func (c *httpClient) toResponse(resp *router.AsyncResponse) *response {
	code := resp.Status()
	if code >= 500 || code <= 0 {
		return errorResponse
	}
	rh := resp.Headers
	if code == 200 {
		r := &response{status: statusOK, code: 200}
		for _, f := range rh.Fields {
			if f.Name == HeaderToRemove {
				for _, n := range strings.Split(f.Value, ",") {
					if n = strings.TrimSpace(n); n != "" {
						r.remove = append(r.remove, strings.ToLower(n))
					}
				}
				continue
			}
			if skipResponseHeader(f.Name) {
				continue
			}
			if c.upstream.matches(f.Name) {
				r.request = append(r.request, mutation{name: f.Name, value: f.Value, action: actSet})
			}
			if c.upstreamAppend.matches(f.Name) {
				r.request = append(r.request, mutation{name: f.Name, value: f.Value, action: actAppend})
			}
			if c.clientOnSuccess.matches(f.Name) {
				r.reply = append(r.reply, mutation{name: f.Name, value: f.Value, action: actAdd})
			}
		}
		return r
	}
	r := &response{status: statusDenied, code: code, body: string(resp.Body)}
	for _, f := range rh.Fields {
		if f.Name == HeaderToRemove || skipResponseHeader(f.Name) {
			continue
		}
		if c.client.matches(f.Name) {
			r.reply = append(r.reply, mutation{name: f.Name, value: f.Value, action: actSet})
		}
	}
	return r
}

// skipResponseHeader drops what describes the service's own response
// rather than the decision: pseudo-headers, framing and hop-by-hop fields
// (the local reply and the codecs set their own).
func skipResponseHeader(name string) bool {
	switch name {
	case "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "proxy-connection":
		return true
	}
	return strings.HasPrefix(name, ":")
}
