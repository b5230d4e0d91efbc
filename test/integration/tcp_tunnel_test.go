package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// Tunneling TCP over HTTP: tcp_proxy's tunneling_config carries each
// downstream connection as the body of a CONNECT (or POST) to an HTTP/2 or
// HTTP/1.1 upstream
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades#tunneling-tcp-over-http).

// tunnelRequest is what a tunnel server saw of one tunnel request.
type tunnelRequest struct {
	method, authority, path, client string
}

// tunnelServer records the requests of a test's tunnel server.
type tunnelServer struct {
	mu   sync.Mutex
	reqs []tunnelRequest
}

func (s *tunnelServer) record(r tunnelRequest) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
}

func (s *tunnelServer) requests() []tunnelRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tunnelRequest(nil), s.reqs...)
}

// h2TunnelHandler answers CONNECT (and POST) with status, then, on a 200,
// echoes the request body as the response body chunk by chunk and ends
// the response when the request ends.
func (s *tunnelServer) h2TunnelHandler(status int) nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		s.record(tunnelRequest{method: r.Method, authority: r.Host, path: r.URL.Path, client: r.Header.Get("x-tunnel-client")})
		w.WriteHeader(status)
		if status != 200 {
			return
		}
		fl := w.(nethttp.Flusher)
		fl.Flush()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				fl.Flush()
			}
			if err != nil {
				return
			}
		}
	})
}

// startH1TunnelServer is an HTTP/1.1 CONNECT (or POST) proxy: it reads the
// request head, answers status and, on a 2xx, echoes the raw bytes that
// follow until the client half-closes, then half-closes itself.
func (s *tunnelServer) startH1TunnelServer(t *testing.T, status int) string {
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
				br := bufio.NewReader(c)
				req, err := nethttp.ReadRequest(br)
				if err != nil {
					return
				}
				path := req.URL.Path
				if req.Method == "CONNECT" {
					path = ""
				}
				s.record(tunnelRequest{method: req.Method, authority: req.Host, path: path, client: req.Header.Get("x-tunnel-client")})
				fmt.Fprintf(c, "HTTP/1.1 %d %s\r\n\r\n", status, nethttp.StatusText(status))
				if status/100 != 2 {
					return
				}
				// br holds any tunnel bytes read with the head.
				io.Copy(c, br)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// h2ClusterOptions makes a cluster speak HTTP/2 (h2c).
const h2ClusterOptions = `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
`

// tunnelBootstrap renders a tcp_proxy listener "tunnel_in" tunneling to
// cluster "tunnel" at backend; tunnelFields are TunnelingConfig fields
// indented 12 spaces, after hostname and headers_to_add.
func tunnelBootstrap(backend string, h2 bool, maxAttempts int, tunnelFields, logPath string) string {
	cluster := staticCluster("tunnel", backend)
	if h2 {
		cluster = strings.Replace(cluster, "    connect_timeout: 1s\n", "    connect_timeout: 1s\n"+h2ClusterOptions, 1)
	}
	fields := fmt.Sprintf(`          cluster: tunnel
          max_connect_attempts: %d
          tunneling_config:
            hostname: "tunnel.example.com:%%DOWNSTREAM_LOCAL_PORT%%"
            headers_to_add:
            - header: { key: x-tunnel-client, value: "%%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%%" }
%s          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                text_format_source:
                  inline_string: "flags=%%RESPONSE_FLAGS%% rx=%%BYTES_RECEIVED%% tx=%%BYTES_SENT%%\n"
`, maxAttempts, tunnelFields, logPath)
	return bootstrap([]string{tcpProxyListener("tunnel_in", "tun", fields)}, cluster)
}

// exchangeThroughTunnel checks a tunnel both ways: a small ping-pong, then
// 1 MiB sent while the echo streams back, then a half-close that must come
// back as EOF after the last echoed byte.
func exchangeThroughTunnel(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("ping-pong: read %q, %v; want \"hello\"", got, err)
	}
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			// Downstream half-close: END_STREAM (HTTP/2) or FIN
			// (HTTP/1.1) upstream; the echo server then ends its side.
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	echoed, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v (after %d bytes)", err, len(echoed))
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing 1 MiB: %v", err)
	}
	if !bytes.Equal(echoed, payload) {
		t.Fatalf("echo: got %d bytes, want the %d bytes sent back unchanged", len(echoed), len(payload))
	}
}

func TestTCPTunnel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		h2           bool
		tunnelFields string
		wantMethod   string
		wantPath     string
	}{
		{name: "CONNECT over HTTP/2", h2: true, wantMethod: "CONNECT"},
		{name: "CONNECT over HTTP/1.1", wantMethod: "CONNECT"},
		{
			name: "POST over HTTP/2", h2: true, wantMethod: "POST", wantPath: "/tunnel",
			tunnelFields: "            use_post: true\n            post_path: /tunnel\n",
		},
		{
			// Envoy's post_path default is "/".
			name: "POST over HTTP/1.1", wantMethod: "POST", wantPath: "/",
			tunnelFields: "            use_post: true\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := &tunnelServer{}
			var backend string
			if tc.h2 {
				backend = testutil.H2CBackend(t, srv.h2TunnelHandler(200))
			} else {
				backend = srv.startH1TunnelServer(t, 200)
			}
			logPath := filepath.Join(t.TempDir(), "access.log")
			h := testutil.Start(t, tunnelBootstrap(backend, tc.h2, 1, tc.tunnelFields, logPath))
			addr := h.ListenerAddr("tunnel_in")
			exchangeThroughTunnel(t, addr)

			_, port, _ := net.SplitHostPort(addr)
			want := []tunnelRequest{{
				method: tc.wantMethod, authority: "tunnel.example.com:" + port,
				path: tc.wantPath, client: "127.0.0.1",
			}}
			if got := srv.requests(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("tunnel requests = %+v, want %+v", got, want)
			}
			lines := waitLines(t, logPath, 1)
			// 5 + 1 MiB each way, no flags.
			wantLog := fmt.Sprintf("flags=- rx=%d tx=%d", 5+1<<20, 5+1<<20)
			if lines[0] != wantLog {
				t.Errorf("access log = %q, want %q", lines[0], wantLog)
			}
			waitStat(t, h, "tcp.tun.downstream_cx_total", 1)
			waitStat(t, h, "cluster.tunnel.upstream_rq_total", 1)
			waitStat(t, h, "cluster.tunnel.upstream_rq_active", 0)
		})
	}
}

// TestTCPTunnelRefused: an upstream that answers the tunnel request with
// 403 fails the attempt as a connect failure; after max_connect_attempts
// the downstream connection is closed with flags UF,URX and the cluster
// counts upstream_cx_connect_attempts_exceeded (Envoy's
// Filter::establishUpstreamConnection).
func TestTCPTunnelRefused(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{true, false} {
		name := "HTTP/1.1"
		if h2 {
			name = "HTTP/2"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := &tunnelServer{}
			var backend string
			if h2 {
				backend = testutil.H2CBackend(t, srv.h2TunnelHandler(403))
			} else {
				backend = srv.startH1TunnelServer(t, 403)
			}
			logPath := filepath.Join(t.TempDir(), "access.log")
			h := testutil.Start(t, tunnelBootstrap(backend, h2, 2, "", logPath))
			c, err := net.Dial("tcp", h.ListenerAddr("tunnel_in"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte("never delivered"))
			got, err := io.ReadAll(c)
			if len(got) != 0 {
				t.Errorf("read %q from a refused tunnel, want nothing", got)
			}
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !isConnReset(err) {
				t.Logf("read ended with %v", err)
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the refused connection was not closed")
			}
			if n := len(srv.requests()); n != 2 {
				t.Errorf("upstream saw %d tunnel requests, want 2 (max_connect_attempts)", n)
			}
			lines := waitLines(t, logPath, 1)
			if want := "flags=UF,URX rx=0 tx=0"; lines[0] != want {
				t.Errorf("access log = %q, want %q", lines[0], want)
			}
			waitStat(t, h, "cluster.tunnel.upstream_cx_connect_attempts_exceeded", 1)
			waitStat(t, h, "cluster.tunnel.upstream_rq_total", 2)
			waitStat(t, h, "cluster.tunnel.upstream_rq_active", 0)
		})
	}
}

func isConnReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
