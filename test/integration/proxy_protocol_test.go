package integration

import (
	"encoding/binary"
	"fmt"
	"io"
	nethttp "net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// proxyProtocolListener renders an HCM listener (use_remote_address true)
// behind envoy.filters.listener.proxy_protocol with ppFields (ProxyProtocol
// fields indented 8 spaces), logging the addresses to logPath.
func proxyProtocolListener(name, ppFields, logPath string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol
%s    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          use_remote_address: true
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                text_format_source:
                  inline_string: "%%DOWNSTREAM_REMOTE_ADDRESS%% %%DOWNSTREAM_LOCAL_ADDRESS%% %%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%% %%REQ(:PATH)%%\n"
          route_config:
            name: local_route
            virtual_hosts:
%s
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, name, ppFields, logPath, catchAllVhost("b"))
}

// directChain renders a filter chain (with filter_chain_match fields
// match, indented 6 spaces) whose HCM answers every request with body.
func directChain(match, body string) string {
	return fmt.Sprintf(`    - filter_chain_match: { %s }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: match_http
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: %q } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, match, body)
}

// ppV2 builds a PROXY protocol v2 PROXY/STREAM header for src -> dst with
// one TLV (which herald skips).
func ppV2(src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	var addr []byte
	fam := byte(0x11)
	if src.Addr().Is6() {
		fam = 0x21
		s, d := src.Addr().As16(), dst.Addr().As16()
		addr = append(s[:], d[:]...)
	} else {
		s, d := src.Addr().As4(), dst.Addr().As4()
		addr = append(s[:], d[:]...)
	}
	addr = binary.BigEndian.AppendUint16(addr, src.Port())
	addr = binary.BigEndian.AppendUint16(addr, dst.Port())
	addr = append(addr, 0x01, 0x00, 0x02, 'h', '2') // PP2_TYPE_ALPN
	b = append(b, 0x21, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addr)))
	return append(b, addr...)
}

// TestProxyProtocol checks that the PROXY header's addresses become the
// downstream remote and local addresses (access log, x-forwarded-for with
// use_remote_address), that the header is consumed, that a malformed
// header closes the connection, and allow_requests_without_proxy_protocol.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/proxy_protocol
func TestProxyProtocol(t *testing.T) {
	t.Parallel()
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-seen-xff", strings.Join(r.Header.Values("x-forwarded-for"), "|"))
		io.WriteString(w, "ok")
	}))
	dir := t.TempDir()
	strictLog, allowLog := filepath.Join(dir, "strict.log"), filepath.Join(dir, "allow.log")
	cfg := bootstrap([]string{
		proxyProtocolListener("strict", "", strictLog),
		proxyProtocolListener("allow", "        allow_requests_without_proxy_protocol: true\n        stat_prefix: allow\n", allowLog),
		`  - name: match
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol
        stat_prefix: match
    filter_chains:
` + directChain(`source_prefix_ranges: [{ address_prefix: 192.0.2.0, prefix_len: 24 }]`, "lb-client") +
			directChain(`destination_port: 8443`, "port-8443") +
			directChain(``, "default"),
	}, staticCluster("b", backend))
	h := testutil.Start(t, cfg, "--file-flush-interval-msec", "50")

	tests := []struct {
		name     string
		listener string
		header   string
		path     string
		wantXFF  string
	}{
		{name: "v1 TCP4", listener: "strict", header: "PROXY TCP4 192.0.2.10 198.51.100.20 40000 8443\r\n", path: "/v1",
			wantXFF: "192.0.2.10"},
		{name: "v2 TCP6 with TLV", listener: "strict", header: string(ppV2(netip.MustParseAddrPort("[2001:db8::7]:5555"), netip.MustParseAddrPort("[2001:db8::1]:443"))), path: "/v2",
			wantXFF: "2001:db8::7"},
		{name: "allowed without header", listener: "allow", header: "", path: "/plain", wantXFF: "127.0.0.1"},
		{name: "allowed with v1 header", listener: "allow", header: "PROXY TCP4 203.0.113.5 198.51.100.20 1234 80\r\n", path: "/allow-v1",
			wantXFF: "203.0.113.5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, r := dialHTTP(t, h.ListenerAddr(tc.listener))
			if _, err := io.WriteString(c, tc.header+"GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, body := readResponse(t, r, "GET")
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("response %d %q, want 200 ok", resp.StatusCode, body)
			}
			if got := resp.Header.Get("x-seen-xff"); got != tc.wantXFF {
				t.Errorf("x-forwarded-for = %q, want %q", got, tc.wantXFF)
			}
		})
	}

	// filter_chain_match sees the header's addresses.
	matchTests := []struct {
		name, header, want string
	}{
		{name: "source prefix from header", header: "PROXY TCP4 192.0.2.99 198.51.100.20 1 80\r\n", want: "lb-client"},
		{name: "destination port from header", header: "PROXY TCP4 203.0.113.1 198.51.100.20 1 8443\r\n", want: "port-8443"},
		{name: "neither", header: "PROXY TCP4 203.0.113.1 198.51.100.20 1 80\r\n", want: "default"},
		{name: "LOCAL keeps the real addresses", header: string([]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n', 0x20, 0, 0, 0}), want: "default"},
	}
	for _, tc := range matchTests {
		t.Run("match "+tc.name, func(t *testing.T) {
			c, r := dialHTTP(t, h.ListenerAddr("match"))
			if _, err := io.WriteString(c, tc.header+"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, body := readResponse(t, r, "GET")
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("response %d %q, want 200 %q", resp.StatusCode, body, tc.want)
			}
		})
	}

	t.Run("access log", func(t *testing.T) {
		want := []string{
			"192.0.2.10:40000 198.51.100.20:8443 127.0.0.1 /v1",
			"[2001:db8::7]:5555 [2001:db8::1]:443 127.0.0.1 /v2",
		}
		lines := waitLines(t, strictLog, 2)
		if strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Errorf("strict log:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
		}
		lines = waitLines(t, allowLog, 2)
		if !strings.HasSuffix(lines[0], " 127.0.0.1 /plain") || !strings.HasPrefix(lines[1], "203.0.113.5:1234 198.51.100.20:80 127.0.0.1 ") {
			t.Errorf("allow log:\n%s", strings.Join(lines, "\n"))
		}
	})

	t.Run("malformed header closes", func(t *testing.T) {
		c, r := dialHTTP(t, h.ListenerAddr("strict"))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c, r, 5*time.Second)
		waitStat(t, h, "downstream_cx_proxy_proto_error", 1)
		waitStat(t, h, "proxy_proto.not_found_disallowed", 1)
	})

	t.Run("stats", func(t *testing.T) {
		waitStat(t, h, "proxy_proto.versions.v1.found", 1)
		waitStat(t, h, "proxy_proto.versions.v2.found", 1)
		waitStat(t, h, "proxy_proto.allow.not_found_allowed", 1)
		waitStat(t, h, "proxy_proto.allow.versions.v1.found", 1)
	})
}
