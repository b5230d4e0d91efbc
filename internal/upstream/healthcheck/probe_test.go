package healthcheck

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/herald-proxy/herald/internal/testutil"
)

func dialer() DialFunc {
	d := &net.Dialer{}
	return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

// checkN runs n checks of one session against addr.
func checkN(t *testing.T, cfg *Config, addr string, n int) []Result {
	t.Helper()
	p := newProber(cfg, dialer())
	defer p.close()
	s := p.newSession(addr)
	defer s.close()
	var out []Result
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
		out = append(out, s.check(ctx))
		cancel()
	}
	return out
}

func mustBuild(t *testing.T, y string) *Config {
	t.Helper()
	c, errs := Build(parseHC(t, y), "hc", "backend")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return c
}

// seen records the last request a backend received.
type seen struct {
	mu  sync.Mutex
	req *nethttp.Request
}

func (s *seen) set(r *nethttp.Request) { s.mu.Lock(); s.req = r; s.mu.Unlock() }
func (s *seen) get() *nethttp.Request  { s.mu.Lock(); defer s.mu.Unlock(); return s.req }

func TestHTTPCheck(t *testing.T) {
	tests := []struct {
		name    string
		hc      string // http_health_check fields
		status  int
		header  string // response header "k: v"
		body    string
		want    Result
		wantReq func(t *testing.T, r *nethttp.Request)
	}{
		{name: "200 passes", hc: "path: /healthz", status: 200, want: Result{Outcome: Success},
			wantReq: func(t *testing.T, r *nethttp.Request) {
				// Envoy: GET path, Host = cluster name, user-agent Envoy/HC.
				if r.Method != "GET" || r.URL.Path != "/healthz" || r.Host != "backend" || r.UserAgent() != "Envoy/HC" {
					t.Errorf("request %s %s host %q ua %q", r.Method, r.URL.Path, r.Host, r.UserAgent())
				}
				if r.Header.Get("x-envoy-expected-rq-timeout-ms") != "" {
					t.Error("health checks carry no x-envoy-expected-rq-timeout-ms")
				}
			}},
		{name: "503 fails", hc: "path: /", status: 503, want: Result{Outcome: Failure, Detail: "status 503"}},
		{name: "immediate fail header", hc: "path: /", status: 503, header: "x-envoy-immediate-health-check-fail: true",
			want: Result{Outcome: Failure, ImmediateFail: true, Detail: "status 503"}},
		// The header only counts on a failing response.
		{name: "immediate fail header on 200", hc: "path: /", status: 200, header: "x-envoy-immediate-health-check-fail: true", want: Result{Outcome: Success}},
		{name: "retriable status", hc: "path: /, retriable_statuses: [{start: 429, end: 430}]", status: 429, want: Result{Outcome: RetriableFailure, Detail: "status 429"}},
		{name: "expected range", hc: "path: /, expected_statuses: [{start: 200, end: 300}]", status: 204, want: Result{Outcome: Success}},
		{name: "payload found in order", hc: `path: /, receive: [{text: "6f6b"}, {text: "21"}]`, status: 200, body: "all ok!", want: Result{Outcome: Success}},
		{name: "payload missing", hc: `path: /, receive: [{text: "6f6b"}]`, status: 200, body: "bad", want: Result{Outcome: Failure, Detail: "status 200, payload mismatch"}},
		{name: "payload beyond the buffer", hc: `path: /, response_buffer_size: 4, receive: [{text: "6f6b"}]`, status: 200, body: "xxxxok", want: Result{Outcome: Failure, Detail: "status 200, payload mismatch"}},
		{name: "host, method, body and headers", status: 200, want: Result{Outcome: Success},
			hc: `host: svc.example, path: "/p?q=1", method: POST, send: {text: "6869"},
				request_headers_to_add: [{header: {key: x-a, value: "1"}}, {header: {key: user-agent, value: custom}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]`,
			wantReq: func(t *testing.T, r *nethttp.Request) {
				b, _ := io.ReadAll(r.Body)
				if r.Method != "POST" || r.URL.RequestURI() != "/p?q=1" || r.Host != "svc.example" || string(b) != "hi" ||
					r.Header.Get("x-a") != "1" || r.UserAgent() != "custom" {
					t.Errorf("request %s %s host %q body %q x-a %q ua %q", r.Method, r.URL.RequestURI(), r.Host, b, r.Header.Get("x-a"), r.UserAgent())
				}
			}},
		{name: "remove header", hc: "path: /, request_headers_to_remove: [user-agent]", status: 200, want: Result{Outcome: Success},
			wantReq: func(t *testing.T, r *nethttp.Request) {
				if ua := r.Header.Values("user-agent"); len(ua) != 0 {
					t.Errorf("user-agent %q sent after removal", ua)
				}
			}},
	}
	for _, codec := range []string{"HTTP1", "HTTP2"} {
		for _, tc := range tests {
			t.Run(codec+"/"+tc.name, func(t *testing.T) {
				var last seen
				h := nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
					if tc.wantReq != nil {
						tc.wantReq(t, r)
					}
					last.set(r)
					if k, v, ok := strings.Cut(tc.header, ": "); ok {
						w.Header().Set(k, v)
					}
					w.WriteHeader(tc.status)
					io.WriteString(w, tc.body)
				})
				addr := testutil.HTTPBackend(t, h)
				if codec == "HTTP2" {
					addr = testutil.H2CBackend(t, h)
				}
				cfg := mustBuild(t, base+"http_health_check: {codec_client_type: "+codec+", "+tc.hc+"}}")
				got := checkN(t, cfg, addr, 1)[0]
				got.err = nil
				if got != tc.want {
					t.Errorf("result = %+v, want %+v", got, tc.want)
				}
				if last.get() == nil {
					t.Error("backend saw no request")
				} else if p := last.get().Proto; p != map[string]string{"HTTP1": "HTTP/1.1", "HTTP2": "HTTP/2.0"}[codec] {
					t.Errorf("protocol %s", p)
				}
			})
		}
	}
}

// connCounter starts an HTTP/1.1 backend counting accepted connections.
func connCounter(t *testing.T, h nethttp.Handler) (string, *atomic.Int32) {
	var n atomic.Int32
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st nethttp.ConnState) {
		if st == nethttp.StateNew {
			n.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), &n
}

func TestHTTPConnectionReuse(t *testing.T) {
	tests := []struct {
		name      string
		reuse     string
		handler   nethttp.HandlerFunc
		wantConns int32
		want      Outcome
	}{
		{name: "reused by default", reuse: "", wantConns: 1, want: Success,
			handler: func(w nethttp.ResponseWriter, r *nethttp.Request) {}},
		{name: "reuse_connection false", reuse: "reuse_connection: false, ", wantConns: 3, want: Success,
			handler: func(w nethttp.ResponseWriter, r *nethttp.Request) {}},
		// A failing response does not close the connection by itself.
		{name: "connection close honoured", reuse: "", wantConns: 3, want: Success,
			handler: func(w nethttp.ResponseWriter, r *nethttp.Request) { w.Header().Set("connection", "close") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := connCounter(t, tc.handler)
			cfg := mustBuild(t, base+tc.reuse+"http_health_check: {path: /}}")
			for i, r := range checkN(t, cfg, addr, 3) {
				if r.Outcome != tc.want {
					t.Errorf("check %d = %+v, want %v", i, r, tc.want)
				}
			}
			if got := conns.Load(); got != tc.wantConns {
				t.Errorf("connections = %d, want %d", got, tc.wantConns)
			}
		})
	}
}

// A kept connection the backend closed while idle is replaced, not
// counted as a failure (Envoy notices the close while idle).
func TestHTTPStaleConnection(t *testing.T) {
	// The backend answers one request per connection with keep-alive, then
	// closes it.
	addr, conns := tcpServer(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		got := ""
		for !strings.Contains(got, "\r\n\r\n") {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got += string(buf[:n])
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
	})
	cfg := mustBuild(t, base+"http_health_check: {path: /}}")
	for i, r := range checkN(t, cfg, addr, 3) {
		if r.Outcome != Success {
			t.Errorf("check %d = %+v, want success", i, r)
		}
	}
	if got := conns.Load(); got < 3 {
		t.Errorf("connections = %d, want a new one per check", got)
	}
}

func TestNetworkFailures(t *testing.T) {
	tests := []struct {
		name string
		hc   string
	}{
		{name: "http refused", hc: "http_health_check: {path: /}"},
		{name: "http2 refused", hc: "http_health_check: {path: /, codec_client_type: HTTP2}"},
		{name: "tcp refused", hc: "tcp_health_check: {}"},
		{name: "grpc refused", hc: "grpc_health_check: {}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustBuild(t, base+tc.hc+"}")
			if r := checkN(t, cfg, testutil.ClosedPort(t), 1)[0]; r.Outcome != NetworkFailure {
				t.Errorf("result = %+v, want a network failure", r)
			}
		})
	}
}

// tcpServer answers each connection with reply(read bytes).
func tcpServer(t *testing.T, serve func(c net.Conn)) (string, *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String(), &n
}

func TestTCPCheck(t *testing.T) {
	// pong answers every "PING" with "PO" then "NG" in two writes, and
	// "??" to anything else.
	pong := func(c net.Conn) {
		buf := make([]byte, 4)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if string(buf) == "PING" {
				c.Write([]byte("xPO"))
				c.Write([]byte("NGx"))
			} else {
				c.Write([]byte("??"))
			}
		}
	}
	tests := []struct {
		name      string
		hc        string
		serve     func(net.Conn)
		checks    int
		want      Outcome
		wantConns int32
	}{
		{name: "connect only", hc: "{}", serve: func(net.Conn) {}, checks: 2, want: Success, wantConns: 2},
		{name: "ping pong reused", hc: `{send: {text: "50494e47"}, receive: [{text: "504f"}, {text: "4e47"}]}`, serve: pong, checks: 3, want: Success, wantConns: 1},
		{name: "no reuse", hc: `{send: {text: "50494e47"}, receive: [{text: "504f4e47"}]}`, serve: pong, checks: 2, want: Success, wantConns: 2},
		// Blocks must be found in order: "NG" then "PO" never matches.
		{name: "out of order", hc: `{send: {text: "50494e47"}, receive: [{text: "4e47"}, {text: "504f"}]}`, serve: pong, checks: 1, want: NetworkFailure, wantConns: 1},
		{name: "peer closes", hc: `{send: {text: "50494e47"}, receive: [{text: "504f"}]}`, serve: func(net.Conn) {}, checks: 1, want: NetworkFailure, wantConns: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := tcpServer(t, tc.serve)
			reuse := ""
			if tc.name == "no reuse" {
				reuse = "reuse_connection: false, "
			}
			cfg := mustBuild(t, "{timeout: 0.3s, interval: 5s, unhealthy_threshold: 3, healthy_threshold: 2, "+reuse+"tcp_health_check: "+tc.hc+"}")
			for i, r := range checkN(t, cfg, addr, tc.checks) {
				if r.Outcome != tc.want {
					t.Errorf("check %d = %+v, want %v", i, r, tc.want)
				}
			}
			testutil.Eventually(t, 2*time.Second, func() error {
				if got := conns.Load(); got != tc.wantConns {
					return errorf("connections = %d, want %d", got, tc.wantConns)
				}
				return nil
			})
		})
	}
}

// grpcHealth is a grpc.health.v1.Health/Check server over h2c, speaking
// the wire protocol: statuses maps a service name to its ServingStatus;
// unknown services get grpc-status 5 (NOT_FOUND) trailers-only, as grpc-go's
// health server answers.
func grpcHealth(t *testing.T, statuses map[string]int, last *seen) string {
	return testutil.H2CBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		last.set(r)
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/grpc.health.v1.Health/Check" || r.Header.Get("content-type") != "application/grpc" || len(b) < 5 {
			w.WriteHeader(400)
			return
		}
		service := ""
		msg := b[5:]
		if num, _, n := protowire.ConsumeTag(msg); n > 0 && num == 1 {
			v, _ := protowire.ConsumeString(msg[n:])
			service = v
		}
		st, ok := statuses[service]
		w.Header().Set("content-type", "application/grpc")
		if !ok {
			w.Header().Set("grpc-status", "5")
			w.Header().Set("grpc-message", "unknown service")
			w.WriteHeader(200)
			return
		}
		w.Header().Set("trailer", "grpc-status")
		var resp []byte
		resp = protowire.AppendTag(resp, 1, protowire.VarintType)
		resp = protowire.AppendVarint(resp, uint64(st))
		frame := make([]byte, 5, 5+len(resp))
		binary.BigEndian.PutUint32(frame[1:], uint32(len(resp)))
		w.WriteHeader(200)
		w.Write(append(frame, resp...))
		w.Header().Set("grpc-status", "0")
	}))
}

func TestGRPCCheck(t *testing.T) {
	var last seen
	addr := grpcHealth(t, map[string]int{"": 1, "up": 1, "down": 2}, &last)
	tests := []struct {
		name string
		hc   string
		want Outcome
	}{
		{name: "server serving", hc: "{}", want: Success},
		{name: "service serving", hc: "{service_name: up, authority: svc.grpc}", want: Success},
		{name: "not serving", hc: "{service_name: down}", want: Failure},
		{name: "unknown service", hc: "{service_name: nope}", want: Failure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustBuild(t, "{timeout: 5s, interval: 5s, unhealthy_threshold: 3, healthy_threshold: 2, grpc_health_check: "+tc.hc+"}")
			if r := checkN(t, cfg, addr, 1)[0]; r.Outcome != tc.want {
				t.Errorf("result = %+v, want %v", r, tc.want)
			}
			r := last.get()
			wantAuth := "backend"
			if strings.Contains(tc.hc, "authority") {
				wantAuth = "svc.grpc"
			}
			if r.Host != wantAuth || r.UserAgent() != "Envoy/HC" || r.Header.Get("grpc-timeout") != "5000m" || r.Header.Get("te") != "trailers" {
				t.Errorf("request host %q ua %q grpc-timeout %q te %q", r.Host, r.UserAgent(), r.Header.Get("grpc-timeout"), r.Header.Get("te"))
			}
		})
	}
}

func TestParseHealthResponse(t *testing.T) {
	frame := func(msg []byte) []byte {
		f := make([]byte, 5)
		binary.BigEndian.PutUint32(f[1:], uint32(len(msg)))
		return append(f, msg...)
	}
	tests := []struct {
		name    string
		in      []byte
		want    int
		wantErr bool
	}{
		{name: "serving", in: frame([]byte{0x08, 0x01}), want: 1},
		{name: "default is unknown", in: frame(nil), want: 0},
		{name: "unknown field skipped", in: frame([]byte{0x12, 0x01, 'x', 0x08, 0x02}), want: 2},
		{name: "short", in: []byte{0, 0}, wantErr: true},
		{name: "compressed", in: append([]byte{1}, frame(nil)[1:]...), wantErr: true},
		{name: "two messages", in: append(frame([]byte{0x08, 0x01}), frame([]byte{0x08, 0x01})...), wantErr: true},
		{name: "garbage", in: frame([]byte{0x08}), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHealthResponse(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseHealthResponse = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
