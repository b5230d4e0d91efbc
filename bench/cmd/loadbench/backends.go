package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// helloResponse is the HTTP/1.1 backends' answer: keep-alive, 13-byte body.
const helloResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"

// Precomputed answers of the HTTP/1.1 backends by request path: GET /64k and
// GET /1m get a 64 KiB and a 1 MiB body, every other path helloResponse.
var (
	hello     = []byte(helloResponse)
	resp64KiB = bodyResponse(64 << 10)
	resp1MiB  = bodyResponse(1 << 20)
)

func bodyResponse(n int) []byte {
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", n)
	return append([]byte(head), bytes.Repeat([]byte{'x'}, n)...)
}

// responseFor picks the answer from the request line "GET /path HTTP/1.1".
func responseFor(requestLine []byte) []byte {
	_, rest, _ := bytes.Cut(requestLine, []byte(" "))
	path, _, _ := bytes.Cut(rest, []byte(" "))
	switch string(path) { // no allocation: the compiler compares in place
	case "/64k":
		return resp64KiB
	case "/1m":
		return resp1MiB
	}
	return hello
}

// startHTTP1Backend serves HTTP/1.1 keep-alive on a loopback port: every
// request (pipelined ones too) gets the precomputed answer for its path. It is written on raw TCP
// so that it costs the backend CPU (shared with the load generator) as
// little as possible.
func startHTTP1Backend() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go acceptLoop(ln, serveHTTP1)
	return ln, nil
}

func acceptLoop(ln net.Listener, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go serve(c)
	}
}

var contentLength = []byte("content-length:")

func serveHTTP1(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 8192)
	bw := bufio.NewWriterSize(c, 8192)
	for {
		var bodyLen int64
		closeAfter := false
		var resp []byte
		for first := true; ; first = false {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 { // "\r\n" ends the head
				if first {
					continue // stray CRLF before a request line
				}
				break
			}
			if first {
				resp = responseFor(line)
			}
			if len(line) > len(contentLength) && bytes.EqualFold(line[:len(contentLength)], contentLength) {
				n, err := strconv.ParseInt(string(bytes.TrimSpace(line[len(contentLength):])), 10, 64)
				if err != nil || n < 0 {
					return
				}
				bodyLen = n
			}
			if bytes.EqualFold(bytes.TrimSpace(line), []byte("connection: close")) {
				closeAfter = true
			}
		}
		if bodyLen > 0 {
			if _, err := br.Discard(int(bodyLen)); err != nil {
				return
			}
		}
		if _, err := bw.Write(resp); err != nil {
			return
		}
		if br.Buffered() == 0 || closeAfter {
			if err := bw.Flush(); err != nil {
				return
			}
		}
		if closeAfter {
			return
		}
	}
}

// startH2CBackend serves HTTP/2 cleartext (prior knowledge) and HTTP/1.1 with
// the same 13-byte body; it is the direct baseline of the HTTP/2 scenario.
func startH2CBackend() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	body := []byte("Hello, world!")
	h := nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Header()["Content-Length"] = []string{"13"}
		w.Write(body)
	})
	srv := &nethttp.Server{
		Handler:           h2c.NewHandler(h, &http2.Server{MaxConcurrentStreams: 1000}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	return ln, nil
}

// startEchoBackend echoes every byte back on each connection.
func startEchoBackend() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go acceptLoop(ln, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 16384)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	return ln, nil
}

// echoLoad runs conns connections against addr for d, each sending size-byte
// messages and waiting for the echo, and returns the round trips done and
// their latencies (sorted by the caller).
func echoLoad(addr string, conns, size int, d time.Duration) (int64, []time.Duration, int64, error) {
	type result struct {
		lat  []time.Duration
		errs int64
	}
	deadline := time.Now().Add(d)
	res := make(chan result, conns)
	cs := make([]net.Conn, 0, conns)
	for range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			for _, c := range cs {
				c.Close()
			}
			return 0, nil, 0, err
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		go func() {
			defer c.Close()
			msg := bytes.Repeat([]byte{'x'}, size)
			in := make([]byte, size)
			r := result{lat: make([]time.Duration, 0, 1<<16)}
			c.SetDeadline(deadline.Add(5 * time.Second))
			for {
				start := time.Now()
				if !start.Before(deadline) {
					break
				}
				if _, err := c.Write(msg); err != nil {
					r.errs++
					break
				}
				if _, err := io.ReadFull(c, in); err != nil {
					r.errs++
					break
				}
				r.lat = append(r.lat, time.Since(start))
			}
			res <- r
		}()
	}
	var all []time.Duration
	var errs int64
	for range conns {
		r := <-res
		all = append(all, r.lat...)
		errs += r.errs
	}
	return int64(len(all)), all, errs, nil
}

// startSinkBackend reads and discards everything on each connection, adding
// the bytes to received: the far end of the TCP throughput scenario.
func startSinkBackend(received *atomic.Int64) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go acceptLoop(ln, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			received.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	return ln, nil
}

// streamLoad runs conns connections to addr, each writing 256 KiB chunks
// for d; the bytes are counted where they arrive (received, the sinks' counter).
// It returns the bytes received during d and the write errors.
func streamLoad(addr string, conns int, d time.Duration, received *atomic.Int64) (int64, time.Duration, int64, error) {
	cs, err := dialAll(addr, conns)
	if err != nil {
		return 0, 0, 0, err
	}
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	r0 := received.Load()
	for _, c := range cs {
		wg.Go(func() {
			defer c.Close()
			chunk := bytes.Repeat([]byte{'x'}, 256<<10)
			c.SetWriteDeadline(deadline)
			for {
				if _, err := c.Write(chunk); err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						errs.Add(1)
					}
					return
				}
			}
		})
	}
	time.Sleep(time.Until(deadline))
	n, el := received.Load()-r0, time.Since(start)
	wg.Wait()
	return n, el, errs.Load(), nil
}

func dialAll(addr string, n int) ([]net.Conn, error) {
	cs := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			for _, c := range cs {
				c.Close()
			}
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// connLoad runs workers loops against addr for d, each connecting, sending a
// size-byte message, reading its echo and closing, and returns the
// connections completed, their latencies (connect to close) and the errors.
func connLoad(addr string, workers, size int, d time.Duration) (int64, []time.Duration, int64) {
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	var all []time.Duration
	var errs int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			msg := bytes.Repeat([]byte{'x'}, size)
			in := make([]byte, size)
			lat := make([]time.Duration, 0, 1<<14)
			var e int64
			for {
				start := time.Now()
				if !start.Before(deadline) {
					break
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					e++
					continue
				}
				c.SetDeadline(start.Add(5 * time.Second))
				_, err = c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, in)
				}
				c.Close()
				if err != nil {
					e++
					continue
				}
				lat = append(lat, time.Since(start))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			mu.Unlock()
		})
	}
	wg.Wait()
	return int64(len(all)), all, errs
}

// idleRequest is what each idle connection sends once before going quiet.
const idleRequest = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"

// openIdle opens n HTTP/1.1 keep-alive connections to addr, 100 at a time;
// each sends idleRequest and reads the whole response, so the proxy holds a
// complete keep-alive connection, then stays open. When n exceeds what the
// ephemeral port range gives one source address (perSource), connections are
// spread over source addresses 127.0.0.2, 127.0.0.3, …. It returns the open
// connections and the failures.
func openIdle(addr string, n, perSource int) ([]net.Conn, int64) {
	conns := make([]net.Conn, n)
	var errs atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(100, n) {
		wg.Go(func() {
			br := bufio.NewReaderSize(nil, 4096)
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				d := net.Dialer{Timeout: 5 * time.Second}
				if n > perSource {
					d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/perSource))}
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					errs.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br.Reset(c)
				if _, err := io.WriteString(c, idleRequest); err != nil || readResponse(br) != nil {
					errs.Add(1)
					c.Close()
					continue
				}
				c.SetDeadline(time.Time{})
				conns[i] = c
			}
		})
	}
	wg.Wait()
	open := conns[:0]
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	return open, errs.Load()
}

// readResponse reads one HTTP/1.1 response with a Content-Length body.
func readResponse(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) {
		return fmt.Errorf("status line %q", bytes.TrimSpace(line))
	}
	length := int64(-1)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > len(contentLength) && bytes.EqualFold(line[:len(contentLength)], contentLength) {
			if length, err = strconv.ParseInt(string(bytes.TrimSpace(line[len(contentLength):])), 10, 64); err != nil {
				return err
			}
		}
		if bytes.HasPrefix(bytes.ToLower(line), []byte("transfer-encoding:")) {
			return errors.New("chunked response; the backends send Content-Length")
		}
	}
	if length < 0 {
		return errors.New("no Content-Length")
	}
	_, err = br.Discard(int(length))
	return err
}

// stillOpen counts the connections the proxy has not closed: a read that
// times out at once means nothing (no EOF) is pending.
func stillOpen(conns []net.Conn) int {
	var open int
	one := make([]byte, 1)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(one); errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	return open
}

// portsPerSource is how many connections one source address may open to one
// destination: the ephemeral port range less a margin for other sockets.
func portsPerSource() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 20000
	}
	fs := strings.Fields(string(b))
	if len(fs) != 2 {
		return 20000
	}
	lo, err1 := strconv.Atoi(fs[0])
	hi, err2 := strconv.Atoi(fs[1])
	if err1 != nil || err2 != nil || hi-lo < 4000 {
		return 1000
	}
	return hi - lo + 1 - 2000
}
