package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	nethttp "net/http"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// helloResponse is the HTTP/1.1 backends' answer: keep-alive, 13-byte body.
const helloResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"

// startHTTP1Backend serves HTTP/1.1 keep-alive on a loopback port: every
// request (pipelined ones too) gets helloResponse. It is written on raw TCP
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
		if _, err := bw.WriteString(helloResponse); err != nil {
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
