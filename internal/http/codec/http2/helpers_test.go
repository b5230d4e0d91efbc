package http2

import (
	"context"
	"crypto/tls"
	"net"
	nethttp "net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xhttp2 "golang.org/x/net/http2"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// streamFunc adapts a function to hhttp.StreamHandler.
type streamFunc func(s hhttp.ServerStream)

func (f streamFunc) ServeStream(s hhttp.ServerStream) { f(s) }

func (f streamFunc) ServeCodecError(hhttp.ServerStream, *hhttp.CodecError) {}

// loopbackServer accepts on 127.0.0.1:0 and hands each connection to serve.
type loopbackServer struct {
	addr     string
	accepted atomic.Int32

	ln         net.Listener
	acceptDone chan struct{}
	mu         sync.Mutex
	conns      []net.Conn
	wg         sync.WaitGroup
}

func startLoopback(t testing.TB, serve func(c net.Conn)) *loopbackServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ls := &loopbackServer{addr: ln.Addr().String(), ln: ln, acceptDone: make(chan struct{})}
	go func() {
		defer close(ls.acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ls.accepted.Add(1)
			ls.mu.Lock()
			ls.conns = append(ls.conns, c)
			ls.mu.Unlock()
			ls.wg.Add(1)
			go func() {
				defer ls.wg.Done()
				serve(c)
			}()
		}
	}()
	t.Cleanup(ls.close)
	return ls
}

func (ls *loopbackServer) close() {
	ls.ln.Close()
	<-ls.acceptDone
	ls.mu.Lock()
	for _, c := range ls.conns {
		c.Close()
	}
	ls.mu.Unlock()
	ls.wg.Wait()
}

// startServer serves herald's HTTP/2 server on loopback.
func startServer(t testing.TB, opts hhttp.ServerOptions, h hhttp.StreamHandler, drain <-chan struct{}) *loopbackServer {
	t.Helper()
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return startLoopback(t, func(c net.Conn) { srv.ServeConn(c, h, drain) })
}

// startBackend serves an x/net HTTP/2 server (h2c prior knowledge) on
// loopback.
func startBackend(t testing.TB, h nethttp.Handler) *loopbackServer {
	t.Helper()
	srv := &xhttp2.Server{}
	return startLoopback(t, func(c net.Conn) { srv.ServeConn(c, &xhttp2.ServeConnOpts{Handler: h}) })
}

// h2cTransport is an x/net client speaking h2c with prior knowledge.
func h2cTransport(t testing.TB) *xhttp2.Transport {
	tr := &xhttp2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func dialer(addr string) hhttp.Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
