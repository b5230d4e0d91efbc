package tcpproxy

import (
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// Filter state keys tunneling_config writes on the downstream connection
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto#extensions-filters-network-tcp-proxy-v3-tcpproxy-tunnelingconfig).
// The value is a *hhttp.Headers owned by the connection; readers must not
// modify it.
const (
	// FilterStateResponseHeaders holds the upstream's response headers to
	// the CONNECT (or POST) when propagate_response_headers is set.
	FilterStateResponseHeaders = "envoy.tcp_proxy.propagate_response_headers"
	// FilterStateResponseTrailers holds the upstream's response trailers
	// when propagate_response_trailers is set and the tunnel ended with
	// trailers (HTTP/2 only: an HTTP/1.1 tunnel has no trailers).
	FilterStateResponseTrailers = "envoy.tcp_proxy.propagate_response_trailers"
)

// defaultPostPath is post_path's default with use_post: Envoy's
// TunnelingConfigHelperImpl sets "/" when post_path is empty
// (source/common/tcp_proxy/tcp_proxy.cc).
const defaultPostPath = "/"

// tunnelConfig is the built tunneling_config: the connection is carried as
// the body of an HTTP request (CONNECT, or POST with use_post) to a host of
// the cluster instead of a raw TCP connection
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades#tunneling-tcp-over-http).
// Immutable after Build.
type tunnelConfig struct {
	// hostname is the :authority (CONNECT target) formatter; Envoy builds
	// it as a text SubstitutionFormatString, so an operator without a value
	// prints "-".
	hostname *accesslog.Formatter
	// usePost sends POST to postPath instead of CONNECT.
	usePost  bool
	postPath string
	headers  []tunnelHeader
	// propagateHeaders, propagateTrailers: store the response headers and
	// trailers in the connection's filter state.
	propagateHeaders, propagateTrailers bool
}

// tunnelHeader is one headers_to_add entry: Envoy's HeaderParser with the
// substitution formatter (router/header_parser.cc), whose operators without
// a value print "" so that the header is skipped unless keep_empty_value.
type tunnelHeader struct {
	name      string
	value     *accesslog.Formatter
	action    corev3.HeaderValueOption_HeaderAppendAction
	keepEmpty bool
}

// tunnelFields are the TunnelingConfig fields herald interprets.
var tunnelFields = []string{"hostname", "use_post", "post_path", "headers_to_add", "propagate_response_headers", "propagate_response_trailers"}

// buildTunnelConfig interprets tunneling_config at path; nil when unset.
func buildTunnelConfig(tc *tcpv3.TcpProxy_TunnelingConfig, path string) (*tunnelConfig, configerr.List) {
	if tc == nil {
		return nil, nil
	}
	errs := configerr.CheckFields(tc, path, tunnelFields...)
	t := &tunnelConfig{
		usePost:           tc.GetUsePost(),
		postPath:          tc.GetPostPath(),
		propagateHeaders:  tc.GetPropagateResponseHeaders(),
		propagateTrailers: tc.GetPropagateResponseTrailers(),
	}
	// Envoy: "Can't set a post path when POST method isn't used"
	// (TunnelingConfigHelperImpl).
	switch {
	case t.postPath != "" && !t.usePost:
		errs = append(errs, configerr.At(path+".post_path", "can't set a post path when POST method isn't used (set use_post: true)"))
	case t.usePost && t.postPath == "":
		t.postPath = defaultPostPath
	}
	if t.postPath != "" && (!strings.HasPrefix(t.postPath, "/") || !validFieldValue(t.postPath) || strings.ContainsAny(t.postPath, " \t")) {
		errs = append(errs, configerr.At(path+".post_path", "%q is not a valid request path", t.postPath))
	}
	hf, err := accesslog.TextFormatterAt(tc.GetHostname(), accesslog.TextOptions{}, path+".hostname")
	if err != nil {
		errs = append(errs, configerr.Collect(err, path+".hostname", nil)...)
	}
	t.hostname = hf
	for i, o := range tc.GetHeadersToAdd() {
		p := fmt.Sprintf("%s.headers_to_add[%d]", path, i)
		if h, ok := buildTunnelHeader(o, p, &errs); ok {
			t.headers = append(t.headers, h)
		}
	}
	return t, errs
}

// buildTunnelHeader compiles one headers_to_add entry as Envoy's
// HeadersToAddEntry (router/header_parser.cc): the deprecated append maps
// to APPEND_IF_EXISTS_OR_ADD (true) or OVERWRITE_IF_EXISTS_OR_ADD (false)
// and may not be combined with append_action; ":"-prefixed names and host
// may not be modified ("Neither :-prefixed pseudo-headers nor the Host:
// header can be overridden", TunnelingConfig.headers_to_add).
func buildTunnelHeader(o *corev3.HeaderValueOption, p string, errs *configerr.List) (tunnelHeader, bool) {
	*errs = append(*errs, configerr.CheckFields(o, p, "header", "append", "append_action", "keep_empty_value")...)
	*errs = append(*errs, configerr.CheckFields(o.GetHeader(), p+".header", "key", "value")...)
	h := tunnelHeader{
		name:      strings.ToLower(o.GetHeader().GetKey()),
		action:    o.GetAppendAction(),
		keepEmpty: o.GetKeepEmptyValue(),
	}
	if h.name == "" || strings.HasPrefix(h.name, ":") || h.name == "host" {
		*errs = append(*errs, configerr.At(p+".header.key", ":-prefixed or host headers may not be modified"))
		return h, false
	}
	if a := o.GetAppend(); a != nil {
		if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			*errs = append(*errs, configerr.At(p, "Both append and append_action are set and it's not allowed"))
			return h, false
		}
		h.action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		if a.GetValue() {
			h.action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		}
	}
	f, err := accesslog.TextFormatterAt(o.GetHeader().GetValue(), accesslog.TextOptions{OmitEmptyValues: true}, p+".header.value")
	if err != nil {
		*errs = append(*errs, configerr.Collect(err, p+".header.value", nil)...)
		return h, false
	}
	h.value = f
	return h, true
}

// requestHeaders builds the tunnel request for one attempt, as Envoy's
// HttpUpstream::setRequestEncoder / CombinedUpstream
// (source/common/tcp_proxy/upstream.cc): :method CONNECT (or POST),
// :authority the formatted hostname; with use_post also :path post_path
// and, on HTTP/2, :scheme (https over TLS); then headers_to_add. secure
// says the cluster speaks TLS. A formatted value that cannot be sent (CR,
// LF or NUL) fails the attempt.
func (t *tunnelConfig) requestHeaders(info *streaminfo.Info, secure bool, h2 bool) (*hhttp.Headers, error) {
	h := &hhttp.Headers{Fields: make([]hhttp.HeaderField, 0, 4+len(t.headers))}
	var buf []byte
	buf = t.hostname.Format(buf, info)
	host := string(buf)
	if host == "" || !validFieldValue(host) || strings.ContainsAny(host, " \t") {
		return nil, fmt.Errorf("tcp_proxy: tunneling hostname %q is not a valid authority", host)
	}
	if t.usePost {
		h.Add(hhttp.Method, "POST")
		h.Add(hhttp.Authority, host)
		h.Add(hhttp.Path, t.postPath)
		if h2 {
			scheme := "http"
			if secure {
				scheme = "https"
			}
			h.Add(hhttp.Scheme, scheme)
		}
	} else {
		h.Add(hhttp.Method, "CONNECT")
		h.Add(hhttp.Authority, host)
	}
	for i := range t.headers {
		th := &t.headers[i]
		buf = th.value.Format(buf[:0], info)
		if len(buf) == 0 && !th.keepEmpty {
			continue
		}
		v := string(buf)
		if !validFieldValue(v) {
			return nil, fmt.Errorf("tcp_proxy: tunneling header %s: value %q holds CR, LF or NUL", th.name, v)
		}
		switch th.action {
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !h.Has(th.name) {
				h.Add(th.name, v)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if h.Has(th.name) {
				h.Set(th.name, v)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.Set(th.name, v)
		default: // APPEND_IF_EXISTS_OR_ADD
			h.Add(th.name, v)
		}
	}
	return h, nil
}

// validFieldValue reports whether v can go on the wire as a header value:
// no CR, LF or NUL (RFC 9110 §5.5).
func validFieldValue(v string) bool {
	return !strings.ContainsAny(v, "\r\n\x00")
}
