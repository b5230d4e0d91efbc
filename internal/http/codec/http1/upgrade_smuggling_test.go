package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// smuggled is a request pipelined after an upgrade or CONNECT request: it
// must never be parsed as a request once the first one put the codec in
// raw mode.
const smuggled = "GET /admin HTTP/1.1\r\nHost: internal\r\n\r\n"

// TestServerUpgradeNoSmuggling checks that the bytes after an upgrade (or
// CONNECT) request's headers are its raw body whatever the answer, so that
// no request can hide behind it, and that requests whose framing makes the
// upgrade impossible are served (or refused) as plain requests, their body
// framed as usual.
func TestServerUpgradeNoSmuggling(t *testing.T) {
	const ws = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
	tests := []struct {
		name      string
		in        string
		status    int  // the handler's answer
		readBody  bool // the handler reads the request body to its end
		wantPaths []string
		wantBody  string // body of the first request, when read
		wantClose bool   // "connection: close" on the first response
		wantCerr  int    // a codec error status instead of requests
		tunnel    bool   // the answer opens a tunnel: raw bytes follow it
	}{
		{name: "refused websocket, body unread", in: ws + "\r\n" + smuggled, status: 403,
			wantPaths: []string{"/ws"}, wantClose: true},
		{name: "refused websocket, body read", in: ws + "\r\n" + smuggled, status: 403, readBody: true,
			wantPaths: []string{"/ws"}, wantBody: smuggled, wantClose: true},
		{name: "upstream answers 200 to the upgrade", in: ws + "\r\n" + smuggled, status: 200, readBody: true,
			wantPaths: []string{"/ws"}, wantBody: smuggled, wantClose: true},
		{name: "accepted websocket", in: ws + "\r\n" + smuggled, status: 101, readBody: true,
			wantPaths: []string{"/ws"}, wantBody: smuggled, tunnel: true},
		{name: "refused CONNECT", in: "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n" + smuggled, status: 407,
			wantPaths: []string{""}, wantClose: true},
		{name: "accepted CONNECT", in: "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n" + smuggled, status: 200, readBody: true,
			wantPaths: []string{""}, wantBody: smuggled, tunnel: true},
		{name: "CONNECT with content-length 0", in: "CONNECT h:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + smuggled, status: 403,
			wantPaths: []string{""}, wantClose: true},
		// A framed body makes the request a plain one (upgrade.go): its
		// body ends where its framing says and the next request is
		// herald's to parse, route and filter.
		{name: "upgrade with content-length", in: ws + "Content-Length: 3\r\n\r\nabc" + smuggled, status: 200, readBody: true,
			wantPaths: []string{"/ws", "/admin"}, wantBody: "abc"},
		{name: "upgrade with chunked body", in: ws + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled, status: 200, readBody: true,
			wantPaths: []string{"/ws", "/admin"}, wantBody: "abc"},
		{name: "upgrade with content-length and chunked", in: ws + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled,
			wantCerr: 400},
		{name: "CONNECT with a content-length body", in: "CONNECT h:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + smuggled,
			wantCerr: 400},
		{name: "CONNECT with a chunked body", in: "CONNECT h:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			wantCerr: 501},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var paths []string
			h := &recordingHandler{skipBody: !tt.readBody}
			h.respond = func(s hhttp.ServerStream) {
				paths = append(paths, s.RequestHeaders().Path())
				resp := respHeaders(tt.status)
				if tt.status == 101 {
					resp.Add("connection", "upgrade")
					resp.Add("upgrade", "websocket")
				}
				_ = s.WriteHeaders(resp, true)
			}
			c := newMemConn(tt.in)
			_ = Serve(c, hhttp.ServerOptions{}, h)
			if tt.wantCerr != 0 {
				if len(h.codecErrs) != 1 || h.codecErrs[0].Status != tt.wantCerr || len(paths) != 0 {
					t.Fatalf("codec errors %v, requests %q; want one %d and no request", h.codecErrs, paths, tt.wantCerr)
				}
				return
			}
			if strings.Join(paths, " ") != strings.Join(tt.wantPaths, " ") {
				t.Fatalf("requests served: %q, want %q", paths, tt.wantPaths)
			}
			if tt.readBody && h.requests[0].body != tt.wantBody {
				t.Errorf("first body = %q, want %q", h.requests[0].body, tt.wantBody)
			}
			if !c.closed {
				t.Error("connection not closed")
			}
			out := c.out.String()
			if tt.tunnel {
				return
			}
			br := bufio.NewReader(bytes.NewReader(c.out.Bytes()))
			resp, err := nethttp.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("first response unparsable: %v (%q)", err, out)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if resp.Close != tt.wantClose {
				t.Errorf("connection: close = %v, want %v (%q)", resp.Close, tt.wantClose, out)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			n := 1
			for {
				resp, err := nethttp.ReadResponse(br, nil)
				if err != nil {
					break
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				n++
			}
			if n != len(tt.wantPaths) {
				t.Errorf("%d responses written, want %d: %q", n, len(tt.wantPaths), out)
			}
		})
	}
}

// FuzzServerUpgradeSmuggling checks, for any bytes after a request head
// the fuzzer also shapes, that once the codec took a request as an upgrade
// or CONNECT (raw mode) no other request is served on the connection, that
// an HTTP/1.1 request the connection manager would see as an upgrade
// (upgrade field and the connection token: connmgr's isUpgrade) is in raw
// mode, and that a refusal carries "connection: close".
func FuzzServerUpgradeSmuggling(f *testing.F) {
	for _, s := range []struct {
		head, tail string
		status     int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", smuggled, 403},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n", "ab" + smuggled, 200},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\nUpgrade: h2c\r\n\r\n", smuggled, 200},
		{"CONNECT a:1 HTTP/1.1\r\n\r\n", smuggled, 200},
		{"POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\nTransfer-Encoding: chunked\r\n\r\n", "0\r\n\r\n" + smuggled, 101},
	} {
		f.Add(s.head, s.tail, s.status)
	}
	f.Fuzz(func(t *testing.T, head, tail string, status int) {
		if status < 200 || status > 599 {
			status = 101
		}
		var raw []bool
		h := &recordingHandler{}
		h.respond = func(s hhttp.ServerStream) {
			st := s.(*serverStream)
			raw = append(raw, st.upgrade)
			req := s.RequestHeaders()
			if st.http11 && req.Has("upgrade") && connectionUpgrade(req) && !st.upgrade {
				t.Fatalf("request the connection manager sees as an upgrade is not raw: %q", req.Fields)
			}
			resp := respHeaders(status)
			if err := s.WriteHeaders(resp, true); err == nil && st.upgrade && !st.tunnel && !st.closeAfter {
				t.Fatalf("refusal of an upgrade keeps the connection")
			}
		}
		c := newMemConn(head + tail)
		_ = Serve(c, hhttp.ServerOptions{MaxRequestHeadersBytes: 4096, MaxRequestHeadersCount: 20}, h)
		for i, r := range raw {
			if r && i != len(raw)-1 {
				t.Fatalf("request %d was raw but %d more were served", i, len(raw)-1-i)
			}
		}
	})
}

// rawUpstream accepts one connection, reads a request head, answers resp
// and reports every byte it received after the head until the client
// closed or half-closed.
func rawUpstream(t *testing.T, resp string) (addr string, rest <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				ch <- "head: " + err.Error()
				return
			}
			if line == "\r\n" {
				break
			}
		}
		_, _ = io.WriteString(c, resp)
		b, _ := io.ReadAll(br)
		ch <- string(b)
	}()
	return ln.Addr().String(), ch
}

// TestClientUpgradePayloadWaitsForResponse checks that the payload of an
// upgrade or CONNECT request reaches the upstream only after the upstream
// accepted it, as Envoy's router pauses it (paused_for_websocket_,
// paused_for_connect_): an upstream that refuses keeps parsing HTTP/1.1 and
// would take early payload for requests.
func TestClientUpgradePayloadWaitsForResponse(t *testing.T) {
	wsReq := func() *hhttp.Headers {
		return reqHeaders("GET", "/ws", "a", "connection", "Upgrade", "upgrade", "websocket")
	}
	connectReq := func() *hhttp.Headers {
		h := &hhttp.Headers{}
		h.Add(hhttp.Method, "CONNECT")
		h.Add(hhttp.Authority, "h:443")
		return h
	}
	tests := []struct {
		name     string
		req      func() *hhttp.Headers
		resp     string
		early    string // written before the response
		endEarly bool   // the payload ends before the response
		late     string // written after the response
		wantLate error  // what writing late returns
		wantSeen string // what the upstream received after the head
	}{
		{name: "refused websocket drops the payload", req: wsReq,
			resp:  "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
			early: smuggled, late: smuggled, wantLate: errUpgradeRefused, wantSeen: ""},
		{name: "upgrade answered 200 drops the payload", req: wsReq,
			resp:  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			early: smuggled, endEarly: true, wantSeen: ""},
		{name: "refused CONNECT drops the payload", req: connectReq,
			resp:  "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
			early: smuggled, late: "x", wantLate: errUpgradeRefused, wantSeen: ""},
		{name: "accepted websocket sends the kept payload first", req: wsReq,
			resp:  "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			early: "early:", late: "late", wantSeen: "early:late"},
		{name: "accepted websocket, payload ended before the 101", req: wsReq,
			resp:  "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			early: "all", endEarly: true, wantSeen: "all"},
		{name: "accepted CONNECT", req: connectReq,
			resp:  "HTTP/1.1 200 Connection Established\r\n\r\n",
			early: "hello ", late: "tunnel", wantSeen: "hello tunnel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, rest := rawUpstream(t, tt.resp)
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			cc := NewClientConn(nc)
			if err := cc.WriteHeaders(tt.req(), false); err != nil {
				t.Fatal(err)
			}
			if err := cc.WriteData([]byte(tt.early), tt.endEarly); err != nil {
				t.Fatalf("early payload: %v", err)
			}
			resp := &hhttp.Headers{}
			if _, err := cc.ReadHeaders(resp); err != nil {
				t.Fatal(err)
			}
			tunnel := tunnelStatus(resp.StatusCode(), tt.req().Method() == "CONNECT")
			if !tunnel {
				// A refusal's body is framed as usual.
				_ = readAll(t, cc)
			}
			if !tt.endEarly {
				if err := cc.WriteData([]byte(tt.late), true); !errors.Is(err, tt.wantLate) {
					t.Fatalf("late payload: %v, want %v", err, tt.wantLate)
				}
			}
			if !tunnel {
				cc.Close(nil) // the upstream's read ends with the close
			}
			if got := <-rest; got != tt.wantSeen {
				t.Errorf("upstream received %q after the head, want %q", got, tt.wantSeen)
			}
			if cc.Reusable() {
				t.Error("reusable after an upgrade request")
			}
			cc.Close(nil)
		})
	}
}

func TestClientUpgradePayloadLimit(t *testing.T) {
	addr, _ := rawUpstream(t, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := NewClientConn(nc)
	defer cc.Close(errors.New("done"))
	if err := cc.WriteHeaders(reqHeaders("GET", "/", "a", "connection", "upgrade", "upgrade", "x"), false); err != nil {
		t.Fatal(err)
	}
	if err := cc.WriteData(make([]byte, maxPendingRaw), false); err != nil {
		t.Fatalf("payload up to the limit: %v", err)
	}
	if err := cc.WriteData([]byte{1}, false); !errors.Is(err, errRawPendingFull) {
		t.Fatalf("payload over the limit: %v, want %v", err, errRawPendingFull)
	}
	// The exchange fails as a whole: no truncated payload after a 101.
	if _, err := cc.ReadHeaders(&hhttp.Headers{}); err == nil {
		t.Fatal("ReadHeaders succeeded after the payload overflowed")
	}
}
