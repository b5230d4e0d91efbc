package http3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/quic-go/quic-go"
	quichttp3 "github.com/quic-go/quic-go/http3"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/testutil"
)

// upstreamServer is a quic-go HTTP/3 server on loopback with handler h;
// dial dials it and counts the dials.
type upstreamServer struct {
	addr  string
	tls   *tls.Config // the client's
	dials atomic.Int32
}

func startUpstream(t *testing.T, h nethttp.Handler) *upstreamServer {
	t.Helper()
	cert, roots := selfSigned(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &quichttp3.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{ALPN}}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(pc)
	}()
	t.Cleanup(func() {
		srv.Close()
		pc.Close()
		<-done
	})
	return &upstreamServer{
		addr: pc.LocalAddr().String(),
		tls:  &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13},
	}
}

func (u *upstreamServer) dial(ctx context.Context) (*quic.Conn, error) {
	u.dials.Add(1)
	return quic.DialAddr(ctx, u.addr, u.tls, &quic.Config{MaxIncomingStreams: -1})
}

func newTestClient(t *testing.T) *Client {
	t.Helper()
	c := NewClient(ClientOptions{})
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange is what one request through the client gave.
type exchange struct {
	status    string
	endStream bool
	headers   map[string]string // response fields other than :status
	body      string
	trailers  map[string]string
}

func roundTrip(t *testing.T, c *Client, u *upstreamServer, req *hhttp.Headers, body string, trailers *hhttp.Headers) exchange {
	t.Helper()
	s, err := c.NewStream(context.Background(), u.addr, u.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(nil)
	headersOnly := body == "" && trailers == nil
	if err := s.WriteHeaders(req, headersOnly); err != nil {
		t.Fatal(err)
	}
	if !headersOnly {
		if err := s.WriteData([]byte(body), trailers == nil); err != nil {
			t.Fatal(err)
		}
		if trailers != nil {
			if err := s.WriteTrailers(trailers); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rh hhttp.Headers
	end, err := s.ReadHeaders(&rh)
	if err != nil {
		t.Fatal(err)
	}
	got := exchange{endStream: end, headers: map[string]string{}}
	for _, f := range rh.Fields {
		if f.Name == hhttp.Status {
			got.status = f.Value
			continue
		}
		if f.Name != "date" {
			got.headers[f.Name] = f.Value
		}
	}
	b, err := io.ReadAll(readerFunc(s.ReadBody))
	if err != nil {
		t.Fatal(err)
	}
	got.body = string(b)
	if tr := s.Trailers(); tr != nil {
		got.trailers = map[string]string{}
		for _, f := range tr.Fields {
			got.trailers[f.Name] = f.Value
		}
	}
	return got
}

// echoHandler answers with what it saw: the protocol, method, path,
// authority, x- headers, body and trailers; a request with "x-trailer"
// gets a response trailer.
func echoHandler(w nethttp.ResponseWriter, r *nethttp.Request) {
	b, _ := io.ReadAll(r.Body)
	var xs []string
	for k, v := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-") {
			xs = append(xs, strings.ToLower(k)+"="+strings.Join(v, ","))
		}
	}
	sort.Strings(xs)
	var ts []string
	for k, v := range r.Trailer {
		ts = append(ts, strings.ToLower(k)+"="+strings.Join(v, ","))
	}
	sort.Strings(ts)
	if r.Header.Get("x-trailer") != "" {
		w.Header().Set(nethttp.TrailerPrefix+"grpc-status", "")
	}
	w.Header().Set("x-proto", r.Proto)
	w.Header().Set("x-seen", fmt.Sprintf("%s %s %s %s", r.Method, r.RequestURI, r.Host, strings.Join(xs, ";")))
	w.WriteHeader(201)
	fmt.Fprintf(w, "body=%s trailers=%s", b, strings.Join(ts, ";"))
	if r.Header.Get("x-trailer") != "" {
		w.Header().Set(nethttp.TrailerPrefix+"grpc-status", "0")
	}
}

func TestClientRoundTrip(t *testing.T) {
	u := startUpstream(t, nethttp.HandlerFunc(echoHandler))
	tests := []struct {
		name     string
		req      *hhttp.Headers
		body     string
		trailers *hhttp.Headers
		want     exchange
	}{
		{
			name: "headers only",
			req:  headers(":method", "GET", ":scheme", "https", ":authority", "backend.example", ":path", "/a/b?q=1", "x-one", "1"),
			want: exchange{status: "201", body: "body= trailers=", headers: map[string]string{
				"x-proto": "HTTP/3.0", "x-seen": "GET /a/b?q=1 backend.example x-one=1", "content-length": "15", "content-type": "text/plain; charset=utf-8",
			}},
		},
		{
			name: "body and request trailers",
			req:  headers(":method", "POST", ":scheme", "https", ":authority", "backend.example", ":path", "/upload", "x-two", "a", "x-two", "b"),
			body: "hello", trailers: headers("x-checksum", "abc"),
			want: exchange{status: "201", body: "body=hello trailers=x-checksum=abc", headers: map[string]string{
				"x-proto": "HTTP/3.0", "x-seen": "POST /upload backend.example x-two=a,b", "content-length": "34", "content-type": "text/plain; charset=utf-8",
			}},
		},
		{
			name: "response trailers",
			req:  headers(":method", "POST", ":scheme", "https", ":authority", "backend.example", ":path", "/grpc", "x-trailer", "1", "content-length", "3"),
			body: "abc",
			want: exchange{status: "201", body: "body=abc trailers=", headers: map[string]string{
				"x-proto": "HTTP/3.0", "x-seen": "POST /grpc backend.example x-trailer=1", "content-length": "18", "content-type": "text/plain; charset=utf-8",
			}, trailers: map[string]string{"grpc-status": "0"}},
		},
	}
	c := newTestClient(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := roundTrip(t, c, u, tc.req, tc.body, tc.trailers)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(exchange{})); diff != "" {
				t.Errorf("exchange (-want +got):\n%s", diff)
			}
		})
	}
	// Every request went on the one connection.
	if n := u.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
	if n := c.connCount(u.addr); n != 1 {
		t.Errorf("pooled connections = %d, want 1", n)
	}
}

func TestClientConnectError(t *testing.T) {
	c := newTestClient(t)
	dialErr := errors.New("no route")
	_, err := c.NewStream(context.Background(), "h", func(context.Context) (*quic.Conn, error) { return nil, dialErr })
	var ce *ConnectError
	if !errors.As(err, &ce) || !errors.Is(err, dialErr) {
		t.Fatalf("NewStream error = %v, want a *ConnectError wrapping the dial error", err)
	}
}

// TestClientRedialsClosedConn: a connection the peer closed is dropped
// and the next request dials a new one.
func TestClientRedialsClosedConn(t *testing.T) {
	u := startUpstream(t, nethttp.HandlerFunc(echoHandler))
	c := newTestClient(t)
	req := headers(":method", "GET", ":scheme", "https", ":authority", "b", ":path", "/")
	if got := roundTrip(t, c, u, req, "", nil); got.status != "201" {
		t.Fatalf("first request: status %s", got.status)
	}
	hp := c.hostPool(u.addr)
	hp.mu.Lock()
	hp.conns[0].qc.CloseWithError(0, "")
	hp.mu.Unlock()
	if got := roundTrip(t, c, u, req, "", nil); got.status != "201" {
		t.Fatalf("after close: status %s", got.status)
	}
	if n := u.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2", n)
	}
}

// TestClientReadDeadline: a response that does not come in time fails the
// read with os.ErrDeadlineExceeded (the router's timeouts).
func TestClientReadDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	u := startUpstream(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	c := newTestClient(t)
	s, err := c.NewStream(context.Background(), u.addr, u.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(nil)
	if err := s.WriteHeaders(headers(":method", "GET", ":scheme", "https", ":authority", "b", ":path", "/slow"), true); err != nil {
		t.Fatal(err)
	}
	s.(*upstreamStream).SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var rh hhttp.Headers
	if _, err := s.ReadHeaders(&rh); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadHeaders error = %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestClientIdleTimeout: a connection without streams for IdleTimeout is
// closed and dropped; the next request dials again.
func TestClientIdleTimeout(t *testing.T) {
	u := startUpstream(t, nethttp.HandlerFunc(echoHandler))
	c := NewClient(ClientOptions{IdleTimeout: 20 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	req := headers(":method", "GET", ":scheme", "https", ":authority", "b", ":path", "/")
	if got := roundTrip(t, c, u, req, "", nil); got.status != "201" {
		t.Fatalf("first request: status %s", got.status)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := c.connCount(u.addr); n != 0 {
			return fmt.Errorf("pooled connections = %d, want 0", n)
		}
		return nil
	})
	if got := roundTrip(t, c, u, req, "", nil); got.status != "201" {
		t.Fatalf("after idle close: status %s", got.status)
	}
	if n := u.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2", n)
	}
}
