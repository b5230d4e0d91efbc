package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// envoy.filters.network.set_filter_state with the well-known key
// envoy.network.upstream_server_name: tcp_proxy's upstream TLS sends the
// filter state's SNI instead of the cluster's UpstreamTlsContext.sni
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/well_known_filter_state).

// nestedTLSBackend terminates herald's TLS (the outer connection), then a
// second TLS session inside it: the client's own, which herald forwarded
// without terminating it. It tells the client both SNIs it saw.
func nestedTLSBackend(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				outer := c.(*tls.Conn)
				if err := outer.Handshake(); err != nil {
					return
				}
				inner := tls.Server(outer, cfg)
				if err := inner.Handshake(); err != nil {
					return
				}
				fmt.Fprintf(inner, "outer=%s inner=%s\n", outer.ConnectionState().ServerName, inner.ConnectionState().ServerName)
				io.Copy(io.Discard, inner)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestSetFilterStateUpstreamServerName(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend := nestedTLSBackend(t, f.leaf(t, "backend", "a.example", "cluster.example"))
	cluster := staticCluster("tls_backend", backend) + fmt.Sprintf(`    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: cluster.example
        common_tls_context:
          validation_context:
            trusted_ca: { filename: %q }
`, f.ca)
	listener := func(name, filters string) string {
		return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
    filter_chains:
    - filters:
%s      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: %s
          cluster: tls_backend
`, name, filters, name)
	}
	setSNI := `      - name: envoy.filters.network.set_filter_state
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config
          on_new_connection:
          - object_key: envoy.network.upstream_server_name
            format_string:
              text_format_source: { inline_string: "%REQUESTED_SERVER_NAME%" }
`
	h := testutil.Start(t, bootstrap([]string{listener("keep_sni", setSNI), listener("cluster_sni", "")}, cluster))
	tests := []struct {
		name     string
		listener string
		want     string
	}{
		{
			// The filter state overrides the context's sni, as Envoy's
			// serverNameOverride does (ClientContextImpl::newSsl).
			name: "filter state SNI", listener: "keep_sni",
			want: "outer=a.example inner=a.example",
		},
		{name: "cluster sni without the filter", listener: "cluster_sni", want: "outer=cluster.example inner=a.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", h.ListenerAddr(tc.listener), &tls.Config{RootCAs: f.roots, ServerName: "a.example"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(line); got != tc.want {
				t.Errorf("backend saw %q, want %q", got, tc.want)
			}
		})
	}
}

// teeConn keeps a copy of what was read through it.
type teeConn struct {
	net.Conn
	read bytes.Buffer
}

func (c *teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Write(p[:n])
	return n, err
}

// TestSetFilterStateTunnelSNI: HTTP/2 tunnels take the host's pooled
// connections keyed by the upstream SNI, as the router's auto_sni streams
// (Envoy hashes serverNameOverride into the pool key,
// CommonUpstreamTransportSocketFactory::hashKey): each client SNI reaches
// the backend on a connection of its own SNI.
func TestSetFilterStateTunnelSNI(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	srv := httptest.NewUnstartedServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Method != "CONNECT" {
			w.WriteHeader(405)
			return
		}
		w.WriteHeader(200)
		fmt.Fprintf(w, "sni=%s\n", r.TLS.ServerName)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.leaf(t, "backend", "a.example", "b.example")}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	backend := strings.TrimPrefix(srv.URL, "https://")
	listener := `  - name: tunnel_sni
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
    filter_chains:
    - filters:
      - name: envoy.filters.network.set_filter_state
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config
          on_new_connection:
          - object_key: envoy.network.upstream_server_name
            format_string: { text_format_source: { inline_string: "%REQUESTED_SERVER_NAME%" } }
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tunnel_sni
          cluster: h2tls
          tunneling_config: { hostname: "tunnel.example:443" }
`
	h := testutil.Start(t, bootstrap([]string{listener}, autoSNICluster(f, "h2tls", backend, "http2_protocol_options", "{}")))
	// a, then b on a new pool, then a again on a's pool.
	for i, sni := range []string{"a.example", "b.example", "a.example"} {
		c, err := net.Dial("tcp", h.ListenerAddr("tunnel_sni"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// The ClientHello carries the SNI tls_inspector reads; the
		// backend answers in plaintext through the tunnel, which fails
		// the client's handshake: what it read is kept.
		tc := &teeConn{Conn: c}
		if err := tls.Client(tc, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake(); err == nil {
			t.Fatal("handshake through a plaintext answer succeeded")
		}
		rest, _ := io.ReadAll(c)
		c.Close()
		got := strings.TrimSpace(tc.read.String() + string(rest))
		if want := "sni=" + sni; got != want {
			t.Errorf("tunnel %d: backend answered %q, want %q", i, got, want)
		}
	}
	// Two pools, two upstream connections; the third tunnel reused a's.
	waitStat(t, h, "cluster.h2tls.upstream_cx_total", 2)
}
