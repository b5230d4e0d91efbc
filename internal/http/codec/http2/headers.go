package http2

import (
	nethttp "net/http"
	"strings"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// commonLower maps the canonical spelling x/net gives header keys
// (http.CanonicalHeaderKey) to herald's lowercase names without allocating.
// Immutable after init.
var commonLower = func() map[string]string {
	names := []string{
		"accept", "accept-charset", "accept-encoding", "accept-language", "accept-ranges",
		"access-control-allow-origin", "age", "allow", "authorization", "cache-control",
		"connection", "content-disposition", "content-encoding", "content-language",
		"content-length", "content-location", "content-range", "content-type", "cookie",
		"date", "etag", "expect", "expires", "from", "grpc-accept-encoding", "grpc-encoding",
		"grpc-message", "grpc-status", "grpc-timeout", "host", "if-match", "if-modified-since",
		"if-none-match", "if-range", "if-unmodified-since", "last-modified", "link", "location",
		"max-forwards", "origin", "proxy-authenticate", "proxy-authorization", "range", "referer",
		"refresh", "retry-after", "server", "set-cookie", "strict-transport-security", "te",
		"trailer", "transfer-encoding", "user-agent", "vary", "via", "www-authenticate",
		"x-forwarded-for", "x-forwarded-proto", "x-request-id", "x-envoy-expected-rq-timeout-ms",
		"x-envoy-upstream-service-time", "x-envoy-original-path", "x-envoy-internal",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[nethttp.CanonicalHeaderKey(n)] = n
	}
	return m
}()

// lowerName returns the lowercase form of a canonical header key.
func lowerName(k string) string {
	if v, ok := commonLower[k]; ok {
		return v
	}
	return strings.ToLower(k)
}

// appendFields appends every field of m to h with lowercase names. Map order
// is random, so fields are appended in map order: x/net does not keep the
// wire order.
func appendFields(h *hhttp.Headers, m nethttp.Header) {
	for k, vv := range m {
		name := lowerName(k)
		for _, v := range vv {
			h.Fields = append(h.Fields, hhttp.HeaderField{Name: name, Value: v})
		}
	}
}

// wireKey is the map key x/net's encoders must see for name. x/net looks up a
// few keys by their canonical spelling (Content-Length, Content-Type, Date,
// Trailer, Connection, User-Agent); every other key may stay lowercase, which
// x/net writes as is, saving a canonicalisation per field.
func wireKey(name string) string {
	switch name {
	case "content-length":
		return "Content-Length"
	case "content-type":
		return "Content-Type"
	case "date":
		return "Date"
	case "trailer":
		return "Trailer"
	case "connection":
		return "Connection"
	case "user-agent":
		return "User-Agent"
	case "host":
		return "Host"
	}
	return name
}

// fillHeader copies the regular (non-pseudo) fields of h into m, one
// allocation for all values. Pseudo-headers are skipped; for an upgrade
// sent as extended CONNECT so are upgrade, connection and
// "content-length: 0" (Envoy's transformUpgradeRequestFromH1toH2).
func fillHeader(m nethttp.Header, h *hhttp.Headers, upgrade bool) {
	vals := make([]string, len(h.Fields))
	for i := range h.Fields {
		f := &h.Fields[i]
		if len(f.Name) > 0 && f.Name[0] == ':' {
			continue
		}
		if upgrade && (f.Name == "upgrade" || f.Name == "connection" || f.Name == "content-length" && f.Value == "0") {
			continue
		}
		k := wireKey(f.Name)
		vals[i] = f.Value
		if vv, ok := m[k]; ok && len(vv) > 0 {
			m[k] = append(vv, f.Value)
			continue
		}
		m[k] = vals[i : i+1 : i+1]
	}
}
