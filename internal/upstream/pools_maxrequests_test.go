package upstream

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// h2ClusterWith is h2Cluster with extra cluster fields (YAML lines at the
// cluster's indentation).
func h2ClusterWith(name, addr, extra string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`
- name: %s
  connect_timeout: 1s
%s
  load_assignment:
    cluster_name: %s
    endpoints:
    - lb_endpoints: [{endpoint: {address: {socket_address: {address: %q, port_value: %s}}}}]
`, name, extra, name, host, port)
}

// TestHTTP2MaxRequestsPerConnection: the cluster's
// max_requests_per_connection (the deprecated cluster field or the typed
// common_http_protocol_options) caps the streams of a pooled HTTP/2
// connection; each spent connection counts upstream_cx_max_requests and
// closes, every new one counts upstream_cx_http2_total, and the dialer's
// upstream_cx_total/_active/_destroy stay in step.
func TestHTTP2MaxRequestsPerConnection(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		// For 5 sequential requests: connections made, connections
		// spent by max_requests_per_connection, connections left open.
		wantConns, wantMaxed, wantOpen int64
	}{
		{
			name:      "unlimited",
			extra:     "  http2_protocol_options: {}",
			wantConns: 1, wantMaxed: 0, wantOpen: 1,
		},
		{
			name:      "cluster field",
			extra:     "  http2_protocol_options: {}\n  max_requests_per_connection: 2",
			wantConns: 3, wantMaxed: 2, wantOpen: 1,
		},
		{
			name: "common_http_protocol_options",
			extra: `  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      common_http_protocol_options: {max_requests_per_connection: 2}
      explicit_http_config: {http2_protocol_options: {}}`,
			wantConns: 3, wantMaxed: 2, wantOpen: 1,
		},
		{
			name:      "one per connection",
			extra:     "  http2_protocol_options: {}\n  max_requests_per_connection: 1",
			wantConns: 5, wantMaxed: 5, wantOpen: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newH2Backend(t)
			m, st := newTestManager(t)
			apply(t, m, h2ClusterWith("a", b.addr, tc.extra))
			h := m.Cluster("a").Pick(nil)
			for range 5 {
				get(t, h)
			}
			if got := b.total.Load(); got != tc.wantConns {
				t.Errorf("backend saw %d connections, want %d", got, tc.wantConns)
			}
			// Spent connections close once their last stream ended.
			b.waitOpen(t, tc.wantOpen)
			want := map[string]uint64{
				"upstream_cx_http2_total":   uint64(tc.wantConns),
				"upstream_cx_total":         uint64(tc.wantConns),
				"upstream_cx_max_requests":  uint64(tc.wantMaxed),
				"upstream_cx_destroy":       uint64(tc.wantConns - tc.wantOpen),
				"upstream_cx_destroy_local": uint64(tc.wantConns - tc.wantOpen),
			}
			testutil.Eventually(t, 5*time.Second, func() error {
				for name, w := range want {
					if got := st.Counter("cluster.a." + name).Value(); got != w {
						return fmt.Errorf("%s = %d, want %d", name, got, w)
					}
				}
				if got := st.Gauge("cluster.a.upstream_cx_active").Value(); got != tc.wantOpen {
					return fmt.Errorf("upstream_cx_active = %d, want %d", got, tc.wantOpen)
				}
				return nil
			})
		})
	}
}
