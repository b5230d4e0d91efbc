package testutil

import (
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// HTTPBackend starts an HTTP/1.1 server on 127.0.0.1:0 and returns its
// address; it stops with the test.
func HTTPBackend(t testing.TB, h nethttp.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// H2CBackend starts an HTTP/2 prior-knowledge (h2c) server on 127.0.0.1:0.
func H2CBackend(t testing.TB, h nethttp.Handler) string {
	t.Helper()
	s := httptest.NewUnstartedServer(h2c.NewHandler(h, &http2.Server{}))
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// NamedBackend answers every request with its name as the body and echoes
// the request path in x-backend-path.
func NamedBackend(t testing.TB, name string) string {
	return HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-backend-name", name)
		w.Header().Set("x-backend-path", r.URL.RequestURI())
		io.WriteString(w, name)
	}))
}

// TCPEcho starts a TCP server on 127.0.0.1:0 that echoes what it reads and
// half-closes after the peer does.
func TCPEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				if tc, ok := c.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// ClosedPort returns a loopback address where nothing listens.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
