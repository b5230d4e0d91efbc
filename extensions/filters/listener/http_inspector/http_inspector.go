package httpinspector

import (
	"bytes"

	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.http_inspector"

// maxInspect is how far Envoy's filter reads looking for the end of the
// request line (Config::MAX_INSPECT_SIZE, 8 KiB).
const maxInspect = 8 << 10

// h2Preface is the HTTP/2 client connection preface (RFC 9113 §3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// Protocols recorded in RequestedALPN, as Envoy's filter sets them.
var (
	protoH2c    = []string{"h2c"}
	protoHTTP11 = []string{"http/1.1"}
	protoHTTP10 = []string{"http/1.0"}
)

func init() {
	listenerfilter.Register(listenerfilter.Extension[*httpinspectorv3.HttpInspector]{
		Name:   Name,
		Config: &httpinspectorv3.HttpInspector{},
		Build:  build,
	})
}

// Filter is a built http_inspector. Immutable.
type Filter struct {
	// Envoy's http_inspector.* stats
	// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/http_inspector#statistics).
	readError, http10Found, http11Found, http2Found, httpNotFound *stats.Counter
}

var _ listenerfilter.Filter = (*Filter)(nil)

func build(cfg *httpinspectorv3.HttpInspector, ctx listenerfilter.BuildContext) (listenerfilter.Filter, error) {
	if err := configerr.CheckFields(cfg, ctx.Path).Err(); err != nil {
		return nil, err
	}
	sc := ctx.Stats.Scope("http_inspector.")
	return &Filter{
		readError:    sc.Counter("read_error"),
		http10Found:  sc.Counter("http10_found"),
		http11Found:  sc.Counter("http11_found"),
		http2Found:   sc.Counter("http2_found"),
		httpNotFound: sc.Counter("http_not_found"),
	}, nil
}

// MaxReadBytes implements listenerfilter.Filter.
func (f *Filter) MaxReadBytes() int { return maxInspect }

// OnData implements listenerfilter.Filter.
func (f *Filter) OnData(c *network.Conn, data []byte) listenerfilter.Status {
	// Envoy: the filter only inspects plaintext ("if transport protocol is
	// not raw_buffer, skip").
	if c.TransportProtocol != "" && c.TransportProtocol != "raw_buffer" {
		return listenerfilter.Continue
	}
	if len(data) == 0 {
		return listenerfilter.NeedMoreData
	}
	n := min(len(data), len(h2Preface))
	if bytes.Equal(data[:n], h2Preface[:n]) {
		if n < len(h2Preface) {
			return listenerfilter.NeedMoreData
		}
		f.http2Found.Inc()
		c.RequestedALPN = protoH2c
		return listenerfilter.Continue
	}
	eol := bytes.Index(data, []byte("\r\n"))
	if eol < 0 {
		if len(data) >= maxInspect || !plausibleRequestLine(data) {
			f.httpNotFound.Inc()
			return listenerfilter.Continue
		}
		return listenerfilter.NeedMoreData
	}
	switch string(version(data[:eol])) {
	case "HTTP/1.1":
		f.http11Found.Inc()
		c.RequestedALPN = protoHTTP11
	case "HTTP/1.0":
		f.http10Found.Inc()
		c.RequestedALPN = protoHTTP10
	default:
		f.httpNotFound.Inc()
	}
	return listenerfilter.Continue
}

// version returns the HTTP version of a request line "METHOD SP target SP
// HTTP/1.x", or nil when the line is not one.
func version(line []byte) []byte {
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return nil
	}
	for _, b := range line[:sp1] {
		if !isTokenChar(b) {
			return nil
		}
	}
	return line[sp2+1:]
}

// plausibleRequestLine reports whether data may still become a request
// line: a method token so far, or a token and a space.
func plausibleRequestLine(data []byte) bool {
	for i, b := range data {
		if b == ' ' {
			return i > 0
		}
		if !isTokenChar(b) {
			return false
		}
	}
	return true
}

func isTokenChar(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), b) >= 0
}
