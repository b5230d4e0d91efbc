package integration

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil"
)

// ppV2WithTLVs builds a PROXY protocol v2 PROXY/STREAM header for an IPv4
// src -> dst carrying the TLVs given (type, value).
func ppV2WithTLVs(src, dst netip.AddrPort, tlvs ...[2]string) []byte {
	s, d := src.Addr().As4(), dst.Addr().As4()
	addr := append(s[:], d[:]...)
	addr = binary.BigEndian.AppendUint16(addr, src.Port())
	addr = binary.BigEndian.AppendUint16(addr, dst.Port())
	for _, tlv := range tlvs {
		addr = append(addr, tlv[0][0])
		addr = binary.BigEndian.AppendUint16(addr, uint16(len(tlv[1])))
		addr = append(addr, tlv[1]...)
	}
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11")
	b = binary.BigEndian.AppendUint16(b, uint16(len(addr)))
	return append(b, addr...)
}

// TestProxyProtocolTLVRules: the proxy_protocol listener filter's rules put
// TLV values into the connection's dynamic metadata, which the tcp_proxy
// access log shows with %DYNAMIC_METADATA% (the namespace defaults to the
// filter's name; a custom namespace works too).
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/listener/proxy_protocol/v3/proxy_protocol.proto
func TestProxyProtocolTLVRules(t *testing.T) {
	t.Parallel()
	echo := testutil.TCPEcho(t)
	logPath := filepath.Join(t.TempDir(), "tcp.log")
	listener := fmt.Sprintf(`  - name: pp
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.proxy_protocol
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol
        rules:
        - tlv_type: 0xEA
          on_tlv_present: { key: vpce_id }
        - tlv_type: 0xE0
          on_tlv_present: { key: tenant, metadata_namespace: acme.tenancy }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: pp
          cluster: echo
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                text_format_source:
                  inline_string: "%%DOWNSTREAM_REMOTE_ADDRESS%% %%DYNAMIC_METADATA(envoy.filters.listener.proxy_protocol:vpce_id)%% %%DYNAMIC_METADATA(acme.tenancy:tenant)%%\n"
`, logPath)
	h := testutil.Start(t, bootstrap([]string{listener}, staticCluster("echo", echo)), "--file-flush-interval-msec", "50")

	src, dst := netip.MustParseAddrPort("192.0.2.10:40000"), netip.MustParseAddrPort("198.51.100.20:443")
	headers := [][]byte{
		ppV2WithTLVs(src, dst, [2]string{"\xEA", "vpce-0abc"}, [2]string{"\xE0", "blue"}),
		ppV2WithTLVs(src, dst), // no TLVs: nothing in the metadata
	}
	for _, hdr := range headers {
		c, _ := dialHTTP(t, h.ListenerAddr("pp"))
		if _, err := c.Write(append(hdr, "ping"...)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo %q, %v", buf, err)
		}
		c.Close()
	}
	lines := waitLines(t, logPath, 2)
	want := map[string]bool{
		"192.0.2.10:40000 vpce-0abc blue": true,
		"192.0.2.10:40000 - -":            true,
	}
	for _, l := range lines {
		if !want[l] {
			t.Errorf("log line %q, want one of %v", l, want)
		}
		delete(want, l)
	}
}
