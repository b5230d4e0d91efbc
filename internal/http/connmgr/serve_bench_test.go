package connmgr

import (
	"context"
	"io"
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/stats"
)

// benchStream is a reusable bodiless request that discards its response.
type benchStream struct {
	headers hhttp.Headers
	proto   string
}

func (s *benchStream) RequestHeaders() *hhttp.Headers          { return &s.headers }
func (s *benchStream) RequestEndStream() bool                  { return true }
func (s *benchStream) RequestTrailers() *hhttp.Headers         { return nil }
func (s *benchStream) Protocol() string                        { return s.proto }
func (s *benchStream) Context() context.Context                { return context.Background() }
func (s *benchStream) ReadBody([]byte) (int, error)            { return 0, io.EOF }
func (s *benchStream) WriteHeaders(*hhttp.Headers, bool) error { return nil }
func (s *benchStream) WriteData([]byte, bool) error            { return nil }
func (s *benchStream) WriteTrailers(*hhttp.Headers) error      { return nil }

// benchFilter answers 200 with one reused header block.
type benchFilter struct {
	cb   httpfilter.Callbacks
	resp hhttp.Headers
}

func (f *benchFilter) DecodeHeaders(*hhttp.Headers, bool) httpfilter.Status {
	f.resp.Fields = append(f.resp.Fields[:0], hhttp.HeaderField{Name: hhttp.Status, Value: "200"})
	f.cb.EncodeHeaders(&f.resp, true)
	return httpfilter.Stop
}
func (f *benchFilter) DecodeData([]byte, bool) httpfilter.Status       { return httpfilter.Stop }
func (f *benchFilter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Stop }

// benchServeStream serves one request per iteration through the
// connection manager with one filter, on an HTTP/1.1 keep-alive connection
// or, with mux, an HTTP/2 one; set adjusts the config.
func benchServeStream(b *testing.B, mux bool, set func(*Config)) {
	store := stats.NewStore()
	f := &benchFilter{}
	cfg := &Config{StatPrefix: "bench", Stats: NewStats(store, "bench"), Store: store, ServerName: "envoy"}
	cfg.Filters = []FilterFactory{{Name: "answer", Factory: func(cb httpfilter.Callbacks) httpfilter.Filter {
		f.cb = cb
		return f
	}}}
	if set != nil {
		set(cfg)
	}
	if err := cfg.Prepare(); err != nil {
		b.Fatal(err)
	}
	c := &conn{cfg: cfg, nc: &network.Conn{}, drainCh: make(chan struct{}), http2: mux}
	s := &benchStream{proto: "HTTP/1.1"}
	if mux {
		s.proto = "HTTP/2"
	}
	req := []hhttp.HeaderField{
		{Name: hhttp.Method, Value: "GET"}, {Name: hhttp.Path, Value: "/"},
		{Name: hhttp.Authority, Value: "example.com"}, {Name: "user-agent", Value: "bench"},
		{Name: "accept", Value: "*/*"}, {Name: "x_trace", Value: "1"},
	}
	b.ReportAllocs()
	for b.Loop() {
		s.headers.Fields = append(s.headers.Fields[:0], req...)
		c.ServeStream(s)
	}
}

// BenchmarkServeStream is the HTTP/1.1 request path with the defaults.
func BenchmarkServeStream(b *testing.B) { benchServeStream(b, false, nil) }

// BenchmarkServeStreamHTTP2 is the HTTP/2 request path with the defaults.
func BenchmarkServeStreamHTTP2(b *testing.B) { benchServeStream(b, true, nil) }
