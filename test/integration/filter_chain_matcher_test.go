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

// plainBackend writes name to each TCP connection.
func plainBackend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return greetOn(t, ln, name)
}

// TestFilterChainMatcher: the unified matcher API picks named chains by
// transport protocol, then SNI (exact map, then a prefix map as
// on_no_match); a TLS connection no branch takes is refused
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/matching/matching_listener).
func TestFilterChainMatcher(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	api := tlsBackend(t, f.leaf(t, "api backend", "api.example.com"), "api")
	web := tlsBackend(t, f.leaf(t, "web backend", "www.example.com", "static.example.com", "static2.example.com"), "web")
	plain := plainBackend(t, "plain")
	chain := func(name string) string {
		return fmt.Sprintf(`    - name: %s
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: %s
          cluster: %s
`, name, name, name)
	}
	action := func(chain string) string {
		return `{ action: { name: ` + chain + `, typed_config: { "@type": type.googleapis.com/google.protobuf.StringValue, value: ` + chain + ` } } }`
	}
	listener := `  - name: fcm
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
    filter_chain_matcher:
      matcher_tree:
        input:
          name: transport
          typed_config: { "@type": type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.TransportProtocolInput }
        exact_match_map:
          map:
            tls:
              matcher:
                matcher_tree:
                  input:
                    name: sni
                    typed_config: { "@type": type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.ServerNameInput }
                  exact_match_map:
                    map:
                      api.example.com: ` + action("api") + `
                on_no_match:
                  matcher:
                    matcher_tree:
                      input:
                        name: sni
                        typed_config: { "@type": type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.ServerNameInput }
                      prefix_match_map:
                        map:
                          static: ` + action("web") + `
                          www.: ` + action("web") + `
            raw_buffer: ` + action("plain") + `
    filter_chains:
` + chain("api") + chain("web") + chain("plain")
	h := testutil.Start(t, bootstrap([]string{listener}, staticCluster("api", api), staticCluster("web", web), staticCluster("plain", plain)))
	addr := h.ListenerAddr("fcm")
	tests := []struct {
		sni      string
		wantName string
	}{
		{sni: "api.example.com", wantName: "api"},
		{sni: "www.example.com", wantName: "web"},
		{sni: "static2.example.com", wantName: "web"},
	}
	for _, tc := range tests {
		t.Run(tc.sni, func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.roots, ServerName: tc.sni})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(line); got != tc.wantName {
				t.Fatalf("reached %q, want %q", got, tc.wantName)
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		// tls_inspector needs a first byte to decide it is not TLS.
		io.WriteString(c, "hello\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(line); got != "plain" {
			t.Fatalf("reached %q, want plain", got)
		}
	})
	t.Run("TLS with an unmatched SNI is refused", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.roots, ServerName: "other.org"})
		if err == nil {
			c.Close()
			t.Fatal("a connection for other.org was forwarded")
		}
		waitStat(t, h, statPrefix(addr)+"no_filter_chain_match", 1)
	})
}
