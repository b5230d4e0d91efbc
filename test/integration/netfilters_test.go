package integration

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// netFilterListener renders a listener whose chain runs the network
// filters in filters (YAML list items indented 6 spaces) before a
// tcp_proxy to cluster; listenerFilters and transport (a chain's
// transport_socket, indented 6 spaces) may be empty.
func netFilterListener(name, listenerFilters, transport, filters, cluster string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
%s    filter_chains:
    - %sfilters:
%s      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: %s
          cluster: %s
`, name, listenerFilters, transport, filters, name, cluster)
}

const tlsInspectorFilter = `    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
`

// refused reports whether herald closed a connection to addr without
// forwarding it: the round trip reads nothing (EOF or a reset).
func refused(t *testing.T, addr string) bool {
	t.Helper()
	got, _ := tcpRoundTrip(addr, "hello")
	return got == ""
}

// reached dials addr and returns the name a NamedTCPEcho backend greets with.
func reached(t *testing.T, addr string) string {
	t.Helper()
	got, err := tcpRoundTrip(addr, "hello")
	if err != nil && got == "" {
		t.Fatalf("round trip to %s: %v", addr, err)
	}
	name, rest, _ := strings.Cut(got, ":")
	if rest != "hello" {
		t.Fatalf("round trip through %s = %q, want <name>:hello", addr, got)
	}
	return name
}

// tlsGreeting does a TLS handshake through addr with cfg and returns the
// first line the backend writes (tlsBackend writes its name), or an error
// when herald closed the connection.
func tlsGreeting(addr string, cfg *tls.Config) (string, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestNetworkRBAC: envoy.filters.network.rbac on the real binary, by
// source IP, by SNI (TLS passthrough through tls_inspector) and by the
// authenticated client certificate (TLS terminated by herald), with shadow
// rules and Envoy's <stat_prefix>.rbac.* stats.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/rbac_filter
func TestNetworkRBAC(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	echo := testutil.NamedTCPEcho(t, "echo")
	tlsEcho := tlsBackend(t, f.leaf(t, "db backend", "db.example.com"), "db")
	rbac := func(statPrefix, rules string) string {
		return `      - name: envoy.filters.network.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
          stat_prefix: ` + statPrefix + `
` + rules
	}
	allowLocal := rbac("allow_local", `          shadow_rules_stat_prefix: audit_
          rules:
            action: ALLOW
            policies:
              loopback:
                permissions: [{ destination_ip: { address_prefix: 127.0.0.1, prefix_len: 32 } }]
                principals: [{ direct_remote_ip: { address_prefix: 127.0.0.0, prefix_len: 8 } }]
          shadow_rules:
            action: DENY
            policies:
              everyone: { permissions: [{ any: true }], principals: [{ any: true }] }
`)
	denyLocal := rbac("deny_local", `          rules:
            action: DENY
            policies:
              "no loopback":
                permissions: [{ any: true }]
                principals: [{ remote_ip: { address_prefix: 127.0.0.1, prefix_len: 32 } }]
`)
	bySNI := rbac("by_sni", `          rules:
            action: ALLOW
            policies:
              db:
                permissions: [{ requested_server_name: { exact: db.example.com } }]
                principals: [{ any: true }]
`)
	byCert := rbac("by_cert", `          rules:
            action: ALLOW
            policies:
              client:
                permissions: [{ any: true }]
                principals: [{ authenticated: { principal_name: { exact: client.example.com } } }]
`)
	terminate := fmt.Sprintf(`transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: %q }
              private_key: { filename: %q }
            validation_context:
              trusted_ca: { filename: %q }
      `, f.serverCert, f.serverKey, f.ca)
	// The by_cert chain terminates TLS and proxies plaintext to the
	// NamedTCPEcho, which greets with "echo:".
	h := testutil.Start(t, bootstrap([]string{
		netFilterListener("allow_local", "", "", allowLocal, "echo"),
		netFilterListener("deny_local", "", "", denyLocal, "echo"),
		netFilterListener("by_sni", tlsInspectorFilter, "", bySNI, "db"),
		netFilterListener("by_cert", "", terminate, byCert, "echo"),
	}, staticCluster("echo", echo), staticCluster("db", tlsEcho)))

	t.Run("allowed by source", func(t *testing.T) {
		if got := reached(t, h.ListenerAddr("allow_local")); got != "echo" {
			t.Errorf("reached %q, want echo", got)
		}
		waitStat(t, h, "allow_local.rbac.allowed", 1)
		// Shadow rules count with their prefix but do not deny.
		waitStat(t, h, "allow_local.rbac.audit_shadow_denied", 1)
		waitStat(t, h, "allow_local.rbac.denied", 0)
	})
	t.Run("denied by source", func(t *testing.T) {
		if !refused(t, h.ListenerAddr("deny_local")) {
			t.Error("a loopback client got through a DENY loopback policy")
		}
		waitStat(t, h, "deny_local.rbac.denied", 1)
		waitStat(t, h, "tcp.deny_local.downstream_cx_total", 0)
	})
	t.Run("sni", func(t *testing.T) {
		addr := h.ListenerAddr("by_sni")
		got, err := tlsGreeting(addr, &tls.Config{RootCAs: f.roots, ServerName: "db.example.com"})
		if err != nil || got != "db" {
			t.Fatalf("SNI db.example.com: greeting %q, %v; want db", got, err)
		}
		if got, err := tlsGreeting(addr, &tls.Config{RootCAs: f.roots, ServerName: "www.example.com"}); err == nil {
			t.Errorf("SNI www.example.com reached %q, want the connection closed", got)
		}
		waitStat(t, h, "by_sni.rbac.allowed", 1)
		waitStat(t, h, "by_sni.rbac.denied", 1)
	})
	t.Run("authenticated", func(t *testing.T) {
		addr := h.ListenerAddr("by_cert")
		read := func(certs []tls.Certificate) (string, error) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.roots, ServerName: "example.com", Certificates: certs})
			if err != nil {
				return "", err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, len("echo:"))
			_, err = io.ReadFull(c, b)
			return string(b), err
		}
		if got, err := read([]tls.Certificate{f.client}); err != nil || got != "echo:" {
			t.Fatalf("with the client certificate: %q, %v; want echo:", got, err)
		}
		if got, err := read(nil); err == nil {
			t.Errorf("without a client certificate: read %q, want the connection closed", got)
		}
		waitStat(t, h, "by_cert.rbac.allowed", 1)
		waitStat(t, h, "by_cert.rbac.denied", 1)
	})
}

// TestNetworkLocalRateLimit: one token and no refill: the first connection
// goes through, the second is closed and counted.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/local_rate_limit_filter
func TestNetworkLocalRateLimit(t *testing.T) {
	t.Parallel()
	echo := testutil.NamedTCPEcho(t, "echo")
	lrl := `      - name: envoy.filters.network.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit
          stat_prefix: %s
          token_bucket: { max_tokens: 1, fill_interval: 3600s }
%s`
	h := testutil.Start(t, bootstrap([]string{
		netFilterListener("limited", "", "", fmt.Sprintf(lrl, "limited", ""), "echo"),
		netFilterListener("disabled", "", "", fmt.Sprintf(lrl, "disabled", "          runtime_enabled: { default_value: false, runtime_key: lrl_enabled }\n"), "echo"),
	}, staticCluster("echo", echo)))
	addr := h.ListenerAddr("limited")
	if got := reached(t, addr); got != "echo" {
		t.Fatalf("first connection reached %q, want echo", got)
	}
	if !refused(t, addr) {
		t.Error("second connection got through an empty bucket")
	}
	// Envoy's name: local_rate_limit.<stat_prefix>.rate_limited.
	waitStat(t, h, "local_rate_limit.limited.rate_limited", 1)
	waitStat(t, h, "tcp.limited.downstream_cx_total", 1)
	for i := 0; i < 3; i++ {
		if got := reached(t, h.ListenerAddr("disabled")); got != "echo" {
			t.Fatalf("runtime-disabled filter: connection %d reached %q", i, got)
		}
	}
	waitStat(t, h, "local_rate_limit.disabled.rate_limited", 0)
}

// TestNetworkConnectionLimit: with max_connections 1 a second connection
// is refused while the first is open, and accepted once it closed.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/connection_limit_filter
func TestNetworkConnectionLimit(t *testing.T) {
	t.Parallel()
	echo := testutil.NamedTCPEcho(t, "echo")
	h := testutil.Start(t, bootstrap([]string{netFilterListener("capped", "", "", `      - name: envoy.filters.network.connection_limit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit
          stat_prefix: capped
          max_connections: 1
`, "echo")}, staticCluster("echo", echo)))
	addr := h.ListenerAddr("capped")
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(5 * time.Second))
	greet := make([]byte, len("echo:"))
	if _, err := io.ReadFull(first, greet); err != nil || string(greet) != "echo:" {
		t.Fatalf("first connection: %q, %v", greet, err)
	}
	if !refused(t, addr) {
		t.Fatal("second connection got through max_connections 1")
	}
	waitStat(t, h, "connection_limit.capped.limited_connections", 1)
	// The refused connection is gone; the first is still active.
	waitStat(t, h, "connection_limit.capped.active_connections", 1)
	first.Close()
	waitStat(t, h, "connection_limit.capped.active_connections", 0)
	if got := reached(t, addr); got != "echo" {
		t.Errorf("after the first closed: reached %q, want echo", got)
	}
}

// TestSNICluster: sni_cluster routes TLS passthrough by SNI to the cluster
// of that name; without SNI tcp_proxy's own cluster is used; an SNI naming
// no cluster is no route.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/sni_cluster_filter
func TestSNICluster(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	api := tlsBackend(t, f.leaf(t, "api", "api.example.com"), "api")
	web := tlsBackend(t, f.leaf(t, "web", "web.example.com"), "web")
	plain := testutil.NamedTCPEcho(t, "plain")
	h := testutil.Start(t, bootstrap([]string{netFilterListener("sni", tlsInspectorFilter, "", `      - name: envoy.filters.network.sni_cluster
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster }
`, "plain")}, staticCluster("api.example.com", api), staticCluster("web.example.com", web), staticCluster("plain", plain)))
	addr := h.ListenerAddr("sni")
	for _, name := range []string{"api", "web"} {
		got, err := tlsGreeting(addr, &tls.Config{RootCAs: f.roots, ServerName: name + ".example.com"})
		if err != nil || got != name {
			t.Errorf("SNI %s.example.com: greeting %q, %v; want %s", name, got, err, name)
		}
	}
	if got := reached(t, addr); got != "plain" {
		t.Errorf("plaintext (no SNI) reached %q, want the configured cluster plain", got)
	}
	if got, err := tlsGreeting(addr, &tls.Config{RootCAs: f.roots, ServerName: "nope.example.com"}); err == nil {
		t.Errorf("SNI naming no cluster reached %q", got)
	}
	waitStat(t, h, "tcp.sni.downstream_cx_no_route", 1)
}

// TestOriginalDst: with envoy.filters.listener.original_dst and no NAT the
// original destination is the listener's own address: connections go
// through and the access log's %DOWNSTREAM_LOCAL_ADDRESS% is that address.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/original_dst_filter
func TestOriginalDst(t *testing.T) {
	t.Parallel()
	echo := testutil.NamedTCPEcho(t, "echo")
	logPath := t.TempDir() + "/access.log"
	l := netFilterListener("od", `    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst }
`, "", "", "echo") + fmt.Sprintf(`          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format: { text_format_source: { inline_string: "%%DOWNSTREAM_LOCAL_ADDRESS%%\n" } }
`, logPath)
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("echo", echo)), "--file-flush-interval-msec", "50")
	addr := h.ListenerAddr("od")
	if got := reached(t, addr); got != "echo" {
		t.Fatalf("reached %q, want echo", got)
	}
	if lines := waitLines(t, logPath, 1); lines[0] != addr {
		t.Errorf("DOWNSTREAM_LOCAL_ADDRESS = %q, want the listener's %q", lines[0], addr)
	}
}

// TestTCPProxyHashPolicy: with hash_policy source_ip and a ring_hash or
// maglev cluster, every connection from one client IP reaches the same
// host, and client IPs spread over the hosts.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto
func TestTCPProxyHashPolicy(t *testing.T) {
	t.Parallel()
	backends := []string{testutil.NamedTCPEcho(t, "a"), testutil.NamedTCPEcho(t, "b"), testutil.NamedTCPEcho(t, "c")}
	for _, policy := range []string{"RING_HASH", "MAGLEV"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			h := testutil.Start(t, bootstrap([]string{tcpProxyListener("hashed", "hashed", "          cluster: hashed\n          hash_policy: [{ source_ip: {} }]\n")},
				staticCluster("hashed", backends...)+"    lb_policy: "+policy+"\n"))
			addr := h.ListenerAddr("hashed")
			seen := map[string]bool{}
			for i := 1; i <= 12; i++ {
				// Every 127/8 address is the loopback on Linux.
				src := fmt.Sprintf("127.0.0.%d", i)
				var first string
				for j := 0; j < 3; j++ {
					got, err := tcpRoundTripFrom(src, addr, "x")
					if err != nil && got == "" {
						t.Fatalf("from %s: %v", src, err)
					}
					name, _, _ := strings.Cut(got, ":")
					if j == 0 {
						first = name
					} else if name != first {
						t.Fatalf("from %s: connection %d reached %s, the first reached %s", src, j, name, first)
					}
				}
				seen[first] = true
			}
			if len(seen) < 2 {
				t.Errorf("12 client IPs all reached %v, want them spread over the hosts", seen)
			}
		})
	}
}

// tcpRoundTripFrom is tcpRoundTrip from the local address src.
func tcpRoundTripFrom(src, addr, msg string) (string, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}
