package http3

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	nethttp "net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/quic-go/quic-go"
	quichttp3 "github.com/quic-go/quic-go/http3"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// handlerFunc adapts a function to hhttp.StreamHandler.
type handlerFunc struct {
	serve    func(s hhttp.ServerStream)
	codecErr func(s hhttp.ServerStream, err *hhttp.CodecError)
}

func (h handlerFunc) ServeStream(s hhttp.ServerStream) { h.serve(s) }
func (h handlerFunc) ServeCodecError(s hhttp.ServerStream, err *hhttp.CodecError) {
	if h.codecErr != nil {
		h.codecErr(s, err)
		return
	}
	var rh hhttp.Headers
	rh.SetStatus(err.Status)
	s.WriteHeaders(&rh, true)
}

// testServer runs Serve for every QUIC connection accepted on loopback.
type testServer struct {
	addr    string
	roots   *x509.CertPool
	drain   chan struct{}
	errs    chan error
	serving sync.WaitGroup
	mu      sync.Mutex
	conns   []*quic.Conn
}

func startServer(t *testing.T, opts hhttp.ServerOptions, h hhttp.StreamHandler) *testServer {
	t.Helper()
	cert, roots := selfSigned(t)
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{ALPN}}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, &quic.Config{MaxIdleTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), roots: roots, drain: make(chan struct{}), errs: make(chan error, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	ts.serving.Go(func() {
		for {
			qc, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			ts.mu.Lock()
			ts.conns = append(ts.conns, qc)
			ts.mu.Unlock()
			ts.serving.Go(func() { ts.errs <- Serve(qc, opts, h, ts.drain) })
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		ts.mu.Lock()
		for _, qc := range ts.conns {
			qc.CloseWithError(0, "")
		}
		ts.mu.Unlock()
		ts.serving.Wait()
	})
	return ts
}

func (ts *testServer) client(t *testing.T) *quichttp3.Transport {
	t.Helper()
	tr := &quichttp3.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.roots, ServerName: "localhost"}, DisableCompression: true}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// seen is what a handler recorded of a request.
type seen struct {
	headers   []hhttp.HeaderField
	endStream bool
	body      string
	trailers  []hhttp.HeaderField
	protocol  string
}

func record(s hhttp.ServerStream) seen {
	got := seen{endStream: s.RequestEndStream(), protocol: s.Protocol()}
	got.headers = append(got.headers, s.RequestHeaders().Fields...)
	b, _ := io.ReadAll(readerFunc(s.ReadBody))
	got.body = string(b)
	if tr := s.RequestTrailers(); tr != nil {
		got.trailers = tr.Fields
	}
	return got
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func headers(kv ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// without drops the fields a client library adds on its own.
func without(fs []hhttp.HeaderField, names ...string) []hhttp.HeaderField {
	var out []hhttp.HeaderField
	for _, f := range fs {
		keep := true
		for _, n := range names {
			keep = keep && f.Name != n
		}
		if keep {
			out = append(out, f)
		}
	}
	return out
}

func TestServeRequestAndResponse(t *testing.T) {
	tests := []struct {
		name string
		// req builds the client request against base ("https://host:port").
		req func(base string) *nethttp.Request
		// respond writes the response.
		respond     func(s hhttp.ServerStream)
		wantSeen    seen
		wantStatus  int
		wantBody    string
		wantHeader  nethttp.Header // exact, minus nothing: the codec adds no field
		wantTrailer nethttp.Header
	}{
		{
			name: "GET without body, headers-only response",
			req: func(base string) *nethttp.Request {
				r, _ := nethttp.NewRequest("GET", base+"/a/b?c=d", nil)
				r.Header.Set("X-Custom", "v1")
				return r
			},
			respond: func(s hhttp.ServerStream) {
				s.WriteHeaders(headers(":status", "204", "x-answer", "yes"), true)
			},
			wantSeen: seen{
				headers: []hhttp.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
					{Name: ":authority", Value: "AUTH"}, {Name: ":path", Value: "/a/b?c=d"}, {Name: "x-custom", Value: "v1"}},
				// quic-go does not tell whether FIN came with HEADERS; the
				// codec reads ahead for GET and finds the end.
				endStream: true, protocol: "HTTP/3",
			},
			wantStatus: 204,
			// No Date, no sniffed Content-Type: the connection manager owns both.
			wantHeader: nethttp.Header{"X-Answer": {"yes"}},
		},
		{
			name: "POST body and trailers both ways, connection-specific fields dropped",
			req: func(base string) *nethttp.Request {
				pr, pw := io.Pipe()
				r, _ := nethttp.NewRequest("POST", base+"/up", pr)
				r.Trailer = nethttp.Header{"Grpc-Status": nil}
				go func() {
					io.WriteString(pw, "hello ")
					io.WriteString(pw, "world")
					r.Trailer.Set("Grpc-Status", "0")
					pw.Close()
				}()
				return r
			},
			respond: func(s hhttp.ServerStream) {
				s.WriteHeaders(headers(":status", "200", "content-type", "text/plain", "connection", "close", "transfer-encoding", "chunked"), false)
				s.WriteData([]byte("part1 "), false)
				s.WriteData([]byte("part2"), false)
				s.WriteTrailers(headers("x-checksum", "abc"))
			},
			wantSeen: seen{
				headers: []hhttp.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
					{Name: ":authority", Value: "AUTH"}, {Name: ":path", Value: "/up"}},
				body: "hello world", trailers: []hhttp.HeaderField{{Name: "grpc-status", Value: "0"}}, protocol: "HTTP/3",
			},
			wantStatus:  200,
			wantBody:    "part1 part2",
			wantHeader:  nethttp.Header{"Content-Type": {"text/plain"}},
			wantTrailer: nethttp.Header{"X-Checksum": {"abc"}},
		},
		{
			// The read-ahead byte of a GET is not lost.
			name: "GET with a streamed body keeps it",
			req: func(base string) *nethttp.Request {
				pr, pw := io.Pipe()
				r, _ := nethttp.NewRequest("GET", base+"/g", pr)
				go func() {
					io.WriteString(pw, "streamed")
					pw.Close()
				}()
				return r
			},
			respond: func(s hhttp.ServerStream) {
				s.WriteHeaders(headers(":status", "200", "content-length", "0"), true)
			},
			wantSeen: seen{
				headers: []hhttp.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
					{Name: ":authority", Value: "AUTH"}, {Name: ":path", Value: "/g"}},
				body: "streamed", protocol: "HTTP/3",
			},
			wantStatus: 200,
			wantHeader: nethttp.Header{"Content-Length": {"0"}},
		},
		{
			name: "1xx then final response with a body",
			req: func(base string) *nethttp.Request {
				r, _ := nethttp.NewRequest("PUT", base+"/x", strings.NewReader("abc"))
				return r
			},
			respond: func(s hhttp.ServerStream) {
				s.WriteHeaders(headers(":status", "103", "link", "</style.css>"), false)
				s.WriteHeaders(headers(":status", "201", "content-length", "2"), false)
				s.WriteData([]byte("ok"), true)
			},
			wantSeen: seen{
				headers: []hhttp.HeaderField{{Name: ":method", Value: "PUT"}, {Name: ":scheme", Value: "https"},
					{Name: ":authority", Value: "AUTH"}, {Name: ":path", Value: "/x"}},
				body: "abc", protocol: "HTTP/3",
			},
			wantStatus: 201,
			wantBody:   "ok",
			wantHeader: nethttp.Header{"Content-Length": {"2"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan seen, 1)
			ts := startServer(t, hhttp.ServerOptions{Scheme: "https"}, handlerFunc{serve: func(s hhttp.ServerStream) {
				got <- record(s)
				tc.respond(s)
			}})
			req := tc.req("https://" + ts.addr)
			resp, err := ts.client(t).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			s := <-got
			s.headers = without(s.headers, "user-agent", "content-length", "trailer")
			want := tc.wantSeen
			for i := range want.headers {
				if want.headers[i].Value == "AUTH" {
					want.headers[i].Value = ts.addr
				}
			}
			if diff := cmp.Diff(want, s, cmp.AllowUnexported(seen{})); diff != "" {
				t.Errorf("request as the handler saw it (-want +got):\n%s", diff)
			}
			if resp.StatusCode != tc.wantStatus || string(body) != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if diff := cmp.Diff(tc.wantHeader, resp.Header); diff != "" {
				t.Errorf("response headers (-want +got):\n%s", diff)
			}
			if tc.wantTrailer != nil {
				if diff := cmp.Diff(tc.wantTrailer, resp.Trailer); diff != "" {
					t.Errorf("response trailers (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// A handler that returns without ending the response resets the stream:
// the client sees an error, not a truncated success.
func TestServeUnfinishedResponseResets(t *testing.T) {
	ts := startServer(t, hhttp.ServerOptions{}, handlerFunc{serve: func(s hhttp.ServerStream) {
		s.WriteHeaders(headers(":status", "200"), false)
		s.WriteData([]byte("partial"), false)
	}})
	req, _ := nethttp.NewRequest("GET", "https://"+ts.addr+"/", nil)
	resp, err := ts.client(t).RoundTrip(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("an unfinished response read as complete")
	}
}

// Too many request headers answer 431 through ServeCodecError.
func TestServeTooManyHeaders(t *testing.T) {
	errs := make(chan *hhttp.CodecError, 1)
	ts := startServer(t, hhttp.ServerOptions{MaxRequestHeadersCount: 3}, handlerFunc{
		serve: func(s hhttp.ServerStream) { t.Error("ServeStream called") },
		codecErr: func(s hhttp.ServerStream, err *hhttp.CodecError) {
			errs <- err
			s.WriteHeaders(headers(":status", "431"), true)
		},
	})
	req, _ := nethttp.NewRequest("GET", "https://"+ts.addr+"/", nil)
	for _, k := range []string{"A", "B", "C", "D"} {
		req.Header.Set("X-"+k, "1")
	}
	resp, err := ts.client(t).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	gotErr := <-errs
	if resp.StatusCode != 431 || gotErr == nil || gotErr.Details != "http3.too_many_headers" {
		t.Fatalf("got %d, codec error %v; want 431 http3.too_many_headers", resp.StatusCode, gotErr)
	}
}

// Drain sends GOAWAY: the in-flight request finishes, then Serve returns
// and the connection closes.
func TestServeDrain(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, hhttp.ServerOptions{DrainTimeout: 5 * time.Second}, handlerFunc{serve: func(s hhttp.ServerStream) {
		close(started)
		<-release
		s.WriteHeaders(headers(":status", "200"), false)
		s.WriteData([]byte("finished"), true)
	}})
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	tr := ts.client(t)
	go func() {
		req, _ := nethttp.NewRequest("GET", "https://"+ts.addr+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{body: string(b), err: err}
	}()
	<-started
	close(ts.drain)
	close(release)
	r := <-done
	if r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request during drain: %q, %v; want it to finish", r.body, r.err)
	}
	select {
	case err := <-ts.errs:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after drain")
	}
}

func TestReadBodyEndStream(t *testing.T) {
	// A body-less request reads io.EOF at once.
	ts := startServer(t, hhttp.ServerOptions{}, handlerFunc{serve: func(s hhttp.ServerStream) {
		n, err := s.ReadBody(make([]byte, 8))
		if n != 0 || err != io.EOF {
			t.Errorf("ReadBody = %d, %v; want 0, EOF", n, err)
		}
		s.WriteHeaders(headers(":status", "200"), false)
		s.WriteData(bytes.Repeat([]byte("x"), 100<<10), true)
	}})
	req, _ := nethttp.NewRequest("GET", "https://"+ts.addr+"/", nil)
	resp, err := ts.client(t).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 100<<10 {
		t.Fatalf("body %d bytes, want %d", len(b), 100<<10)
	}
}
