package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	_ "github.com/herald-proxy/herald/extensions/all"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/listener"
	"github.com/herald-proxy/herald/internal/snapshot"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

// connDeadline bounds every benchmark connection so that a lost response
// fails the run instead of hanging it until go test's -timeout.
const connDeadline = 2 * time.Minute

// backendResponse is the backend's fixed keep-alive answer: 13 body bytes.
var backendResponse = []byte("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!")

// getRequest is the client's fixed keep-alive request.
var getRequest = []byte("GET /bench HTTP/1.1\r\nHost: bench.local\r\n\r\n")

var (
	headerEnd      = []byte("\r\n\r\n")
	crlf           = []byte("\r\n")
	contentLengthH = []byte("content-length:")
)

// startServer accepts on a loopback port and runs serve per connection
// until the benchmark run ends. It returns the address.
func startServer(b *testing.B, serve func(net.Conn)) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// startHTTPBackend starts the raw HTTP/1.1 responder: for every request
// head (up to CRLFCRLF; requests carry no body) it writes backendResponse.
// It allocates nothing per request.
func startHTTPBackend(b *testing.B) string {
	return startServer(b, func(c net.Conn) {
		buf := make([]byte, 16<<10)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			start := 0
			for {
				i := bytes.Index(buf[start:n], headerEnd)
				if i < 0 {
					break
				}
				start += i + len(headerEnd)
				if _, err := c.Write(backendResponse); err != nil {
					return
				}
			}
			n = copy(buf, buf[start:n])
			if n == len(buf) {
				return // a head larger than the buffer: not ours
			}
		}
	})
}

// startEchoBackend starts a raw TCP echo server.
func startEchoBackend(b *testing.B) string {
	return startServer(b, func(c net.Conn) {
		buf := make([]byte, 16<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	})
}

// heraldInstance is herald running in this process.
type heraldInstance struct {
	listeners map[string]string // listener name → bound address
}

// startHerald builds and starts herald from a bootstrap YAML exactly as
// internal/server does (bootstrap.Load → upstream.NewManager + Apply →
// snapshot.Build → listener.Start) and stops it when the run ends.
func startHerald(b *testing.B, yaml string) *heraldInstance {
	b.Helper()
	cfg, err := bootstrap.Load(bootstrap.Options{YAML: yaml})
	if err != nil {
		b.Fatalf("bootstrap.Load: %v", err)
	}
	store := stats.NewStore()
	clusters := upstream.NewManager(store)
	ctx, cancel := context.WithCancel(context.Background())
	bs := cfg.Bootstrap
	if err := clusters.Apply(ctx, bs.GetStaticResources().GetClusters(), func(i int) string {
		return fmt.Sprintf("static_resources.clusters[%d]", i)
	}); err != nil {
		cancel()
		b.Fatalf("clusters.Apply: %v", err)
	}
	snap, err := snapshot.Build(bs, snapshot.Deps{Stats: store, Clusters: clusters})
	if err != nil {
		cancel()
		clusters.Close()
		b.Fatalf("snapshot.Build: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	clusters.WaitReady(wctx)
	wcancel()
	h := &heraldInstance{listeners: map[string]string{}}
	var started []*listener.Listener
	stop := func() {
		for _, l := range started {
			l.CloseAll()
		}
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		for _, l := range started {
			l.Wait(wctx)
		}
		wcancel()
		clusters.Close()
		cancel()
	}
	for _, lc := range snap.Listeners {
		l, err := listener.Start(ctx, lc, store)
		if err != nil {
			stop()
			b.Fatalf("listener.Start: %v", err)
		}
		started = append(started, l)
		h.listeners[lc.Name] = l.Bound().String()
	}
	b.Cleanup(stop)
	return h
}

func (h *heraldInstance) addr(b *testing.B, name string) string {
	b.Helper()
	a, ok := h.listeners[name]
	if !ok {
		b.Fatalf("no listener %q", name)
	}
	return a
}

// httpClient is a raw keep-alive HTTP/1.1 client: it writes getRequest
// and reads one response (head up to CRLFCRLF, then Content-Length body
// bytes). It allocates nothing per request.
type httpClient struct {
	c   net.Conn
	buf []byte
	n   int // valid bytes in buf
}

// dial opens a client connection closed when the run ends.
func dial(b *testing.B, addr string) net.Conn {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(connDeadline))
	b.Cleanup(func() { c.Close() })
	return c
}

func newHTTPClient(c net.Conn) *httpClient {
	return &httpClient{c: c, buf: make([]byte, 16<<10)}
}

var (
	errShortBuffer = errors.New("response head larger than the client buffer")
	errNoLength    = errors.New("response without Content-Length")
	errStatus      = errors.New("response status is not 200")
)

// roundTrip sends one GET and reads one response; it returns the body
// length.
func (h *httpClient) roundTrip() (int, error) {
	if _, err := h.c.Write(getRequest); err != nil {
		return 0, err
	}
	end := -1
	for {
		if end = bytes.Index(h.buf[:h.n], headerEnd); end >= 0 {
			break
		}
		if h.n == len(h.buf) {
			return 0, errShortBuffer
		}
		m, err := h.c.Read(h.buf[h.n:])
		if err != nil {
			return 0, err
		}
		h.n += m
	}
	head := h.buf[:end+2] // status line and fields, each ending in CRLF
	if len(head) < 12 || string(head[9:12]) != "200" {
		return 0, fmt.Errorf("%w: %q", errStatus, head)
	}
	length := -1
	for line := head; len(line) > 0; {
		i := bytes.Index(line, crlf)
		f := line[:i]
		line = line[i+2:]
		if len(f) > len(contentLengthH) && bytes.EqualFold(f[:len(contentLengthH)], contentLengthH) {
			length = atoi(bytes.TrimSpace(f[len(contentLengthH):]))
		}
	}
	if length < 0 {
		return 0, errNoLength
	}
	total := end + len(headerEnd) + length
	if total > len(h.buf) {
		return 0, errShortBuffer
	}
	for h.n < total {
		m, err := h.c.Read(h.buf[h.n:])
		if err != nil {
			return 0, err
		}
		h.n += m
	}
	h.n = copy(h.buf, h.buf[total:h.n])
	return length, nil
}

// atoi parses a non-negative decimal without allocating; -1 if invalid.
func atoi(p []byte) int {
	if len(p) == 0 {
		return -1
	}
	v := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return -1
		}
		v = v*10 + int(c-'0')
	}
	return v
}

// benchHTTP runs roundTrip b.N times on one connection after a warm-up
// (which also fills herald's upstream connection pool).
func benchHTTP(b *testing.B, addr string, wantBody int) {
	c := newHTTPClient(dial(b, addr))
	for range 10 {
		if n, err := c.roundTrip(); err != nil || n != wantBody {
			b.Fatalf("warm-up: body %d, %v; want %d bytes", n, err, wantBody)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if n, err := c.roundTrip(); err != nil || n != wantBody {
			b.Fatalf("body %d, %v; want %d bytes", n, err, wantBody)
		}
	}
}

// benchHTTPParallel runs roundTrip from GOMAXPROCS×parallelism goroutines,
// one connection each.
func benchHTTPParallel(b *testing.B, addr string, wantBody int) {
	b.ReportAllocs()
	var mu sync.Mutex
	var clients []*httpClient
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		c.SetDeadline(time.Now().Add(connDeadline))
		hc := newHTTPClient(c)
		mu.Lock()
		clients = append(clients, hc)
		mu.Unlock()
		for pb.Next() {
			if n, err := hc.roundTrip(); err != nil || n != wantBody {
				b.Errorf("body %d, %v; want %d bytes", n, err, wantBody)
				return
			}
		}
	})
	b.StopTimer()
	for _, c := range clients {
		c.c.Close()
	}
}
