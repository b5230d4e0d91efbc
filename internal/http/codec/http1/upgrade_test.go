package http1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

func TestServerUpgradeClassification(t *testing.T) {
	const ws = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
	tests := []struct {
		name      string
		in        string
		wantRaw   bool   // the body is the rest of the connection
		wantBody  string // what ReadBody returns (the peer closes after in)
		wantField string // upgrade field the request keeps ("" for none)
	}{
		{name: "websocket upgrade reads raw bytes until the close", in: ws + "\r\nraw bytes", wantRaw: true, wantBody: "raw bytes", wantField: "websocket"},
		{name: "token among others, custom type", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, UPGRADE\r\nUpgrade: x-custom\r\n\r\nxyz", wantRaw: true, wantBody: "xyz", wantField: "x-custom"},
		// Envoy drops h2c upgrade headers and serves the request as HTTP/1.1.
		{name: "h2c is served as a plain request", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"},
		{name: "upgrade without the connection token is a plain request", in: "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", wantField: "websocket"},
		// RFC 9110 §7.8: Upgrade in HTTP/1.0 is ignored.
		{name: "HTTP/1.0 upgrade is a plain request", in: "GET / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", wantField: "websocket"},
		{name: "framed body: served as a plain request", in: ws + "Content-Length: 3\r\n\r\nabc", wantBody: "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &recordingHandler{respond: func(s hhttp.ServerStream) {
				resp := &hhttp.Headers{}
				resp.SetStatus(200)
				_ = s.WriteHeaders(resp, true)
			}}
			_ = Serve(newMemConn(tt.in), hhttp.ServerOptions{}, h)
			if len(h.requests) != 1 {
				t.Fatalf("got %d requests, want 1", len(h.requests))
			}
			r := h.requests[0]
			if got := !r.endStream && r.bodyErr == nil && tt.wantRaw; got != tt.wantRaw {
				t.Errorf("raw = %v (endStream %v, bodyErr %v), want %v", got, r.endStream, r.bodyErr, tt.wantRaw)
			}
			if r.body != tt.wantBody {
				t.Errorf("body = %q, want %q", r.body, tt.wantBody)
			}
			got := ""
			for _, f := range r.headers {
				if f.Name == "upgrade" {
					got = f.Value
				}
				if f.Name == "http2-settings" {
					t.Errorf("http2-settings kept: %q", f.Value)
				}
			}
			if got != tt.wantField {
				t.Errorf("upgrade field = %q, want %q", got, tt.wantField)
			}
		})
	}
}

// tunnelHandler answers an upgrade (or a CONNECT) with status and echoes
// the raw request bytes upper-cased, reading on one goroutine while it
// writes on another, as the connection manager does.
type tunnelHandler struct {
	status  int           // 101 or 200 (a CONNECT), or a refusal
	readErr chan error    // what the reading goroutine ended with
	done    chan struct{} // closed when ServeStream returned
}

func (th *tunnelHandler) ServeStream(s hhttp.ServerStream) {
	defer close(th.done)
	resp := &hhttp.Headers{}
	resp.SetStatus(th.status)
	chunks := make(chan []byte, 16)
	go func() {
		defer close(chunks)
		buf := make([]byte, 64)
		for {
			n, err := s.ReadBody(buf)
			if n > 0 {
				chunks <- []byte(strings.ToUpper(string(buf[:n])))
			}
			if err != nil {
				th.readErr <- err
				return
			}
		}
	}()
	switch th.status {
	case 101:
		resp.Add("upgrade", "websocket")
		resp.Add("connection", "Upgrade")
	case 200:
		// Dropped by the codec on a 2xx to CONNECT.
		resp.Add("content-length", "5")
		resp.Add("x-tunnel", "yes")
	default:
		resp.Add("content-length", "2")
		_ = s.WriteHeaders(resp, false)
		_ = s.WriteData([]byte("no"), true)
		for range chunks {
		}
		return
	}
	if err := s.WriteHeaders(resp, false); err != nil {
		return
	}
	for c := range chunks {
		if err := s.WriteData(c, false); err != nil {
			return
		}
	}
	_ = s.WriteData(nil, true)
}

func (th *tunnelHandler) ServeCodecError(hhttp.ServerStream, *hhttp.CodecError) {}

func TestServerUpgradeTunnel(t *testing.T) {
	tests := []struct {
		name     string
		head     string // the request head
		status   int
		wantHead string
	}{
		{
			name:     "websocket: 101 keeps its connection and upgrade fields, no framing",
			head:     "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			status:   101,
			wantHead: "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n",
		},
		{
			// RFC 9110 §9.3.6: no content-length or transfer-encoding in a
			// 2xx to CONNECT.
			name:     "CONNECT: 200 opens the tunnel",
			head:     "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
			status:   200,
			wantHead: "HTTP/1.1 200 OK\r\nx-tunnel: yes\r\n\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := &tunnelHandler{status: tt.status, readErr: make(chan error, 1), done: make(chan struct{})}
			addr, _ := listen(t, hhttp.ServerOptions{}, th)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			// Raw bytes may follow the headers at once.
			if _, err := io.WriteString(c, tt.head+"hello"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("reading head: %v (got %q)", err, head.String())
				}
				head.WriteString(line)
				if line == "\r\n" {
					break
				}
			}
			if head.String() != tt.wantHead {
				t.Fatalf("head = %q, want %q", head.String(), tt.wantHead)
			}
			readN := func(n int) string {
				t.Helper()
				b := make([]byte, n)
				if _, err := io.ReadFull(br, b); err != nil {
					t.Fatalf("reading %d bytes: %v", n, err)
				}
				return string(b)
			}
			if got := readN(5); got != "HELLO" {
				t.Errorf("echo = %q, want HELLO", got)
			}
			// Many round trips: the tunnel stays open both ways.
			for i := 0; i < 100; i++ {
				if _, err := io.WriteString(c, "ping"); err != nil {
					t.Fatal(err)
				}
				if got := readN(4); got != "PING" {
					t.Fatalf("round %d: echo = %q, want PING", i, got)
				}
			}
			// Half-close: the server sees the end of the request, still
			// sends what it has, then ends its own side.
			if _, err := io.WriteString(c, "last"); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("reading the rest: %v", err)
			}
			if string(rest) != "LAST" {
				t.Errorf("after half-close got %q, want LAST then EOF", rest)
			}
			if err := <-th.readErr; err != io.EOF {
				t.Errorf("request body ended with %v, want io.EOF", err)
			}
		})
	}
}

func TestServerUpgradeRefused(t *testing.T) {
	th := &tunnelHandler{status: 403, readErr: make(chan error, 1), done: make(chan struct{})}
	addr, _ := listen(t, hhttp.ServerOptions{}, th)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The client keeps its side open: the body read must still end once
	// the refusal went out.
	if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got := readAllWithDeadline(t, c, 10*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 403 Forbidden\r\n") || !strings.HasSuffix(got, "\r\n\r\nno") {
		t.Errorf("response = %q, want a 403 with body no, then the close", got)
	}
	select {
	case err := <-th.readErr:
		if err == nil || err == io.EOF {
			t.Errorf("blocked body read ended with %v, want an error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the body read was not woken after the refusal")
	}
}

func TestClientUpgrade(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		seen <- head.String()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-custom\r\nConnection: Upgrade\r\n\r\nearly:")
		// Echo until the client half-closes, then close.
		_, _ = io.Copy(c, br)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	cc := NewClientConn(nc)
	req := reqHeaders("GET", "/up", "a", "connection", "upgrade", "upgrade", "x-custom")
	if err := cc.WriteHeaders(req, false); err != nil {
		t.Fatal(err)
	}
	wantHead := "GET /up HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: x-custom\r\n\r\n"
	if got := <-seen; got != wantHead {
		t.Errorf("upstream saw %q, want %q (no chunked framing)", got, wantHead)
	}
	resp := &hhttp.Headers{}
	endStream, err := cc.ReadHeaders(resp)
	if err != nil || endStream || resp.StatusCode() != 101 {
		t.Fatalf("ReadHeaders = %d, endStream %v, %v; want 101 with a body", resp.StatusCode(), endStream, err)
	}
	if err := cc.WriteData([]byte("abc"), false); err != nil {
		t.Fatal(err)
	}
	if err := cc.WriteData([]byte("def"), true); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, cc); got != "early:abcdef" {
		t.Errorf("body = %q, want early:abcdef", got)
	}
	if cc.Reusable() {
		t.Error("an upgraded connection is reusable")
	}
	cc.Close(nil)
}

func TestClientUpgradeRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
		_, _ = io.Copy(io.Discard, br)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	cc := NewClientConn(nc)
	if err := cc.WriteHeaders(reqHeaders("GET", "/up", "a", "connection", "Upgrade", "upgrade", "websocket"), false); err != nil {
		t.Fatal(err)
	}
	resp := &hhttp.Headers{}
	if _, err := cc.ReadHeaders(resp); err != nil || resp.StatusCode() != 404 {
		t.Fatalf("ReadHeaders = %d, %v; want 404", resp.StatusCode(), err)
	}
	if got := readAll(t, cc); got != "nope" {
		t.Errorf("body = %q, want nope (normal framing)", got)
	}
	if err := cc.WriteData(nil, true); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ending the request: %v", err)
	}
	if cc.Reusable() {
		t.Error("a connection that carried an upgrade request is reusable")
	}
	cc.Close(nil)
}

func TestClientConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		seen <- head.String()
		// A content-length on a 2xx to CONNECT is ignored (RFC 9110 §9.3.6).
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n")
		_, _ = io.Copy(c, br)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	cc := NewClientConn(nc)
	req := &hhttp.Headers{}
	req.Add(hhttp.Method, "CONNECT")
	req.Add(hhttp.Authority, "h:443")
	if err := cc.WriteHeaders(req, false); err != nil {
		t.Fatal(err)
	}
	if got, want := <-seen, "CONNECT h:443 HTTP/1.1\r\nhost: h:443\r\n\r\n"; got != want {
		t.Errorf("upstream saw %q, want %q", got, want)
	}
	resp := &hhttp.Headers{}
	endStream, err := cc.ReadHeaders(resp)
	if err != nil || endStream || resp.StatusCode() != 200 {
		t.Fatalf("ReadHeaders = %d, endStream %v, %v; want 200 with the tunnel as body", resp.StatusCode(), endStream, err)
	}
	if err := cc.WriteData([]byte("tunnel"), true); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, cc); got != "tunnel" {
		t.Errorf("body = %q, want tunnel", got)
	}
	cc.Close(nil)
}

// TestClientUpgradeResetAfterHalfClose: an upstream that closes its socket
// fully after the tunnel's last bytes answers herald's half-close (FIN)
// with RST, which the kernel reports as ECONNRESET where the EOF was; the
// tunnel still ends cleanly (io.EOF after every byte sent). An RST before
// herald half-closed stays an error.
func TestClientUpgradeResetAfterHalfClose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		halfClose bool
		wantErr   bool
	}{
		{name: "reset after our FIN ends the tunnel", halfClose: true},
		{name: "reset while our side is open is an error", halfClose: false, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-custom\r\nConnection: Upgrade\r\n\r\nbye")
				if tc.halfClose {
					// Wait for herald's FIN, then abort: RST.
					_, _ = io.Copy(io.Discard, br)
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
			}()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			cc := NewClientConn(nc)
			if err := cc.WriteHeaders(reqHeaders("GET", "/up", "a", "connection", "upgrade", "upgrade", "x-custom"), false); err != nil {
				t.Fatal(err)
			}
			resp := &hhttp.Headers{}
			if _, err := cc.ReadHeaders(resp); err != nil || resp.StatusCode() != 101 {
				t.Fatalf("ReadHeaders = %d, %v; want 101", resp.StatusCode(), err)
			}
			if tc.halfClose {
				if err := cc.WriteData(nil, true); err != nil {
					t.Fatal(err)
				}
			}
			var got []byte
			buf := make([]byte, 64)
			for {
				n, err := cc.ReadBody(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					if tc.wantErr {
						t.Fatalf("body %q ended with EOF, want an error", got)
					}
					break
				}
				if err != nil {
					if !tc.wantErr {
						t.Fatalf("body %q, error %v; want io.EOF", got, err)
					}
					return
				}
			}
			if string(got) != "bye" {
				t.Errorf("body = %q, want bye", got)
			}
		})
	}
}
