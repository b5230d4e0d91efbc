package http2

import (
	"context"
	"io"
	nethttp "net/http"
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// The benchmarks run both ends in one process, so their allocation counts
// cover client and server. Each herald benchmark has an x/net-only baseline
// with the same peer: the difference is the adapter's cost.

func okHandler(s hhttp.ServerStream) {
	h := hhttp.Headers{Fields: make([]hhttp.HeaderField, 0, 2)}
	h.SetStatus(200)
	if err := s.WriteHeaders(&h, false); err != nil {
		return
	}
	_ = s.WriteData(okBody, true)
}

var okBody = []byte("ok")

func okNetHandler(w nethttp.ResponseWriter, _ *nethttp.Request) {
	_, _ = w.Write(okBody)
}

func benchNetClient(b *testing.B, addr string) {
	tr := h2cTransport(b)
	req, _ := nethttp.NewRequest("GET", "http://"+addr+"/bench", nil)
	buf := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := res.Body.Read(buf); err != nil {
				break
			}
		}
		res.Body.Close()
	}
}

// BenchmarkServerRoundTrip: x/net client → herald server (ServerStream
// adapter) with a two-byte response.
func BenchmarkServerRoundTrip(b *testing.B) {
	ts := startServer(b, hhttp.ServerOptions{}, streamFunc(okHandler), nil)
	benchNetClient(b, ts.addr)
}

// BenchmarkServerRoundTripBaseline: the same over x/net's server with a
// plain http.Handler.
func BenchmarkServerRoundTripBaseline(b *testing.B) {
	be := startBackend(b, nethttp.HandlerFunc(okNetHandler))
	benchNetClient(b, be.addr)
}

// BenchmarkClientRoundTrip: herald client (UpstreamStream) → x/net server.
func BenchmarkClientRoundTrip(b *testing.B) {
	be := startBackend(b, nethttp.HandlerFunc(okNetHandler))
	c := newTestClient(b, ClientOptions{})
	dial := dialer(be.addr)
	req := requestHeaders("GET", "bench.local", "/bench")
	res := &hhttp.Headers{}
	buf := make([]byte, 64)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, err := c.NewStream(ctx, be.addr, dial)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.WriteHeaders(req, true); err != nil {
			b.Fatal(err)
		}
		end, err := s.ReadHeaders(res)
		if err != nil {
			b.Fatal(err)
		}
		for !end {
			if _, err := s.ReadBody(buf); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
		s.Close(nil)
	}
}

// BenchmarkClientRoundTripBaseline: x/net's Transport against the same
// server.
func BenchmarkClientRoundTripBaseline(b *testing.B) {
	be := startBackend(b, nethttp.HandlerFunc(okNetHandler))
	benchNetClient(b, be.addr)
}

// BenchmarkClientRoundTripParallel exercises the pool from many goroutines.
func BenchmarkClientRoundTripParallel(b *testing.B) {
	be := startBackend(b, nethttp.HandlerFunc(okNetHandler))
	c := newTestClient(b, ClientOptions{})
	dial := dialer(be.addr)
	req := requestHeaders("GET", "bench.local", "/bench")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		res := &hhttp.Headers{}
		buf := make([]byte, 64)
		for pb.Next() {
			s, err := c.NewStream(context.Background(), be.addr, dial)
			if err != nil {
				b.Error(err)
				return
			}
			_ = s.WriteHeaders(req, true)
			end, err := s.ReadHeaders(res)
			for err == nil && !end {
				_, err = s.ReadBody(buf)
			}
			if err != nil && err != io.EOF {
				b.Error(err)
			}
			s.Close(nil)
		}
	})
}
