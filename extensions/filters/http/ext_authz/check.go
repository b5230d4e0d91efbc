package extauthz

import (
	"crypto/x509"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// checkInput is what a CheckRequest is built from.
type checkInput struct {
	headers *hhttp.Headers
	// body is the buffered request body (nil when none was buffered);
	// max is the limit it was buffered under.
	body       []byte
	bodyMax    int
	bodyBytes  bool // pack_as_bytes
	extensions map[string]string
}

// buildCheck is Envoy's CheckRequestUtils::createHttpCheck
// (filters/common/ext_authz/check_request_utils.cc): source and destination
// peers, the request time, and the HTTP request with the headers the allow
// and deny lists select (values of a repeated name joined with ",", or
// every field in header_map with encode_raw_headers), the body (at most
// max bytes, with x-envoy-auth-partial-body), and context_extensions.
func (c *Config) buildCheck(cb httpfilter.Callbacks, in *checkInput) *authv3.CheckRequest {
	info := cb.StreamInfo()
	h := in.headers
	hr := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(cb.StreamID(), 10),
		Method:   sanitize(h.Method()),
		Path:     sanitize(h.Path()),
		Host:     sanitize(h.Authority()),
		Scheme:   sanitize(h.Scheme()),
		Size:     int64(info.BytesReceived),
		Protocol: info.Protocol,
	}
	if in.body != nil && int64(len(in.body)) > hr.Size {
		hr.Size = int64(len(in.body))
	}
	if c.encodeRawHeaders {
		hr.HeaderMap = &corev3.HeaderMap{}
	} else {
		hr.Headers = make(map[string]string, h.Len())
	}
	for _, f := range h.Fields {
		// A client's own x-envoy-auth-partial-body could mislead the service.
		if f.Name == HeaderPartialBody {
			continue
		}
		if c.disallowed != nil && c.disallowed.matches(f.Name) {
			continue
		}
		if c.allowed != nil && !c.allowed.matches(f.Name) {
			continue
		}
		if c.encodeRawHeaders {
			hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: f.Name, RawValue: []byte(f.Value)})
			continue
		}
		v := sanitize(f.Value)
		if old, ok := hr.Headers[f.Name]; ok {
			hr.Headers[f.Name] = old + "," + v
		} else {
			hr.Headers[f.Name] = v
		}
	}
	if in.body != nil && in.bodyMax > 0 {
		b := in.body
		partial := "false"
		if len(b) > in.bodyMax {
			b, partial = b[:in.bodyMax], "true"
		}
		if in.bodyBytes {
			hr.RawBody = b
		} else {
			hr.Body = sanitize(string(b))
		}
		if c.encodeRawHeaders {
			hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: HeaderPartialBody, RawValue: []byte(partial)})
		} else {
			hr.Headers[HeaderPartialBody] = partial
		}
	}
	attrs := &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			// Envoy reports the connection's remote address (after
			// proxy_protocol, before x-forwarded-for); the filter API
			// offers the socket peer, the same without proxy_protocol.
			Address: socketAddress(cb.DownstreamDirectRemoteAddress()),
			Service: sanitize(h.Get("x-envoy-downstream-service-cluster")),
		},
		Destination:       &authv3.AttributeContext_Peer{Address: socketAddress(info.DownstreamLocalAddress)},
		Request:           &authv3.AttributeContext_Request{Http: hr},
		ContextExtensions: in.extensions,
	}
	if _, cert := httpfilter.DownstreamTLS(cb); cert != nil {
		attrs.Source.Principal = peerPrincipal(cert)
	}
	if !info.StartTime.IsZero() {
		attrs.Request.Time = timestamppb.New(info.StartTime)
	}
	if c.includeTLSSession {
		attrs.TlsSession = &authv3.AttributeContext_TLSSession{Sni: info.RequestedServerName}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// peerPrincipal is Envoy's CheckRequestUtils getPrincipal for the peer
// (check_request_utils.cc): the client certificate's first URI SAN, else
// its first DNS SAN, else its subject.
func peerPrincipal(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

// socketAddress is Envoy's addressToProtobufAddress for an IP address; nil
// when a is unknown.
func socketAddress(a netip.AddrPort) *corev3.Address {
	if !a.IsValid() {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       a.Addr().Unmap().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(a.Port())},
	}}}
}

// sanitize is Envoy's MessageUtil::sanitizeUtf8String: bytes that are not
// valid UTF-8 become '!' (proto strings must be UTF-8).
func sanitize(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteByte('!')
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// sortedKeys returns m's keys in order, so the HTTP service sees the
// headers in a stable order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
